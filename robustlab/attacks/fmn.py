"""FMN: fast minimum-norm adversarial attack (Pintor et al., "Fast minimum-norm adversarial attacks through
adaptive norm constraints", NeurIPS 2021), batched, L-inf and L2 (SNR via L2).

The norm constraint eps_k shrinks by ``(1 - gamma_k)`` while adversarial, grows by ``(1 + gamma_k)`` after a
first success was lost, and before any success jumps to ``||delta|| + |margin| / ||grad||_dual`` (the
linearised distance to the boundary); step ``alpha_k * eps_k`` along the steepest-ascent direction, both
cosine-annealed. The norm found is an upper bound of each sample's true minimal norm (inf when none found).

* `min_norm`: the search on a `Problem` (used by `min_eps`, `potency` and `Universal(method="accumulate")`).
* `min_eps`: per-sample minimal eps of a model on a batch, in the threat's eps units (dB for SNR).
* `FMN`: the registered attack ``"fmn"`` (``minimum_norm = True``): the smallest adversarial perturbation
  found, projected onto the threat's budget ball when it is larger (then, like every attack, the worst case
  seen is kept per sample).

Example:
    >>> need = min_eps(model, batch, "linf", "audio", steps=30)        # (B,)
    >>> adv = FMN(model, Threat("l2", 0.5, "audio"), steps=100)(batch)
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor, nn

from . import losses as L
from .base import ATTACKS, Attack, Problem, attack_mode, steepest_ascent
from .projection import BALL_NORM, lp_norm, project_ball_
from .threat import Threat

#: the dual exponent of each ball norm FMN supports
DUAL = {"linf": 1, "l2": 2}


def min_norm(p: Problem, norm: str, steps: int = 30, start: Mapping[str, Tensor] | None = None,
             alpha_init: float = 1.0, alpha_final: float = 0.05, gamma_init: float = 0.05,
             gamma_final: float = 0.001) -> tuple[dict[str, Tensor], Tensor]:
    """FMN on a single-modality problem: minimal extra perturbation on top of ``start``.

    Args:
        p: the `Problem` (one attacked modality; its constraint's radius is ignored, its bounds kept).
        norm: ``"linf"`` or ``"l2"`` (``"snr"`` maps to its ball norm, l2).
        steps: FMN iterations.
        start: perturbation the search starts from (default zeros); bounds apply to ``x + start + delta``.
        alpha_init, alpha_final: step length (fraction of eps_k), cosine-annealed.
        gamma_init, gamma_final: norm-constraint step, cosine-annealed.

    Returns:
        (deltas, norms): the smallest adversarial extra perturbation found per sample (zeros where none)
        and its norm (B,) (``inf`` where none was found; ``0`` for samples adversarial at the start).

    Raises:
        ValueError: on another norm or more than one attacked modality.
    """
    norm = BALL_NORM.get(norm, norm)
    if norm not in DUAL:
        raise ValueError(f"min_norm: norm must be linf, l2 or snr, got {norm!r}")
    if len(p.x) != 1:
        raise ValueError("min_norm: one attacked modality only")
    (m,) = list(p.x)
    x = p.x[m] if start is None else p.x[m] + start[m]
    cons = p.cons[m]
    b = x.shape[0]
    dev = x.device
    delta = torch.zeros_like(x, requires_grad=True)
    best = torch.zeros_like(x)
    best_n = torch.full((b,), float("inf"), device=dev)
    found = torch.zeros(b, dtype=torch.bool, device=dev)
    for i in range(steps):
        cos = (1 + math.cos(math.pi * i / steps)) / 2
        alpha = alpha_final + (alpha_init - alpha_final) * cos
        gamma = gamma_final + (gamma_init - gamma_final) * cos
        logits = p._logits({m: x + delta})
        s = L.margin(logits, p.y, p.target)  # > 0: adversarial
        (g,) = torch.autograd.grad(s.sum(), [delta])
        with torch.no_grad():
            dn = lp_norm(delta, norm)
            adv = p.success(logits)
            better = adv & (dn < best_n)
            best_n = torch.where(better, dn, best_n)
            best[better] = delta[better]
            found |= adv
            gd = g.reshape(b, -1).norm(p=DUAL[norm], dim=1).clamp(min=1e-12)
            dist = (-s).clamp(min=0) / gd
            eps = torch.where(adv, torch.minimum(dn * (1 - gamma), best_n),
                              torch.where(found, dn * (1 + gamma), dn + dist))
            delta.add_(steepest_ascent(g, norm, alpha * eps.clamp(min=1e-12)))
            project_ball_(delta, norm, eps)
            if cons.bounds is not None:
                lo, hi = cons.bounds
                delta.copy_((x + delta).clamp_(lo, hi).sub_(x))
    # the last iterate is checked too
    with torch.no_grad():
        logits = p._logits({m: x + delta})
        dn = lp_norm(delta, norm)
        better = p.success(logits) & (dn < best_n)
        best_n = torch.where(better, dn, best_n)
        best[better] = delta.detach()[better]
    return {m: best}, best_n


@ATTACKS.register("fmn")
class FMN(Attack):
    """Fast minimum-norm attack under a budget: the smallest adversarial perturbation FMN finds, projected
    onto the threat's ball (and the bounds) when it is larger.

    Args:
        model: a ZooModel with a single-label head.
        threat: a `Threat` with norm linf, l2 or snr (L2 with per-sample radius), one modality, no band.
        steps: FMN iterations.
        alpha_init, alpha_final, gamma_init, gamma_final: see `min_norm`.
        seed, success_draws, stochastic: see `Attack` (FMN starts from the clean input; no EOT).

    Shapes: any ``(B, ...)``.
    """

    name = "fmn"
    norms = ("linf", "l2", "snr")
    supports_band = False
    supports_multilabel = False
    supports_eot = False
    minimum_norm = True
    supports_joint = False
    takes = frozenset({"steps"})
    losses = ("margin",)

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 100, alpha_init: float = 1.0,
                 alpha_final: float = 0.05, gamma_init: float = 0.05, gamma_final: float = 0.001,
                 **kwargs: Any) -> None:
        kwargs.setdefault("random_start", False)
        super().__init__(model, threat, loss="margin", **kwargs)
        if threat.modality == "both":
            raise ValueError("fmn: one modality at a time; got modality='both'")
        if not isinstance(steps, int) or steps < 1:
            raise ValueError(f"fmn: steps must be an int >= 1, got {steps!r}")
        if not (0 < alpha_final <= alpha_init and 0 < gamma_final <= gamma_init < 1):
            raise ValueError("fmn: need 0 < alpha_final <= alpha_init and 0 < gamma_final <= gamma_init < 1, "
                             f"got {alpha_init}, {alpha_final}, {gamma_init}, {gamma_final}")
        self.steps = steps
        self.schedule = {"alpha_init": alpha_init, "alpha_final": alpha_final, "gamma_init": gamma_init,
                         "gamma_final": gamma_final}

    def protocol(self) -> dict[str, Any]:
        return {**super().protocol(), "steps": self.steps, **self.schedule}

    def run(self, p: Problem) -> dict[str, Tensor]:
        d, _ = min_norm(p, self.threat.norm, steps=self.steps, **self.schedule)
        for m, c in p.cons.items():
            c.project_(d[m])
        return d


def min_eps(model: nn.Module, batch: Mapping[str, Tensor], norm: str, modality: str = "audio", *,
            domain: str = "input", steps: int = 30, target: Tensor | None = None,
            **fmn_kwargs: Any) -> Tensor:
    """Per-sample minimal eps (B,) for ``model`` on ``batch`` (FMN upper bound; inf where none found).

    For ``norm="snr"`` the value is in dB (`Threat.eps_from_norm`): the highest SNR at which an adversarial
    example was found (``20 log10(||x|| / ||delta||)``; ``+inf`` for samples misclassified clean, ``-inf``
    where none found).
    """
    threat = Threat(norm, 1.0, modality, domain)
    atk = FMN(model, Threat(threat.ball_norm, 1.0, modality, domain), steps=steps)
    atk._check_batch(batch, target)
    with attack_mode(model):
        p = atk.problem(batch, target)
        _, n = min_norm(p, norm, steps=steps, **fmn_kwargs)
    return threat.eps_from_norm(n, lp_norm(p.x[modality], "l2"))


__all__ = ["DUAL", "FMN", "min_eps", "min_norm"]
