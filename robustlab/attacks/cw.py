"""CW-L2 (Carlini & Wagner, "Towards evaluating the robustness of neural networks", S&P 2017).

Minimises ``||x' - x||_2^2 + c * max(margin(x'), -kappa)`` with Adam over ``w``, where
``x' = lo + (hi - lo) * (tanh(w) + 1) / 2`` maps any ``w`` into the model's declared bounds (feature-domain
threats are unbounded: ``x' = w``). ``c`` is found per sample by binary search (x10 until the first success).

CW is a minimum-norm attack; a robustness number needs a budget. The threat's ``eps`` (L2) is enforced on the
returned examples by ``budget=``:

* ``"project"`` (default): the smallest successful perturbation found, projected onto the eps ball (then
  clipped to the bounds) when it is larger; samples without success keep the last iterate, projected.
* ``"keep"``: only successes within eps are kept, every other sample is returned clean (pure CW-L2 success
  rate at eps).

Example:
    >>> adv = CW(model, Threat("l2", 0.5, "audio"), steps=100, binary_steps=5)(batch)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import losses as L
from .base import ATTACKS, Attack, Problem
from .projection import bview, lp_norm
from .threat import Threat


@ATTACKS.register("cw-l2")
class CW(Attack):
    """Carlini-Wagner L2 with per-sample binary search on c.

    Args:
        model: a ZooModel with a single-label head.
        threat: an ``l2`` `Threat` on one modality (input or feature domain; no band).
        steps: Adam steps per binary-search round.
        binary_steps: rounds of the search on c.
        c_init: initial c.
        kappa: confidence margin.
        lr: Adam learning rate (in w units).
        budget: ``"project"`` or ``"keep"`` (see the module docstring).
        seed: see `Attack`.

    Shapes: any ``(B, ...)``.
    """

    name = "cw-l2"
    norms = ("l2",)
    supports_multilabel = False
    supports_band = False

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 100, binary_steps: int = 5,
                 c_init: float = 1.0, kappa: float = 0.0, lr: float = 0.01, budget: str = "project",
                 **kwargs: Any) -> None:
        kwargs.setdefault("random_start", False)
        super().__init__(model, threat, loss="ce", **kwargs)
        if threat.modality == "both":
            raise ValueError("cw-l2: attacks one modality; got modality='both'")
        if steps < 1 or binary_steps < 1 or c_init <= 0 or lr <= 0 or kappa < 0:
            raise ValueError(f"cw-l2: need steps, binary_steps >= 1 and c_init, lr > 0, kappa >= 0; got "
                             f"{steps}, {binary_steps}, {c_init}, {lr}, {kappa}")
        if budget not in ("project", "keep"):
            raise ValueError(f"cw-l2: budget must be 'project' or 'keep', got {budget!r}")
        if self.eot_samples > 1:
            raise ValueError("cw-l2: EOT is not supported")
        self.steps, self.binary_steps, self.c_init = steps, binary_steps, c_init
        self.kappa, self.lr = kappa, lr
        self.budget = budget

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "steps": self.steps, "binary_steps": self.binary_steps,
                "c_init": self.c_init, "kappa": self.kappa, "lr": self.lr, "budget": self.budget}

    def run(self, p: Problem) -> dict[str, Tensor]:
        (m,) = list(p.x)
        x, c_ = p.x[m], p.cons[m]
        b = p.batch_size
        bounds = c_.bounds
        if bounds is not None:
            lo, hi = bounds
            u = ((x - lo) / (hi - lo) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
            w0 = torch.atanh(u)

            def to_x(w: Tensor) -> Tensor:
                return lo + (hi - lo) * (torch.tanh(w) + 1) / 2
        else:
            w0 = x.clone()

            def to_x(w: Tensor) -> Tensor:
                return w

        c = torch.full((b,), self.c_init, device=x.device)
        c_lo = torch.zeros(b, device=x.device)
        c_hi = torch.full((b,), float("inf"), device=x.device)
        best_l2 = torch.full((b,), float("inf"), device=x.device)
        best = torch.zeros_like(x)
        last = torch.zeros_like(x)
        for _ in range(self.binary_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros(b, dtype=torch.bool, device=x.device)
            for _ in range(self.steps):
                xa = to_x(w)
                logits = p.forward({**p.fixed, m: xa})
                marg = -L.margin(logits, p.y, p.target)  # > 0 while not adversarial
                f = marg.clamp(min=-self.kappa)
                l2sq = (xa - x).reshape(b, -1).pow(2).sum(1)
                obj = (l2sq + c * f).sum()
                (gw,) = torch.autograd.grad(obj, [w])
                w.grad = gw
                opt.step()
                with torch.no_grad():
                    hit = p.success(logits)
                    l2 = l2sq.sqrt()
                    imp = hit & (l2 < best_l2)
                    best_l2 = torch.where(imp, l2, best_l2)
                    best[imp] = (xa - x)[imp]
                    found |= hit
            with torch.no_grad():
                last = to_x(w) - x
                c_hi = torch.where(found, torch.minimum(c_hi, c), c_hi)
                c_lo = torch.where(found, c_lo, torch.maximum(c_lo, c))
                c = torch.where(torch.isinf(c_hi), c * 10, (c_lo + c_hi) / 2)
        ok = torch.isfinite(best_l2)
        delta = torch.where(bview(ok, x), best, last)
        if self.budget == "keep":
            within = ok & (lp_norm(delta, "l2") <= c_.r * (1 + 1e-6))
            delta = torch.where(bview(within, x), delta, torch.zeros_like(delta))
        return {m: c_.project_(delta.detach().clone())}
