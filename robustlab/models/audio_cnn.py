"""Convolutional audio families: raw-waveform M-series, VGGish-style, CRNN (TALNet), ResNet, EfficientNet.

Each family is one parameterised encoder registered under one or more names (`register_audio_family`), with
a tiny configuration for tests. Shapes in comments: B batch, C channels, F mel bins, T samples / frames.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from robustlab.models.audio import (
    AudioEncoder,
    AudioParts,
    frontend_channels,
    frontend_from_options,
    register_audio_family,
    scaled,
    time_frames,
)
from robustlab.models.base import ModelSpec

__all__ = ["M_LAYOUTS", "MSeriesEncoder", "VGGishEncoder", "CRNNEncoder", "TorchvisionEncoder"]


# ----------------------------------------------------------------------------------------------------------
# M-series (Dai et al. 2017, "Very deep convolutional neural networks for raw waveforms")

#: stem channels, stages (convs or residual blocks, channels), residual blocks, max-pool after the last stage
M_LAYOUTS: dict[str, dict[str, Any]] = {
    "m3": {"stem": 256, "stages": ((1, 256),), "residual": False, "pool_last": True},
    "m5": {"stem": 128, "stages": ((1, 128), (1, 256), (1, 512)), "residual": False, "pool_last": True},
    "m11": {
        "stem": 64,
        "stages": ((2, 64), (2, 128), (3, 256), (2, 512)),
        "residual": False,
        "pool_last": False,
    },
    "m18": {
        "stem": 64,
        "stages": ((4, 64), (4, 128), (4, 256), (4, 512)),
        "residual": False,
        "pool_last": False,
    },
    "m34res": {
        "stem": 48,
        "stages": ((3, 48), (4, 96), (6, 192), (3, 384)),
        "residual": True,
        "pool_last": False,
    },
}


def _conv1d_bn(cin: int, cout: int, k: int, stride: int = 1) -> list[nn.Module]:
    return [
        nn.Conv1d(
            cin, cout, k, stride=stride, padding=(k - stride) // 2 if stride > 1 else k // 2, bias=False
        ),
        nn.BatchNorm1d(cout),
    ]


class _ResBlock1d(nn.Module):
    """Two 3-tap conv+BN layers with an identity (or 1x1 projection) shortcut (M34-res)."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            *_conv1d_bn(cin, cout, 3), nn.ReLU(inplace=True), *_conv1d_bn(cout, cout, 3)
        )
        self.short = nn.Identity() if cin == cout else nn.Sequential(*_conv1d_bn(cin, cout, 1))
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.body(x) + self.short(x))


class MSeriesEncoder(AudioEncoder):
    """Raw-waveform 1-D CNN: conv(80, stride 4) -> max-pool 4 -> stages of 3-tap convs (BN, ReLU), max-pool 4
    between stages -> frames; clip embedding = global average pooling over time.

    Args:
        layout: a key of `M_LAYOUTS` (m3, m5, m11, m18, m34res).
        in_channels: input channels (1 for a waveform).
        width: channel multiplier.
    """

    input_dims = 1

    def __init__(self, layout: str, in_channels: int = 1, width: float = 1.0) -> None:
        super().__init__()
        if layout not in M_LAYOUTS:
            raise ValueError(f"unknown M-series layout {layout!r}; expected one of {sorted(M_LAYOUTS)}")
        cfg = M_LAYOUTS[layout]
        self.in_channels = in_channels
        c = scaled(cfg["stem"], width)
        layers: list[nn.Module] = [
            *_conv1d_bn(in_channels, c, 80, stride=4),
            nn.ReLU(inplace=True),
            nn.MaxPool1d(4, ceil_mode=True),
        ]
        stages = cfg["stages"]
        for i, (n, ch) in enumerate(stages):
            ch = scaled(ch, width)
            for _ in range(n):
                if cfg["residual"]:
                    layers.append(_ResBlock1d(c, ch))
                else:
                    layers += [*_conv1d_bn(c, ch, 3), nn.ReLU(inplace=True)]
                c = ch
            if i < len(stages) - 1 or cfg["pool_last"]:
                layers.append(nn.MaxPool1d(4, ceil_mode=True))
        self.net = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = self.net(self.as_input(x))  # (B, C, T')
        frames = h.transpose(1, 2)  # (B, T', C)
        return frames, frames.mean(1)


def _mseries_build(
    spec: ModelSpec, *, layout: str, extra_channels: int = 0, width: float = 1.0, frontend: dict | None = None
) -> AudioParts:
    """Raw-waveform M-series CNN (Dai et al. 2017), GAP + linear head."""
    fe = frontend_from_options(spec, {"kind": "waveform"}, frontend)
    return AudioParts(fe, MSeriesEncoder(layout, frontend_channels(fe) + extra_channels, width))


_MSERIES_DOC = {
    "m3": "M3 raw-waveform CNN (Dai et al. 2017): 2 conv layers, GAP + linear head.",
    "m5": "M5 raw-waveform CNN (Dai et al. 2017): 4 conv layers, GAP + linear head.",
    "m11": "M11 raw-waveform CNN (Dai et al. 2017): 11 layers, GAP + linear head.",
    "m18": "M18 raw-waveform CNN (Dai et al. 2017): 18 layers, GAP + linear head.",
    "m34res": "M34-res raw-waveform CNN (Dai et al. 2017): residual blocks, GAP + linear head.",
}

for _layout in M_LAYOUTS:
    register_audio_family(
        _layout,
        _mseries_build,
        default_pooling="clip",
        tiny={"width": 0.0625},
        fixed={"layout": _layout},
        doc=_MSERIES_DOC[_layout],
    )


# ----------------------------------------------------------------------------------------------------------
# 2-D spectrogram CNNs


def _conv2d_bn_relu(cin: int, cout: int) -> list[nn.Module]:
    return [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]


class VGGishEncoder(AudioEncoder):
    """VGG-style log-mel CNN: blocks of (conv3x3-BN-ReLU) x convs, 2x2 max-pool, dropout; frequency averaged.

    Defaults give the 32-32-pool-64-64-pool-128-128-pool stack times ``width``.

    Args:
        in_channels: input channels.
        width: channel multiplier.
        channels: per-block channels before ``width``.
        convs: conv layers per block.
        dropout: dropout after each pool.
    """

    input_dims = 2

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 1.0,
        channels: tuple[int, ...] = (32, 64, 128),
        convs: int = 2,
        dropout: float = 0.2,
    ) -> None:
        super().__init__()
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c = in_channels
        for ch in channels:
            ch = scaled(ch, width)
            for _ in range(convs):
                layers += _conv2d_bn_relu(c, ch)
                c = ch
            layers += [nn.MaxPool2d(2, ceil_mode=True), nn.Dropout(dropout)]
        self.net = nn.Sequential(*layers)
        self.out_dim = c

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        frames = time_frames(self.net(self.as_input(x)))  # (B, C, F', T') -> (B, T', C)
        return frames, frames.mean(1)


def _vggish_build(
    spec: ModelSpec,
    *,
    extra_channels: int = 0,
    width: float = 0.5,
    channels: tuple[int, ...] = (32, 64, 128),
    convs: int = 2,
    dropout: float = 0.2,
    frontend: dict | None = None,
) -> AudioParts:
    """VGGish-style log-mel CNN (32-32-pool-64-64-pool-128-128-pool x width) + pooling head over time."""
    fe = frontend_from_options(spec, {"kind": "logmel", "n_mels": 64}, frontend)
    enc = VGGishEncoder(frontend_channels(fe) + extra_channels, width, tuple(channels), convs, dropout)
    return AudioParts(fe, enc)


register_audio_family(
    "vggish", _vggish_build, default_pooling="attention", tiny={"width": 0.125, "frontend": {"n_mels": 16}}
)


class CRNNEncoder(AudioEncoder):
    """TALNet-style CRNN: conv blocks (2 x conv3x3-BN-ReLU, max-pool (time_pool, 2)), frequency averaged,
    then a bidirectional GRU over time.

    Args:
        in_channels: input channels.
        width: channel multiplier.
        channels: per-block channels before ``width`` (TALNet: 32, 64, 128, 128, 128).
        time_pools: time pooling factor per block (TALNet: 2, 2, 2, 1, 1; frequency is always halved).
        gru_hidden: GRU units per direction (TALNet: 100).
        dropout: dropout before the GRU.
    """

    input_dims = 2

    def __init__(
        self,
        in_channels: int = 1,
        width: float = 1.0,
        channels: tuple[int, ...] = (32, 64, 128, 128, 128),
        time_pools: tuple[int, ...] = (2, 2, 2, 1, 1),
        gru_hidden: int = 100,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if len(channels) != len(time_pools):
            raise ValueError(
                f"CRNN channels {channels} and time_pools {time_pools} must have the same length"
            )
        self.in_channels = in_channels
        layers: list[nn.Module] = []
        c = in_channels
        for ch, tp in zip(channels, time_pools):
            ch = scaled(ch, width)
            layers += _conv2d_bn_relu(c, ch) + _conv2d_bn_relu(ch, ch)
            layers.append(nn.MaxPool2d((2, tp), ceil_mode=True))
            c = ch
        self.conv = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)
        self.gru = nn.GRU(c, gru_hidden, batch_first=True, bidirectional=True)
        self.out_dim = 2 * gru_hidden

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h = time_frames(self.conv(self.as_input(x)))  # (B, T', C)
        frames, _ = self.gru(self.drop(h))  # (B, T', 2H)
        return frames, frames.mean(1)


def _crnn_build(
    spec: ModelSpec,
    *,
    extra_channels: int = 0,
    width: float = 0.5,
    channels: tuple[int, ...] = (32, 64, 128, 128, 128),
    time_pools: tuple[int, ...] = (2, 2, 2, 1, 1),
    gru_hidden: int = 64,
    dropout: float = 0.0,
    frontend: dict | None = None,
) -> AudioParts:
    """TALNet-style CRNN (conv blocks + BiGRU) + linear-softmax MIL pooling."""
    fe = frontend_from_options(spec, {"kind": "logmel", "n_mels": 64}, frontend)
    enc = CRNNEncoder(
        frontend_channels(fe) + extra_channels, width, tuple(channels), tuple(time_pools), gru_hidden, dropout
    )
    return AudioParts(fe, enc)


register_audio_family(
    "crnn",
    _crnn_build,
    default_pooling="linear_softmax",
    tiny={
        "width": 0.125,
        "channels": (32, 64),
        "time_pools": (2, 2),
        "gru_hidden": 8,
        "frontend": {"n_mels": 16},
    },
)


# ----------------------------------------------------------------------------------------------------------
# torchvision trunks (random init, weights=None)


class TorchvisionEncoder(AudioEncoder):
    """A torchvision image trunk on spectrogram maps; output (B, C, F', T') averaged over frequency.

    Args:
        trunk: module mapping (B, in_channels, F, T) -> (B, out_dim, F', T').
        in_channels: input channels.
        out_dim: trunk output channels.
    """

    input_dims = 2

    def __init__(self, trunk: nn.Module, in_channels: int, out_dim: int) -> None:
        super().__init__()
        self.trunk, self.in_channels, self.out_dim = trunk, in_channels, out_dim

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        frames = time_frames(self.trunk(self.as_input(x)))  # (B, T', C)
        return frames, frames.mean(1)


_RESNET_LAYERS = {18: ("basic", (2, 2, 2, 2)), 50: ("bottleneck", (3, 4, 6, 3))}


def _resnet_trunk(
    depth: int, in_channels: int, layers: tuple[int, ...] | None, width_per_group: int, stem_pool: bool
) -> tuple[nn.Module, int]:
    from ..stack import torchvision

    BasicBlock = torchvision.models.resnet.BasicBlock
    Bottleneck = torchvision.models.resnet.Bottleneck
    ResNet = torchvision.models.resnet.ResNet

    kind, default_layers = _RESNET_LAYERS[depth]
    block = BasicBlock if kind == "basic" else Bottleneck
    kw = {"width_per_group": width_per_group} if kind == "bottleneck" else {}
    net = ResNet(block, list(layers or default_layers), **kw)
    net.conv1 = nn.Conv2d(in_channels, 64, kernel_size=7, stride=2, padding=3, bias=False)
    trunk = nn.Sequential(
        net.conv1,
        net.bn1,
        net.relu,
        net.maxpool if stem_pool else nn.Identity(),
        net.layer1,
        net.layer2,
        net.layer3,
        net.layer4,
    )
    return trunk, 512 * block.expansion


def _resnet_build(
    spec: ModelSpec,
    *,
    depth: int,
    extra_channels: int = 0,
    bands: int = 1,
    layers: tuple[int, ...] | None = None,
    width_per_group: int = 64,
    stem_pool: bool = True,
    frontend: dict | None = None,
) -> AudioParts:
    """torchvision ResNet trunk on log-mel (1 channel, or 3-band with bands=3) + attention pooling."""
    fe = frontend_from_options(spec, {"kind": "logmel", "n_mels": 64, "bands": bands}, frontend)
    cin = frontend_channels(fe) + extra_channels
    trunk, out = _resnet_trunk(depth, cin, tuple(layers) if layers else None, width_per_group, stem_pool)
    return AudioParts(fe, TorchvisionEncoder(trunk, cin, out))


for _depth in _RESNET_LAYERS:
    register_audio_family(
        f"resnet{_depth}",
        _resnet_build,
        default_pooling="attention",
        fixed={"depth": _depth},
        tiny={
            "layers": (1, 1, 1, 1),
            "frontend": {"n_mels": 24},
            **({"width_per_group": 16} if _depth == 50 else {}),
        },
        doc=f"torchvision ResNet-{_depth} trunk on log-mel (1 channel or 3-band) + attention pooling.",
    )


#: EfficientNet-B0 stages (expand ratio, kernel, stride, in, out, layers); variants scale width and depth
_EFFNET_B0 = (
    (1, 3, 1, 32, 16, 1),
    (6, 3, 2, 16, 24, 2),
    (6, 5, 2, 24, 40, 2),
    (6, 3, 2, 40, 80, 3),
    (6, 5, 1, 80, 112, 3),
    (6, 5, 2, 112, 192, 4),
    (6, 3, 1, 192, 320, 1),
)
_EFFNET_SCALE = {"b0": (1.0, 1.0), "b2": (1.1, 1.2)}


def _effnet_trunk(
    variant: str, in_channels: int, width: float, depth: float, stochastic_depth_prob: float
) -> tuple[nn.Module, int]:
    from ..stack import torchvision

    EfficientNet = torchvision.models.EfficientNet
    MBConvConfig = torchvision.models.efficientnet.MBConvConfig

    w0, d0 = _EFFNET_SCALE[variant]
    setting = [MBConvConfig(*row, width_mult=w0 * width, depth_mult=d0 * depth) for row in _EFFNET_B0]
    net = EfficientNet(setting, dropout=0.0, stochastic_depth_prob=stochastic_depth_prob)
    first = net.features[0][0]
    net.features[0][0] = nn.Conv2d(
        in_channels,
        first.out_channels,
        kernel_size=first.kernel_size,
        stride=first.stride,
        padding=first.padding,
        bias=False,
    )
    return net.features, net.features[-1][0].out_channels


def _effnet_build(
    spec: ModelSpec,
    *,
    variant: str,
    extra_channels: int = 0,
    bands: int = 1,
    width: float = 1.0,
    depth: float = 1.0,
    stochastic_depth_prob: float = 0.2,
    frontend: dict | None = None,
) -> AudioParts:
    """torchvision EfficientNet on log-mel + PSLA multi-head attention pooling.

    ``width``/``depth`` multiply the variant's own multipliers (B0: 1.0/1.0, B2: 1.1/1.2); 1.0 is the
    torchvision network.
    """
    fe = frontend_from_options(spec, {"kind": "logmel", "n_mels": 64, "bands": bands}, frontend)
    cin = frontend_channels(fe) + extra_channels
    trunk, out = _effnet_trunk(variant, cin, width, depth, stochastic_depth_prob)
    return AudioParts(fe, TorchvisionEncoder(trunk, cin, out))


for _variant in _EFFNET_SCALE:
    register_audio_family(
        f"effnet_{_variant}",
        _effnet_build,
        default_pooling="psla",
        fixed={"variant": _variant},
        tiny={"width": 0.25, "depth": 0.25, "frontend": {"n_mels": 16}},
        doc=f"torchvision EfficientNet-{_variant.upper()} on log-mel (1 channel or 3-band) + PSLA pooling.",
    )
