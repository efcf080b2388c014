"""FAB: the Fast Adaptive Boundary attack (Croce & Hein, "Minimally distorted adversarial examples with a fast
adaptive boundary attack", ICML 2020), untargeted and targeted (FAB-T), L-inf and L2 (SNR as L2).

FAB looks for the adversarial example of *minimal* norm. At the current point ``x1`` it linearises the
decision boundary between the true class ``y`` and a class ``l`` (untargeted: the ``l != y`` whose linearised
boundary is closest in the threat norm; targeted: the target): ``f(z) ~ f(x1) + w . (z - x1)`` with
``f = z_l - z_y`` and ``w = grad f``. It projects both ``x1`` and the clean ``x0`` onto that hyperplane inside
the data box (`hyperplane_step`: the exact minimal-norm solution), and moves to a convex combination of the
two projections, extrapolated by ``eta``:
``x1 <- (1 - a) (x1 + eta d1) + a (x0 + eta d2)``, ``a = min(|d1| / (|d1| + |d2|), alpha_max)``.
Whenever ``x1`` is adversarial it is recorded if its norm is the smallest yet, and ``x1`` is pulled back
towards ``x0`` (``x0 + beta (x1 - x0)``). Restarts after the first start from a random point at half the
radius. FAB-T (``targets=n``) runs once per target among the ``n`` highest-scoring classes other than the
label at the clean input; like the reference, it steers towards the target but counts any misclassification
as success (with an explicit ``target`` tensor, success means classified as that target).

As a robustlab attack the result honours the threat: a sample whose minimal adversarial example lies within
the budget gets it; any other sample gets the smallest-norm point found, projected onto the feasible set by
the shared `Constraint` (budget and bounds) and re-checked (the base class keeps, per sample, the worst case
seen) -- so ``atk(batch)`` is always inside the bounds and the budget. `last_min_norm` holds the minimal
adversarial norm found per sample of the last call (``inf`` where none was found), the quantity FAB is
designed to estimate.

Threat model: ``linf``, ``l2``, ``snr`` (L2 with the per-sample radius); one modality; input domain (data box)
or feature domain (unbounded); no band limits (the minimal-norm steps are not band-limited); single-label
heads only.

Example:
    >>> adv = FAB(model, Threat("linf", 0.002, "audio"), steps=100, targets=9)(batch)      # FAB-T
    >>> atk = FAB(model, Threat("l2", 0.5, "audio"))                                        # untargeted FAB
    >>> adv = atk(batch); atk.last_min_norm        # (B,) minimal adversarial L2 norms found (inf: none)
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from .base import ATTACKS, Attack, Problem
from .projection import bview, lp_norm
from .threat import Threat


def hyperplane_step(w: Tensor, c: Tensor, lo: Tensor | float, hi: Tensor | float, norm: str) -> Tensor:
    """The minimal-norm ``d`` with ``w . d = c`` and ``lo <= d <= hi`` (per sample; exact).

    The box must contain 0 (``lo <= 0 <= hi``; entries may be infinite). The optimum moves each coordinate in
    the direction of ``sign(c) w_i``: for L2 by ``min(lam |w_i|, cap_i)``, for L-inf by ``min(rho, cap_i)``,
    where ``cap_i`` is the room the box leaves in that direction; the multiplier (``lam`` or ``rho``) solves
    the piecewise-linear, nondecreasing equation ``sum_i |w_i| min(t k_i, cap_i) = |c|``, found exactly by
    sorting the breakpoints ``cap_i / k_i``. When the hyperplane cannot be reached inside the box the answer
    is the box point closest to it (every coordinate at its cap).

    Args:
        w: hyperplane normals (B, n).
        c: right-hand sides (B,).
        lo: lower bounds of ``d`` (B, n) or a float (<= 0).
        hi: upper bounds of ``d`` (B, n) or a float (>= 0).
        norm: ``"linf"`` or ``"l2"``.

    Returns:
        ``d`` (B, n), in the dtype of ``w``.
    """
    if norm not in ("linf", "l2"):
        raise ValueError(f"hyperplane_step: norm must be 'linf' or 'l2', got {norm!r}")
    f64 = torch.float64
    lo_t = torch.as_tensor(lo, dtype=w.dtype, device=w.device).expand_as(w)
    hi_t = torch.as_tensor(hi, dtype=w.dtype, device=w.device).expand_as(w)
    s = torch.sign(c)
    ws = w * s[:, None]                                     # move along +ws, need ws . d = |c|
    target = c.abs().to(f64)[:, None]
    a = ws.abs()
    active = a > 0
    cap = torch.where(ws > 0, hi_t, -lo_t).clamp(min=0.0)   # room in the helpful direction
    cap = torch.where(active, cap, torch.zeros_like(cap))
    k = a if norm == "l2" else torch.ones_like(a)
    k = torch.where(active, k, torch.ones_like(k))
    tau = torch.where(active, cap / k, torch.full_like(cap, math.inf))   # breakpoints: coordinate saturates
    tau_s, order = tau.sort(dim=1)
    a_s, k_s, cap_s = a.gather(1, order), k.gather(1, order), cap.gather(1, order)
    finite = torch.isfinite(tau_s)
    # sums in float64 (thousands of terms); the elementwise work stays in the input dtype
    sat = torch.where(finite, a_s * cap_s, torch.zeros_like(cap_s)).cumsum(dim=1, dtype=f64)   # sum_{i<=j}
    ak = (a_s * k_s).cumsum(dim=1, dtype=f64)
    slope_all = ak[:, -1:]
    slope_after = slope_all - ak                                                             # sum_{i>j} a k
    phi = sat + torch.where(finite, tau_s, torch.zeros_like(tau_s)).to(f64) * slope_after    # phi(tau_j)
    phi = torch.where(finite, phi, torch.full_like(phi, math.inf))
    j = torch.searchsorted(phi, target.contiguous()).clamp(max=phi.shape[1] - 1)           # first phi >= c
    jm = (j - 1).clamp(min=0)
    sat_before = torch.where(j > 0, sat.gather(1, jm), torch.zeros_like(target))
    slope_from = torch.where(j > 0, slope_after.gather(1, jm), slope_all)
    t = ((target - sat_before) / slope_from.clamp(min=1e-300)).clamp(min=0.0)
    t = torch.where(phi[:, -1:] >= target, t, torch.full_like(t, math.inf))   # unreachable: all at the cap
    mag = torch.minimum(t.to(w.dtype) * k, cap)
    d = torch.where(active, torch.sign(ws) * mag, torch.zeros_like(mag))   # ws . d = |c|, i.e. w . d = c
    return torch.where((target > 0), d, torch.zeros_like(d))


def _dual_norm(g: Tensor, norm: str) -> Tensor:
    """Dual norm over the last axis: L1 for an L-inf threat, L2 for L2."""
    return g.abs().sum(dim=-1) if norm == "linf" else g.norm(dim=-1)


@ATTACKS.register("fab")
class FAB(Attack):
    """Minimal-norm boundary attack (FAB / FAB-T) within the threat's budget.

    Args:
        model: a ZooModel with a single-label head.
        threat: a `Threat` with norm linf, l2 or snr, one modality, no band.
        steps: iterations per run (100 in the reference).
        targets: 0 = untargeted FAB (all classes linearised each step: one gradient per class); ``n > 0`` =
            FAB-T over the ``n`` highest-scoring non-true classes at the clean input (one gradient per step).
        alpha_max: cap of the weight of the projection from the clean input (0.1).
        eta: overshoot of the projection steps (1.05).
        beta: backward step towards the clean input after a success (0.9).
        restarts: runs per target; restarts after the first start from a random point at half the radius.
        early_stop: skip later targets/restarts for samples already adversarial within the budget (the
            AutoAttack usage); off = keep searching for smaller norms.
        seed: see `Attack`.

    Shapes: any ``(B, ...)`` of the attacked modality (flattened internally).
    """

    name = "fab"
    norms = ("linf", "l2", "snr")
    supports_multilabel = False
    supports_band = False
    #: one modality at a time (``modality="both"`` is refused at construction)
    supports_joint = False
    losses = ("ce",)
    takes = frozenset({"steps", "restarts", "early_stop"})
    minimum_norm = True

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 100, targets: int = 0,
                 alpha_max: float = 0.1, eta: float = 1.05, beta: float = 0.9, **kwargs: Any) -> None:
        kwargs.setdefault("random_start", False)
        if threat.modality == "both":
            raise ValueError("fab: attacks one modality; got modality='both' (FAB linearises one input)")
        super().__init__(model, threat, **kwargs)
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"fab: steps must be an int >= 1, got {steps!r}")
        if not isinstance(targets, int) or targets < 0:
            raise ValueError(f"fab: targets must be an int >= 0, got {targets!r}")
        k = model.spec.num_classes
        if k < 2:
            raise ValueError(f"fab: needs >= 2 classes, model has {k}")
        if not 0 <= alpha_max <= 1 or not eta >= 1 or not 0 < beta < 1:
            raise ValueError(f"fab: need 0 <= alpha_max <= 1, eta >= 1, 0 < beta < 1; got {alpha_max}, "
                             f"{eta}, {beta}")
        self.steps, self.alpha_max, self.eta, self.beta = steps, float(alpha_max), float(eta), float(beta)
        self.targets = min(targets, k - 1)
        self.last_min_norm: Tensor | None = None

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "steps": self.steps, "targets": self.targets,
                "alpha_max": self.alpha_max, "eta": self.eta, "beta": self.beta}

    # --- the linearisation --------------------------------------------------------------------------------
    def _linearise(self, p: Problem, d: Tensor, m: str, steer: Tensor | None) -> tuple[Tensor, Tensor]:
        """Value ``f`` (B,) and gradient ``w`` (B, n) of the closest linearised boundary at ``x0 + d``."""
        b = d.shape[0]
        rows = torch.arange(b, device=d.device)
        if steer is not None:
            def diff(logits: Tensor, y: Tensor, target: Tensor | None) -> Tensor:
                return logits[rows, steer] - logits[rows, y]
            leaf = d.detach().clone().requires_grad_(True)
            f, _, g = p.loss_grad({m: leaf}, diff)
            return f.detach(), g[m].reshape(b, -1)
        k = self.model.spec.num_classes
        fs, gs = [], []
        for cls in range(k):
            def diff_c(logits: Tensor, y: Tensor, target: Tensor | None, cls: int = cls) -> Tensor:
                return logits[:, cls] - logits[rows, y]
            leaf = d.detach().clone().requires_grad_(True)
            f, _, g = p.loss_grad({m: leaf}, diff_c)
            fs.append(f.detach())
            gs.append(g[m].reshape(b, -1))
        f_all, g_all = torch.stack(fs, 1), torch.stack(gs, 1)             # (B, K), (B, K, n)
        dist = f_all.abs() / (_dual_norm(g_all, "linf" if self.threat.norm == "linf" else "l2") + 1e-12)
        dist[rows, p.y] = math.inf
        idx = dist.argmin(dim=1)
        return f_all[rows, idx], g_all[rows, idx]

    # --- one run ------------------------------------------------------------------------------------------
    def _once(self, p: Problem, steer: Tensor | None, random_start: bool) -> tuple[Tensor, Tensor]:
        """Smallest-norm adversarial perturbation (B, ...) found and its norm (B,) (inf: none found)."""
        (m,) = list(p.x)
        cons = p.cons[m]
        x0 = p.x[m]
        b = x0.shape[0]
        norm = "linf" if cons.norm == "linf" else "l2"
        shape = x0.shape
        x0f = x0.reshape(b, -1)
        if cons.bounds is None:
            lo_b, hi_b = -math.inf, math.inf
        else:
            lo_b, hi_b = cons.bounds
        d = torch.zeros_like(x0)
        if random_start:
            t = torch.empty_like(x0)
            if norm == "linf":
                t.uniform_(-1.0, 1.0, generator=p.generator)
            else:
                t.normal_(generator=p.generator)
            t = t / bview(lp_norm(t, norm).clamp(min=1e-30), t)
            d = t * bview(0.5 * cons.r, t)
            cons.clip_(d)
        best = torch.zeros_like(x0)
        best_norm = torch.full((b,), math.inf, device=x0.device, dtype=x0.dtype)
        for _ in range(self.steps):
            f, w = self._linearise(p, d, m, steer)
            with torch.no_grad():
                df = d.reshape(b, -1)
                x1 = x0f + df
                # hyperplane {z : f + w . (z - x1) = 0}; from x1: w . d1 = -f; from x0: w . d2 = -f + w . df
                d1 = hyperplane_step(w, -f, lo_b - x1, hi_b - x1, norm)
                d2 = hyperplane_step(w, -f + (w * df).sum(1), lo_b - x0f, hi_b - x0f, norm)
                a1 = lp_norm(d1, norm).clamp(min=1e-8)
                a2 = lp_norm(d2, norm).clamp(min=1e-8)
                alpha = (a1 / (a1 + a2)).clamp(0.0, self.alpha_max)[:, None]
                z = (x1 + self.eta * d1) * (1 - alpha) + (x0f + self.eta * d2) * alpha
                if cons.bounds is not None:
                    z = z.clamp(lo_b, hi_b)
                d = (z - x0f).reshape(shape)
                hit = p.adversarial({m: d}, p.logits({m: d}))   # fresh-draw majority on a stochastic model
                if bool(hit.any()):
                    n = lp_norm(d, norm)
                    better = hit & (n < best_norm)
                    best[better] = d[better]
                    best_norm = torch.where(better, n, best_norm)
                    d = torch.where(bview(hit, d), d * self.beta, d)
        return best, best_norm

    # --- the call -----------------------------------------------------------------------------------------
    def _steer_list(self, p: Problem) -> list[Tensor | None]:
        if p.target is not None:
            return [p.target]
        if self.targets == 0:
            return [None]
        with torch.no_grad():
            logits = p.logits(self.zeros(p))
        ranked = logits.argsort(dim=1, descending=True)
        # the targets: the highest-scoring classes other than the label, best first
        others = ranked[ranked != p.y[:, None]].view(p.batch_size, -1)
        return [others[:, j] for j in range(self.targets)]

    def run(self, p: Problem) -> dict[str, Tensor]:
        (m,) = list(p.x)
        cons = p.cons[m]
        b = p.batch_size
        best = torch.zeros_like(p.x[m])
        best_norm = torch.full((b,), math.inf, device=best.device, dtype=best.dtype)
        done = torch.zeros(b, dtype=torch.bool, device=best.device)   # adversarial within the budget
        for steer in self._steer_list(p):
            for r in range(self.restarts):
                idx = (~done).nonzero().flatten() if self.early_stop else torch.arange(b, device=best.device)
                if idx.numel() == 0:
                    break
                sub = p if idx.numel() == b else p.subset(idx)
                d, n = self._once(sub, None if steer is None else steer[idx], random_start=r > 0)
                better = n < best_norm[idx]
                bi = idx[better]
                best[bi] = d[better]
                best_norm[bi] = n[better]
                done = best_norm <= cons.r * (1 + 1e-6)
        self.last_min_norm = best_norm.detach().clone()
        # honour the budget: the projection is a no-op (up to rounding) for samples whose minimal example is
        # inside it; the others get their smallest adversarial point projected onto the feasible set
        # (adversarial or not: the caller re-checks), or the clean input when nothing was found
        return {m: cons.project_(best.clone())}
