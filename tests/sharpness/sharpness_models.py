"""Tiny models for the sharpness tests: an MLP (exact Hessian by autograd.functional.hessian), a model whose
loss is a known quadratic, a linear model, and the AV fusion toy of the attack tests."""

from __future__ import annotations

import torch
from torch import nn
from torch.func import functional_call

from robustlab.models.base import ModelSpec, ZooModel


class MLP(ZooModel):
    """Two-layer MLP on a short "waveform" (B, T): Linear -> act -> Linear (optionally BN and dropout)."""

    def __init__(self, t: int = 6, hidden: int = 5, k: int = 3, act: str = "tanh", norm: bool = False,
                 multilabel: bool = False) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, 8000, k, multilabel=multilabel)
        self.frontend = nn.Identity()
        self.fc1 = nn.Linear(t, hidden)
        self.act = nn.Tanh() if act == "tanh" else nn.ReLU()
        self.bn = nn.BatchNorm1d(hidden) if norm else nn.Identity()
        self.drop = nn.Dropout(0.5) if norm else nn.Identity()
        self.fc2 = nn.Linear(hidden, k)

    def forward_features(self, f):
        return self.fc2(self.drop(self.bn(self.act(self.fc1(f["audio"])))))

    def embed_features(self, f):
        return {"fused": self.act(self.fc1(f["audio"]))}


class Linear(ZooModel):
    """Logits = W x + b on (B, T)."""

    def __init__(self, t: int = 6, k: int = 3) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, 8000, k)
        self.frontend = nn.Identity()
        self.fc = nn.Linear(t, k)

    def forward_features(self, f):
        return self.fc(f["audio"])

    def embed_features(self, f):
        return {"fused": self.fc(f["audio"])}


class Quadratic(ZooModel):
    """A parameter vector w broadcast as the "logits" of every example; with `quadratic_loss(A, c)` the mean
    loss is exactly 0.5 (w - c)^T A (w - c), whose Hessian is A."""

    def __init__(self, n: int = 8) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (2,)}, 8000, n)
        self.frontend = nn.Identity()
        self.w = nn.Parameter(torch.zeros(n, dtype=torch.float64))

    def forward_features(self, f):
        return self.w.expand(f["audio"].shape[0], -1)

    def embed_features(self, f):
        return {"fused": self.forward_features(f)}


class ConvBN(ZooModel):
    """A 1-D conv net on (B, T): Sequential(conv-BN-tanh, conv(bias)-BN-tanh), a BN that follows no conv
    (outside any Sequential), mean over time, linear head -- the layouts `affine_batchnorm` folds or maps."""

    def __init__(self, t: int = 12, k: int = 3) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio",), {"audio": (t,)}, 8000, k)
        self.frontend = nn.Identity()
        self.body = nn.Sequential(nn.Conv1d(1, 3, 3, bias=False), nn.BatchNorm1d(3), nn.Tanh(),
                                  nn.Conv1d(3, 2, 3, padding=1), nn.BatchNorm1d(2), nn.Tanh())
        self.bn = nn.BatchNorm1d(2)
        self.head = nn.Linear(2, k)

    def forward_features(self, f):
        return self.head(self.bn(self.body(f["audio"][:, None])).mean(-1))

    def embed_features(self, f):
        return {"fused": self.body(f["audio"][:, None]).mean(-1)}

    def randomise_statistics(self, seed: int = 0) -> ConvBN:
        g = torch.Generator().manual_seed(seed)
        with torch.no_grad():
            for bn in (self.body[1], self.body[4], self.bn):
                n = bn.num_features
                bn.running_mean.copy_(torch.rand(n, generator=g) * 2 - 1)
                bn.running_var.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                bn.weight.copy_(torch.rand(n, generator=g) * 1.5 + 0.5)
                bn.bias.copy_(torch.rand(n, generator=g) * 2 - 1)
        return self


def quadratic_loss(a: torch.Tensor, c: torch.Tensor | None = None):
    def loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        z = logits - (0 if c is None else c)
        return 0.5 * ((z @ a) * z).sum(1)

    return loss


def audio_batch(model: ZooModel, b: int = 16, seed: int = 0, dtype=torch.float32) -> dict:
    g = torch.Generator().manual_seed(seed)
    x = (0.5 * torch.randn((b, *model.spec.shapes["audio"]), generator=g, dtype=dtype)).clamp(-1, 1)
    k = model.spec.num_classes
    if model.spec.multilabel:
        y = (torch.rand((b, k), generator=g) > 0.5).float()
    else:
        y = torch.randint(0, k, (b,), generator=g)
    return {"audio": x, "label": y}


def exact_hessian(model: nn.Module, batch: dict, loss_fn) -> torch.Tensor:
    """The full Hessian of the mean loss w.r.t. all parameters (flattened in the model's order)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    sizes = [p.numel() for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])

    def f(flat: torch.Tensor) -> torch.Tensor:
        parts = torch.split(flat, sizes)
        params = {n: t.view(s) for n, t, s in zip(names, parts, shapes)}
        logits = functional_call(model, params, ({"audio": batch["audio"]},))
        return loss_fn(logits, batch["label"]).mean()

    was = model.training
    model.eval()
    try:
        return torch.autograd.functional.hessian(f, flat0)
    finally:
        model.train(was)


class AVModel(ZooModel):
    """Late fusion toy: a waveform MLP branch and a tiny conv image branch, logits summed."""

    def __init__(self, t: int = 16, k: int = 3, shape=(3, 4, 4)) -> None:
        super().__init__()
        self.spec = ModelSpec(("audio", "visual"), {"audio": (t,), "visual": shape}, 8000, k)
        self.frontend = nn.Identity()
        self.a1 = nn.Linear(t, 6)
        self.a2 = nn.Linear(6, k)
        self.conv = nn.Conv2d(shape[0], 4, 3)
        self.v2 = nn.Linear(4, k)

    def forward_features(self, f):
        a = self.a2(torch.tanh(self.a1(f["audio"])))
        v = self.v2(torch.tanh(self.conv(f["visual"])).mean((-2, -1)))
        return a + v

    def embed_features(self, f):
        return {"audio": torch.tanh(self.a1(f["audio"])), "visual": self.conv(f["visual"]).mean((-2, -1))}


def av_batch(model: AVModel, b: int = 8, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    out = {"audio": (0.5 * torch.randn((b, *model.spec.shapes["audio"]), generator=g)).clamp(-1, 1),
           "visual": torch.rand((b, *model.spec.shapes["visual"]), generator=g)}
    out["label"] = torch.randint(0, model.spec.num_classes, (b,), generator=g)
    return out
