"""Visual encoders (images or video -> (B, D)) and the unimodal `VisualClassifier` archs.

Images ``(B, C, H, W)`` are encoded directly; video ``(B, F, C, H, W)`` is encoded frame by frame and the
frame embeddings are averaged. Each encoder also exposes its *stem* (first conv block), the low-level map used
by early fusion (`robustlab.models.fusion`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from robustlab._registry import Registry
from robustlab.models.base import ModelSpec, ZooModel
from robustlab.models.factory import accepted_args, register_arch

__all__ = [
    "VISUAL_ENCODERS",
    "VisualEncoder",
    "SmallCNN",
    "SmallResNet18",
    "VisualClassifier",
    "build_visual_encoder",
    "visual_in_channels",
]


class VisualEncoder(nn.Module):
    """Base class: ``embed_images`` maps (N, C, H, W) -> (N, D); ``stem`` maps (N, C, H, W) -> (N, S, H', W').

    Attributes:
        out_dim: embedding size D.
        stem_channels: channels S of the stem map.
    """

    out_dim: int
    stem_channels: int
    stem: nn.Module

    def embed_images(self, x: Tensor) -> Tensor:  # pragma: no cover - abstract
        raise NotImplementedError

    @staticmethod
    def _frames(x: Tensor, fn: Callable[[Tensor], Tensor]) -> Tensor:
        if x.dim() == 4:
            return fn(x)
        if x.dim() == 5:  # video: (B, F, C, H, W) -> average over frames
            b, f = x.shape[:2]
            y = fn(x.flatten(0, 1))
            return y.view(b, f, *y.shape[1:]).mean(1)
        raise ValueError(f"visual input must be (B, C, H, W) or (B, F, C, H, W); got {tuple(x.shape)}")

    def forward(self, x: Tensor) -> Tensor:
        """Images (B, C, H, W) or video (B, F, C, H, W) -> embeddings (B, D)."""
        return self._frames(x, self.embed_images)

    def stem_map(self, x: Tensor) -> Tensor:
        """Low-level feature map (B, S, H', W') (video: averaged over frames)."""
        return self._frames(x, self.stem)


def _conv_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class SmallCNN(VisualEncoder):
    """Small CNN: per width a block conv3x3-BN-ReLU (x convs) + 2x2 max-pool, then global average pooling.

    Args:
        in_channels: image channels.
        widths: block channels.
        convs: conv layers per block.
    """

    def __init__(self, in_channels: int = 3, widths: tuple[int, ...] = (32, 64, 128), convs: int = 1) -> None:
        super().__init__()
        if not widths:
            raise ValueError("SmallCNN needs at least one width")
        self.stem = nn.Sequential(*_conv_bn_relu(in_channels, widths[0]))
        layers: list[nn.Module] = []
        c = widths[0]
        for i, w in enumerate(widths):
            for j in range(convs):
                if i == 0 and j == 0:
                    continue  # the stem is the first conv
                layers += _conv_bn_relu(c, w)
                c = w
            layers.append(nn.MaxPool2d(2, ceil_mode=True))
        self.body = nn.Sequential(*layers)
        self.out_dim, self.stem_channels = c, widths[0]

    def embed_images(self, x: Tensor) -> Tensor:
        return self.body(self.stem(x)).mean((2, 3))


class SmallResNet18(VisualEncoder):
    """torchvision ResNet-18 (weights=None) adapted to small images: 3x3 stride-1 stem, no max-pool.

    Args:
        in_channels: image channels.
        layers: blocks per stage (ResNet-18: 2, 2, 2, 2).
    """

    def __init__(self, in_channels: int = 3, layers: tuple[int, ...] = (2, 2, 2, 2)) -> None:
        super().__init__()
        from ..stack import torchvision

        BasicBlock = torchvision.models.resnet.BasicBlock
        ResNet = torchvision.models.resnet.ResNet

        net = ResNet(BasicBlock, list(layers))
        net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=3, stride=1, padding=1, bias=False)
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu)
        self.body = nn.Sequential(net.layer1, net.layer2, net.layer3, net.layer4)
        self.out_dim, self.stem_channels = 512, 64

    def embed_images(self, x: Tensor) -> Tensor:
        return self.body(self.stem(x)).mean((2, 3))


VISUAL_ENCODERS: Registry[Callable[..., VisualEncoder]] = Registry("visual encoder")
VISUAL_ENCODERS.register("visual_cnn", SmallCNN)
VISUAL_ENCODERS.register("visual_resnet18", SmallResNet18)


def visual_in_channels(spec: ModelSpec) -> int:
    """Image channels from the spec's visual shape ((C, H, W) or (F, C, H, W))."""
    shape = spec.shapes.get("visual")
    if not shape or len(shape) not in (3, 4):
        raise ValueError(f"spec.shapes['visual'] must be (C, H, W) or (F, C, H, W); got {shape!r}")
    return int(shape[-3])


def build_visual_encoder(name: str, spec: ModelSpec, **args: Any) -> VisualEncoder:
    """Build visual encoder ``name`` for the spec's image channels.

    Raises:
        TypeError: an arg the encoder does not take (named, with the accepted ones).
    """
    cls = VISUAL_ENCODERS.get(name)
    ok = accepted_args(cls.__init__, drop=("in_channels",))
    bad = sorted(set(args) - ok)
    if bad:
        raise TypeError(f"visual encoder {name!r} got unknown args {bad}; it accepts {sorted(ok)}")
    args = {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}
    return cls(in_channels=visual_in_channels(spec), **args)


class VisualClassifier(ZooModel):
    """Unimodal visual model: encoder -> dropout -> linear head; ``embed()``: ``visual`` = ``fused``."""

    embed_keys = ("visual", "fused")

    def __init__(self, spec: ModelSpec, encoder: VisualEncoder, dropout: float = 0.0) -> None:
        super().__init__()
        self.spec = spec
        self.frontend = nn.Identity()  # no audio
        self.encoder = encoder
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(encoder.out_dim, spec.num_classes))

    def forward_features(self, features: Mapping[str, Tensor]) -> Tensor:
        return self.head(self.encoder(features["visual"]))

    def embed_features(self, features: Mapping[str, Tensor]) -> dict[str, Tensor]:
        z = self.encoder(features["visual"])
        return {"visual": z, "fused": z}

    def classify_fused(self, fused: Tensor) -> Tensor:
        """Logits from a fused embedding (B, D)."""
        return self.head(fused)


@register_arch("visual_cnn", modalities=("visual",), tiny={"widths": (4, 8)})
def build_visual_cnn(
    spec: ModelSpec, *, widths: tuple[int, ...] = (32, 64, 128), convs: int = 1, dropout: float = 0.0
) -> VisualClassifier:
    """Small visual CNN classifier (conv-BN-ReLU-pool blocks, GAP, linear)."""
    return VisualClassifier(
        spec, build_visual_encoder("visual_cnn", spec, widths=widths, convs=convs), dropout
    )


@register_arch("visual_resnet18", modalities=("visual",), tiny={"layers": (1, 1, 1, 1)})
def build_visual_resnet18(
    spec: ModelSpec, *, layers: tuple[int, ...] = (2, 2, 2, 2), dropout: float = 0.0
) -> VisualClassifier:
    """torchvision ResNet-18 for small images (3x3 stem, no max-pool) + linear head."""
    return VisualClassifier(spec, build_visual_encoder("visual_resnet18", spec, layers=layers), dropout)
