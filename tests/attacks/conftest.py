"""Tiny ZooModel toys for attack tests (fast on CPU), and the trained FSDD model via the zoo (skipped when
the zoo or the data is not available)."""

from __future__ import annotations

import os

import pytest
import torch
from torch import nn

from robustlab.models.base import ModelSpec, ZooModel

SR = 8000
T = 256



class WaveModel(ZooModel):
    """Conv1d on a raw waveform (B, T); identity front-end."""

    def __init__(self, k: int = 5, multilabel: bool = False, t: int = T) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, SR, k, multilabel=multilabel)
        self.frontend = nn.Identity()
        self.conv = nn.Conv1d(1, 8, 9, stride=4)
        self.head = nn.Linear(8, k)

    def forward_features(self, f):
        h = torch.tanh(self.conv(f["audio"][:, None]))  # (B, 8, T')
        return self.head(h.mean(-1)) * 4

    def embed_features(self, f):
        return {"audio": self.conv(f["audio"][:, None]).mean(-1)}


class SpecFrontend(nn.Module):
    """Fixed differentiable frontend: framed |rfft| -> log, (B, T) -> (B, 1, F, frames)."""

    def __init__(self, n_fft: int = 32) -> None:
        super().__init__()
        self.n_fft = n_fft
        self.register_buffer("win", torch.hann_window(n_fft))

    def forward(self, x):
        fr = x.unfold(-1, self.n_fft, self.n_fft // 2) * self.win  # (B, frames, n_fft)
        mag = torch.fft.rfft(fr, dim=-1).abs()
        return torch.log(mag + 1e-3).transpose(1, 2)[:, None]


class SpecModel(ZooModel):
    """Spectrogram model: fixed front-end then a small conv2d backbone."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (T,)}, SR, k)
        self.frontend = SpecFrontend()
        self.conv = nn.Conv2d(1, 4, 3)
        self.head = nn.Linear(4, k)

    def forward_features(self, f):
        return self.head(torch.relu(self.conv(f["audio"])).mean((-2, -1)))

    def embed_features(self, f):
        return {"audio": torch.relu(self.conv(f["audio"])).mean((-2, -1))}


class ImageModel(ZooModel):
    """Conv2d on images (B, 3, H, W)."""

    def __init__(self, k: int = 5, shape=(3, 8, 8)) -> None:
        super().__init__()
        self.spec = ModelSpec(("visual",), {"visual": shape}, None, k)
        self.frontend = nn.Identity()
        self.conv = nn.Conv2d(3, 6, 3)
        self.head = nn.Linear(6, k)

    def forward_features(self, f):
        return self.head(torch.tanh(self.conv(f["visual"])).mean((-2, -1))) * 4

    def embed_features(self, f):
        return {"visual": self.conv(f["visual"]).mean((-2, -1))}


class VideoModel(ImageModel):
    """Frames (B, F, 3, H, W) -> per-frame conv, averaged."""

    def __init__(self, k: int = 5) -> None:
        super().__init__(k, shape=(2, 3, 8, 8))

    def forward_features(self, f):
        v = f["visual"]
        b, fr = v.shape[:2]
        h = torch.tanh(self.conv(v.flatten(0, 1))).mean((-2, -1)).view(b, fr, -1).mean(1)
        return self.head(h) * 4


class FusionModel(ZooModel):
    """Late fusion: waveform branch + image branch, logits summed."""

    def __init__(self, k: int = 5) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio", "visual"), {"audio": (T,), "visual": (3, 8, 8)}, SR, k)
        self.frontend = nn.Identity()
        self.a = WaveModel(k)
        self.v = ImageModel(k)

    def forward_features(self, f):
        return self.a.forward_features(f) + self.v.forward_features(f)

    def embed_features(self, f):
        return {"audio": self.a.embed_features(f)["audio"], "visual": self.v.embed_features(f)["visual"]}


class QuantisedModel(WaveModel):
    """Gradient masking: a rounding quantiser with zero gradient in front of a waveform model."""

    def forward_features(self, f):
        q = torch.round(f["audio"] * 8) / 8
        return super().forward_features({"audio": q})


class NoisyModel(WaveModel):
    """A stochastic forward pass (Gaussian input noise, even in eval mode)."""

    def forward_features(self, f):
        return super().forward_features({"audio": f["audio"] + 0.05 * torch.randn_like(f["audio"])})


def make_batch(model: ZooModel, b: int = 6, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {}
    for m in model.spec.modalities:
        lo, hi = model.spec.bounds[m]
        shape = model.spec.shapes[m]
        if m == "audio":
            out[m] = (0.5 * torch.randn((b, *shape), generator=g)).clamp(lo, hi)
            out[m][0, :5] = hi  # a sample touching the bounds
        else:
            out[m] = torch.rand((b, *shape), generator=g) * (hi - lo) + lo
    k = model.spec.num_classes
    if model.spec.multilabel:
        out["label"] = (torch.rand((b, k), generator=g) > 0.6).float()
    else:
        with torch.no_grad():
            out["label"] = model({m: out[m] for m in model.spec.modalities}).argmax(1)
    return out


def toy(name: str, seed: int = 0) -> ZooModel:
    torch.manual_seed(seed)
    m = {"wave": WaveModel, "spec": SpecModel, "image": ImageModel, "video": VideoModel,
         "fusion": FusionModel, "multilabel": lambda: WaveModel(multilabel=True),
         "quantised": QuantisedModel, "noisy": NoisyModel}[name]()
    return m.eval()


@pytest.fixture(scope="session")
def fsdd_model(session_home):
    """A real FSDD model (tests/recipes/m5.test_fsdd.toml, trained once per session into the session's
    temporary ROBUSTLAB_HOME) and a 64-example test batch. Skipped only when the FSDD data is absent."""
    data = os.environ.get("ROBUSTLAB_DATA")
    if not data or not os.path.isdir(os.path.join(data, "fsdd", "recordings")):
        pytest.skip("real data absent: set ROBUSTLAB_DATA to a folder holding fsdd/recordings")
    import robustlab.zoo as zoo
    from robustlab.data import collate

    recipes = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "recipes")
    saved = {k: os.environ.get(k) for k in ("ROBUSTLAB_HOME", "ROBUSTLAB_RECIPES")}
    os.environ["ROBUSTLAB_HOME"] = str(session_home)
    os.environ["ROBUSTLAB_RECIPES"] = recipes
    try:
        model = zoo.get_or_train("m5.test_fsdd")
        ds = zoo.dataset_for("m5.test_fsdd", "test")
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    batch = collate([ds[i] for i in range(min(64, len(ds)))])
    return model.eval(), batch
