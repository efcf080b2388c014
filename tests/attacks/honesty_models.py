"""Toy models that make evaluation-honesty defects visible (issue 10): a noisy (stochastic) model, a model on
which the last PGD iterate is weaker than an earlier one, gradient-masked and gradient-obfuscated models."""

from __future__ import annotations

import torch
from conftest import SR, T, WaveModel
from torch import nn

from robustlab.models.base import ModelSpec, ZooModel


class NoisyLinear(ZooModel):
    """Linear classifier on the waveform with Gaussian input noise (``sigma``) in every forward pass, even in
    eval mode: the stochastic model of the issue's demo (small margins, so one lucky pass matters)."""

    def __init__(self, k: int = 5, sigma: float = 0.1, t: int = T, declare: bool | None = None) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, SR, k)
        self.frontend = nn.Identity()
        self.sigma = sigma
        self.head = nn.Linear(t, k)
        if declare is not None:
            self.stochastic = declare

    def forward_features(self, f):
        x = f["audio"]
        return self.head(x + self.sigma * torch.randn_like(x))

    def embed_features(self, f):
        return {"audio": f["audio"]}


def noisy_linear(sigma: float = 0.1, n: int = 64, seed: int = 0, **kw) -> tuple[NoisyLinear, dict]:
    """A `NoisyLinear` and a batch labelled by the noise-free model (clean accuracy ~0.85 at sigma 0.1)."""
    torch.manual_seed(seed)
    model = NoisyLinear(sigma=sigma, **kw).eval()
    g = torch.Generator().manual_seed(seed)
    x = (0.5 * torch.randn(n, T, generator=g)).clamp(-1, 1)
    with torch.no_grad():
        y = model.head(x).argmax(1)
    return model, {"audio": x, "label": y}


class Overshoot(ZooModel):
    """Deterministic model on which PGD's last iterate is weaker than an earlier one.

    With ``u = mean(x) / scale``: class 0 (the label) has logit 1, class 1 a bump ``1.2 - 20 (u - 0.5)^2``
    (argmax only for |u - 0.5| < 0.1: the adversarial window) and ten classes ``0.95 u``. The CE loss grows
    monotonically in u on [0, 1], so L-inf PGD from zero walks u up through the window and ends at u = 1,
    correctly classified again.
    """

    def __init__(self, scale: float = 0.1, t: int = T) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, SR, 12)
        self.frontend = nn.Identity()
        self.scale = scale

    def forward_features(self, f):
        u = f["audio"].mean(-1) / self.scale
        z0 = torch.ones_like(u)
        z1 = 1.2 - 20 * (u - 0.5) ** 2
        rest = (0.95 * u)[:, None].expand(-1, 10)
        return torch.cat([z0[:, None], z1[:, None], rest], dim=1)

    def embed_features(self, f):
        return {"audio": f["audio"]}


class Flip(ZooModel):
    """Deterministic model on which CE ascent turns a misclassified clean input into a correct one.

    With ``u = mean(x) / scale``: the label (class 0) has logit 1, class 1 ``1.5 - 3u`` (the clean prediction
    at u = 0) and 30 classes ``0.95 u``. The CE of class 0 grows monotonically in u, so PGD walks to u = 1,
    where class 0 wins: without the clean input as a candidate, robust accuracy exceeds clean accuracy.
    """

    def __init__(self, scale: float = 0.1, t: int = T) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, SR, 32)
        self.frontend = nn.Identity()
        self.scale = scale

    def forward_features(self, f):
        u = f["audio"].mean(-1) / self.scale
        return torch.cat([torch.ones_like(u)[:, None], (1.5 - 3 * u)[:, None],
                          (0.95 * u)[:, None].expand(-1, 30)], dim=1)

    def embed_features(self, f):
        return {"audio": f["audio"]}


class Saturating(WaveModel):
    """Gradient masking by a flat-then-steep front-end ``tanh(gain x)``: its gradient underflows to exactly 0
    away from x = 0, so a full-range L-inf attack stalls part-way (accuracy between 0 and chance)."""

    def __init__(self, gain: float = 50.0) -> None:
        super().__init__()
        self.gain = gain

    def forward_features(self, f):
        return super().forward_features({"audio": torch.tanh(self.gain * f["audio"])})


class QuantisedSTE(WaveModel):
    """Obfuscated gradients: a rounding quantiser whose backward pass is the identity (straight-through), so
    gradients are non-zero but do not predict the loss (first-order prediction fails)."""

    def forward_features(self, f):
        x = f["audio"]
        q = x + (torch.round(x * 4) / 4 - x).detach()
        return super().forward_features({"audio": q})


class _Reverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return x.view_as(x)

    @staticmethod
    def backward(ctx, g):
        return -g


class ReversedGradient(WaveModel):
    """Obfuscated gradients: the identity forward, the negated gradient backward (gradient steps lower the
    loss; random steps raise it more)."""

    def forward_features(self, f):
        return super().forward_features({"audio": _Reverse.apply(f["audio"])})


class NoisyWrapper(ZooModel):
    """Gaussian input noise (``sigma``) in front of any single-modality audio zoo model (stochastic)."""

    def __init__(self, inner: ZooModel, sigma: float) -> None:
        super().__init__()
        self.inner, self.sigma = inner, sigma
        self.spec = inner.spec
        self.frontend = nn.Identity()

    def forward_features(self, f):
        x = f["audio"]
        return self.inner({"audio": x + self.sigma * torch.randn_like(x)})

    def embed_features(self, f):
        return self.inner.embed({"audio": f["audio"]})


def acc_draws(model: nn.Module, batch: dict, adv: dict, draws: int = 32) -> torch.Tensor:
    """Per-sample fraction of ``draws`` fresh forward passes classifying ``adv`` correctly (B,)."""
    from robustlab.attacks import predict

    with torch.no_grad():
        return torch.stack([(predict(model, adv).argmax(1) == batch["label"]).float()
                            for _ in range(draws)]).mean(0)
