"""APGD-CE and APGD-DLR (Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of
diverse parameter-free attacks", ICML 2020).

Step size starts at ``2 * radius`` and is halved at checkpoints ``w_j = ceil(p_j * N)`` (``p_0 = 0``,
``p_1 = 0.22``, ``p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06)``) when (1) the loss increased in at most
``rho = 0.75`` of the steps since the last checkpoint, or (2) the step was not reduced at the last checkpoint
and the best loss did not improve; after halving, the iterate restarts from the best point. Momentum 0.75.
The DLR loss (and its targeted variant) needs a single-label head with >= 3 (4 targeted) classes.

Threat model: ``linf``, ``l2`` and ``snr`` (L2 with per-sample radius); input or feature domain; band.

Example:
    >>> adv = APGD(model, Threat("linf", 0.002, "audio"), steps=50, loss="dlr")(batch)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import ATTACKS, Attack, Problem, steepest_ascent
from .projection import bview
from .threat import Threat


def checkpoints(steps: int) -> list[int]:
    """The iteration indices at which APGD checks its step-size conditions."""
    p = [0.0, 0.22]
    while p[-1] < 1.0:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    return sorted({int(math.ceil(q * steps)) for q in p[1:] if q <= 1.0})


@ATTACKS.register("apgd-ce")
class APGD(Attack):
    """Auto-PGD with a step-size schedule and momentum.

    Args:
        model: a ZooModel.
        threat: a `Threat` with norm linf, l2 or snr.
        steps: iterations (>= 1).
        loss: ``"ce"`` / ``"bce"`` (APGD-CE; auto picks by head) or ``"dlr"`` (APGD-DLR).
        rho: oscillation threshold of condition (1).
        momentum: the momentum coefficient alpha (0.75 in the paper).
        random_start, restarts, early_stop, seed: see `Attack` (early_stop here only skips later restarts).

    Shapes: any ``(B, ...)`` per attacked modality.
    """

    name = "apgd-ce"
    norms = ("linf", "l2", "snr")
    takes = frozenset({"steps", "restarts", "early_stop"})

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 100, rho: float = 0.75,
                 momentum: float = 0.75, **kwargs: Any) -> None:
        super().__init__(model, threat, **kwargs)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"{self.name}: steps must be an int >= 1, got {steps!r}")
        if not 0 < rho < 1 or not 0 < momentum <= 1:
            raise ValueError(f"{self.name}: need 0 < rho < 1 and 0 < momentum <= 1, got {rho}, {momentum}")
        self.steps, self.rho, self.momentum = steps, rho, momentum

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "steps": self.steps, "rho": self.rho, "momentum": self.momentum,
                "checkpoints": checkpoints(self.steps)}

    def run(self, p: Problem) -> dict[str, Tensor]:
        if p.target is not None and self.loss == "dlr" and self.model.spec.num_classes < 4:
            raise ValueError(f"{self.name}: targeted DLR needs >= 4 classes, model has "
                             f"{self.model.spec.num_classes}")
        return self.keep_best(p, self._once)

    def _once(self, p: Problem) -> dict[str, Tensor]:
        norm = self.threat.norm
        mods = list(p.x)
        n = p.batch_size
        dev = p.y.device
        d = self.start(p)
        for v in d.values():
            v.requires_grad_(True)
        loss, logits, g = p.loss_grad(d, self.loss_fn)
        step = {m: 2.0 * c.r for m, c in p.cons.items()}
        best_adv = {m: v.detach().clone() for m, v in d.items()}
        succ = p.adversarial(d, logits).clone()  # fresh draws on a stochastic model
        x_best = {m: v.detach().clone() for m, v in d.items()}
        g_best = {m: v.clone() for m, v in g.items()}
        loss_best = loss.clone()
        loss_prev = loss.clone()
        n_incr = torch.zeros(n, device=dev)
        reduced_last = torch.ones(n, dtype=torch.bool, device=dev)
        loss_best_last = loss_best.clone()
        marks = set(checkpoints(self.steps))
        last_mark = 0
        d_old = {m: v.detach().clone() for m, v in d.items()}
        for i in range(self.steps):
            with torch.no_grad():
                a = self.momentum if i > 0 else 1.0
                for m in mods:
                    c, cur = p.cons[m], d[m].detach()
                    diff = cur - d_old[m]
                    d_old[m] = cur.clone()
                    z = cur + steepest_ascent(g[m], norm, step[m])
                    c.project_(z)
                    new = cur + (z - cur) * a + diff * (1 - a)
                    c.project_(new)
                    d[m].copy_(new)
            loss, logits, g = p.loss_grad(d, self.loss_fn)
            with torch.no_grad():
                hit = p.adversarial(d, logits)
                new_hit = hit & ~succ
                for m in mods:
                    best_adv[m][new_hit] = d[m].detach()[new_hit]
                succ |= hit
                n_incr += (loss > loss_prev).float()
                loss_prev = loss
                better = loss > loss_best
                for m in mods:
                    x_best[m][better] = d[m].detach()[better]
                    g_best[m][better] = g[m][better]
                loss_best = torch.where(better, loss, loss_best)
                if (i + 1) in marks:
                    k = i + 1 - last_mark
                    osc = n_incr <= k * self.rho
                    stall = (~reduced_last) & (loss_best_last >= loss_best)
                    red = osc | stall
                    reduced_last, loss_best_last = red, loss_best.clone()
                    n_incr.zero_()
                    last_mark = i + 1
                    if bool(red.any()):
                        for m in mods:
                            step[m] = torch.where(red, step[m] / 2, step[m])
                            rv = bview(red, d[m])
                            d[m].copy_(torch.where(rv, x_best[m], d[m].detach()))
                            g[m] = torch.where(rv, g_best[m], g[m])
            if self.stops_early(p) and bool(succ.all()):
                break
        return {m: torch.where(bview(succ, best_adv[m]), best_adv[m], x_best[m]) for m in mods}


@ATTACKS.register("apgd-dlr")
class APGDDLR(APGD):
    """APGD with the DLR loss (targeted DLR when called with a target). Single-label heads only."""

    name = "apgd-dlr"
    supports_multilabel = False

    def __init__(self, model: nn.Module, threat: Threat, **kwargs: Any) -> None:
        if kwargs.setdefault("loss", "dlr") != "dlr":
            raise ValueError(f"apgd-dlr: loss is fixed to 'dlr', got {kwargs['loss']!r}")
        super().__init__(model, threat, **kwargs)
