"""CW-L2 (Carlini & Wagner, "Towards evaluating the robustness of neural networks", S&P 2017).

Minimises ``||x' - x||_2^2 + c * max(-margin(x'), -kappa)`` with Adam over ``w``, where
``x' = lo + (hi - lo) * (tanh(w) + 1) / 2`` maps any ``w`` into the model's declared bounds (feature-domain
threats are unbounded: ``x' = w``). ``c`` is found per sample by binary search (x10 until the first success,
then bisection), as in the reference implementation.

Success honours the confidence ``kappa``: an iterate counts as a (minimum-norm) adversarial example only when
its logit margin is at least ``kappa`` (``kappa = 0``: misclassified). The smallest such example per sample,
over all binary-search rounds and restarts, is kept in `CW.min_norm` / `CW.min_norm_delta` (not bounded by
the threat's eps: the minimum-norm answer).

``restarts``: independent runs; the first starts at the clean input (the reference), later ones at a random
point of the threat's feasible set (seeded by the attack's generator); per sample the smallest adversarial
example of all runs is kept, so more restarts never give a larger minimum norm.

A robustness number needs a budget; the returned batch is inside the threat's L2 ball and the bounds. Every
iterate is offered to the call's worst-case tracker (`Attack.solve`: per sample the point kept is feasible,
adversarial first, then of highest margin; only iterates strictly inside the ball are offered), so what is
returned is the worst case CW *saw inside the budget*.
``budget=`` adds one more candidate per sample:

* ``"project"`` (default): the minimum-norm example, scaled onto the eps ball (then clipped). A projected
  minimum-norm example is seldom still adversarial; it is kept only when it is (the tracker decides),
  otherwise the best in-budget iterate seen stays.
* ``"keep"``: the minimum-norm example only when it already lies within eps (else nothing is added).

The returned batch's success (``last_success``, robust accuracy) is plain misclassification, as for every
attack; ``kappa`` governs which examples count for the minimum-norm search.

Defaults: the reference code uses 9 binary-search steps, initial c 1e-3, Adam lr 1e-2 and up to 10 000 steps
with early abort; cleverhans uses c 1e-2 and 5 search steps; torchattacks c = 1 with 50 steps and no search.
Here: 9 search steps, c_init 1e-2 (x10 growth reaches c = 10 by the fourth round in waveform units, leaving
five bisection rounds), lr 1e-2, 100 steps per round (CPU budget; raise for a full-tier evaluation).

Example:
    >>> atk = CW(model, Threat("l2", 0.5, "audio"), steps=200, kappa=1.0, restarts=2)
    >>> adv = atk(batch)
    >>> atk.min_norm          # per-sample smallest L2 norm with margin >= kappa (inf: none found)
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from . import losses as L
from .base import ATTACKS, Attack, Problem
from .projection import bview, lp_norm
from .threat import Threat

BUDGETS = ("project", "keep")


@ATTACKS.register("cw-l2")
class CW(Attack):
    """Carlini-Wagner L2 with per-sample binary search on c, confidence kappa and restarts.

    Args:
        model: a ZooModel with a single-label head.
        threat: an ``l2`` `Threat` on one modality (input or feature domain; no band).
        steps: Adam steps per binary-search round.
        binary_steps: rounds of the search on c.
        c_init: initial c.
        kappa: confidence: success needs a logit margin >= kappa.
        lr: Adam learning rate (in w units).
        budget: ``"project"`` or ``"keep"`` (see the module docstring).
        restarts: independent runs (the first from the clean input, later ones from random feasible points).
        seed: see `Attack`.

    Attributes (after a call):
        min_norm: (B,) smallest L2 norm of an example with margin >= kappa (inf where none was found).
        min_norm_delta: (B, ...) those perturbations (zeros where none was found).

    Shapes: any ``(B, ...)``.
    """

    name = "cw-l2"
    norms = ("l2",)
    supports_multilabel = False
    supports_band = False
    supports_joint = False
    supports_eot = False
    minimum_norm = True
    takes = frozenset({"steps", "restarts"})

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 100, binary_steps: int = 9,
                 c_init: float = 1e-2, kappa: float = 0.0, lr: float = 0.01, budget: str = "project",
                 **kwargs: Any) -> None:
        kwargs.setdefault("random_start", False)
        super().__init__(model, threat, loss="ce", **kwargs)
        if threat.modality == "both":
            raise ValueError("cw-l2: attacks one modality; got modality='both'")
        if steps < 1 or binary_steps < 1 or c_init <= 0 or lr <= 0 or kappa < 0:
            raise ValueError(f"cw-l2: need steps, binary_steps >= 1 and c_init, lr > 0, kappa >= 0; got "
                             f"{steps}, {binary_steps}, {c_init}, {lr}, {kappa}")
        if budget not in BUDGETS:
            raise ValueError(f"cw-l2: budget must be one of {BUDGETS}, got {budget!r}")
        if self.eot_samples > 1:
            raise ValueError("cw-l2: EOT is not supported")
        self.steps, self.binary_steps, self.c_init = steps, binary_steps, c_init
        self.kappa, self.lr = float(kappa), lr
        self.budget = budget
        self.min_norm: Tensor | None = None
        self.min_norm_delta: Tensor | None = None

    def protocol(self) -> dict[str, Any]:
        rule = ("worst in-budget iterate, or the minimum-norm example projected onto the eps ball when it "
                "is still adversarial" if self.budget == "project" else
                "worst in-budget iterate, or the minimum-norm example when it lies within eps")
        return {**super().protocol(), "steps": self.steps, "binary_steps": self.binary_steps,
                "c_init": self.c_init, "kappa": self.kappa, "lr": self.lr, "budget": self.budget,
                "budget_rule": rule}

    def _hit(self, logits: Tensor, p: Problem) -> Tensor:
        """Success honouring kappa: misclassified (or on target) with a logit margin >= kappa."""
        hit = p.success(logits)
        if self.kappa > 0:
            hit = hit & (L.margin(logits, p.y, p.target) >= self.kappa)
        return hit

    @staticmethod
    def _offer(p: Problem, m: str, d: Tensor, logits: Tensor, inside: Tensor) -> None:
        """Offer the iterates strictly inside the budget (no float slack) to the call's worst-case tracker."""
        if p.tracker is None or not bool(inside.any()):
            return
        if bool(inside.all()):
            p.offer({m: d}, logits)
            return
        idx = inside.nonzero().flatten()
        p.subset(idx).offer({m: d[idx]}, logits[idx])

    def _search(self, p: Problem, m: str, start: Tensor, best_l2: Tensor, best: Tensor) -> Tensor:
        """One CW run (binary search on c) from perturbation ``start``.

        Updates ``best_l2`` / ``best`` in place with every smaller successful example (margin >= kappa);
        returns the last iterate's perturbation.
        """
        x, c_ = p.x[m], p.cons[m]
        b = p.batch_size
        bounds = c_.bounds
        if bounds is not None:
            lo, hi = bounds
            u = ((x + start - lo) / (hi - lo) * 2 - 1).clamp(-1 + 1e-6, 1 - 1e-6)
            w0 = torch.atanh(u)

            def to_x(w: Tensor) -> Tensor:
                return lo + (hi - lo) * (torch.tanh(w) + 1) / 2
        else:
            w0 = x + start

            def to_x(w: Tensor) -> Tensor:
                return w

        dev = x.device
        c = torch.full((b,), self.c_init, device=dev)
        c_lo = torch.zeros(b, device=dev)
        c_hi = torch.full((b,), float("inf"), device=dev)
        last = torch.zeros_like(x)
        for _ in range(self.binary_steps):
            w = w0.clone().requires_grad_(True)
            opt = torch.optim.Adam([w], lr=self.lr)
            found = torch.zeros(b, dtype=torch.bool, device=dev)
            for _ in range(self.steps):
                xa = to_x(w)
                logits = p.forward({**p.fixed, m: xa})
                marg = L.margin(logits, p.y, p.target)  # > 0: adversarial
                f = (-marg).clamp(min=-self.kappa)
                l2sq = (xa - x).reshape(b, -1).pow(2).sum(1)
                obj = (l2sq + c * f).sum()
                (gw,) = torch.autograd.grad(obj, [w])
                with torch.no_grad():
                    d = (xa - x).detach()
                    l2 = l2sq.detach().sqrt()
                    self._offer(p, m, d, logits.detach(), l2 <= c_.r)
                    hit = self._hit(logits.detach(), p)
                    imp = hit & (l2 < best_l2)
                    best_l2.copy_(torch.where(imp, l2, best_l2))
                    best[imp] = d[imp]
                    found |= hit
                w.grad = gw
                opt.step()
            with torch.no_grad():
                last = to_x(w) - x
                c_hi = torch.where(found, torch.minimum(c_hi, c), c_hi)
                c_lo = torch.where(found, c_lo, torch.maximum(c_lo, c))
                c = torch.where(torch.isinf(c_hi), c * 10, (c_lo + c_hi) / 2)
        return last.detach()

    def run(self, p: Problem) -> dict[str, Tensor]:
        (m,) = list(p.x)
        x, c_ = p.x[m], p.cons[m]
        b = p.batch_size
        best_l2 = torch.full((b,), float("inf"), device=x.device)
        best = torch.zeros_like(x)
        last = torch.zeros_like(x)
        for k in range(self.restarts):
            start = torch.zeros_like(x)
            if k > 0 or self.random_start:
                c_.random_(start, p.generator)
            last = self._search(p, m, start, best_l2, best)
        self.min_norm, self.min_norm_delta = best_l2.clone(), best.clone()
        ok = torch.isfinite(best_l2)
        if self.budget == "keep":
            within = ok & (lp_norm(best, "l2") <= c_.r * (1 + 1e-6))
            return {m: torch.where(bview(within, x), best, torch.zeros_like(best))}
        delta = torch.where(bview(ok, x), best, last)
        return {m: c_.project_(delta.detach().clone())}
