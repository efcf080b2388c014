"""Attack potency: per-sample minimal perturbation norms and the dataset-level deactivation budget eps*.

* `min_norm` / `min_eps`: per-sample minimal adversarial norm by FMN (Pintor et al., "Fast minimum-norm
  adversarial attacks through adaptive norm constraints", NeurIPS 2021), batched, L-inf and L2 (SNR via L2):
  the norm constraint eps_k shrinks by ``(1 - gamma_k)`` while adversarial, grows by ``(1 + gamma_k)`` after a
  first success was lost, and before any success jumps to ``||delta|| + |margin| / ||grad||_dual`` (the
  linearised distance to the boundary); step ``alpha_k * eps_k`` along the steepest-ascent direction, both
  cosine-annealed. The result is an upper bound of each sample's true minimal norm (inf when none found).
* `eps_star`: the smallest budget on a grid at which accuracy (mAP for multi-label heads) falls to the
  deactivation level (chance, or a fraction of clean). ``method="min-eps"`` (default) predicts the accuracy
  curve from the min-norm distribution (accuracy at eps = fraction of clean-correct samples whose min-norm
  exceeds eps), takes the first grid point whose prediction reaches the level, and verifies it with the real
  attack (PGD with per-sample early stop): a galloping search from the candidate finds the bracket
  [fails, passes] on the grid and a bisection inside it gives exactly the grid point a full PGD bisection
  would give (assuming accuracy is monotone in eps), usually with 2 attack runs instead of log2(len(grid)).
  ``method="bisection"`` is that plain bisection over the grid (the baseline).

Example:
    >>> r = eps_star(model, batches, "linf", "audio", grid=[0.0005, 0.001, 0.002, 0.004])
    >>> r["eps_star"], r["curve"]
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..metrics.classification import mean_average_precision
from . import losses as L
from .base import Attack, Problem, attack_mode, create, predict, steepest_ascent
from .projection import bview, lp_norm, project_ball_
from .threat import Threat

DUAL = {"linf": 1, "l2": 2}


def min_norm(p: Problem, norm: str, steps: int = 30, start: Mapping[str, Tensor] | None = None,
             alpha_init: float = 1.0, alpha_final: float = 0.05, gamma_init: float = 0.05,
             gamma_final: float = 0.001) -> tuple[dict[str, Tensor], Tensor]:
    """FMN on a single-modality problem: minimal extra perturbation on top of ``start``.

    Args:
        p: the `Problem` (one attacked modality; its constraint's radius is ignored, its bounds kept).
        norm: ``"linf"`` or ``"l2"`` (``"snr"`` maps to l2).
        steps: FMN iterations.
        start: perturbation the search starts from (default zeros); bounds apply to ``x + start + delta``.

    Returns:
        (deltas, norms): the smallest adversarial extra perturbation found per sample (zeros where none)
        and its norm (B,) (``inf`` where none was found; ``0`` for samples adversarial at the start).
    """
    norm = "l2" if norm == "snr" else norm
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


class _MinNorm(Attack):
    name = "fmn"
    norms = ("linf", "l2", "snr")
    supports_band = False

    def __init__(self, model: nn.Module, threat: Threat, steps: int = 30, **kw: Any) -> None:
        super().__init__(model, threat, loss="margin" if not model.spec.multilabel else "bce")
        if model.spec.multilabel:
            raise ValueError("min_eps: FMN needs a single-label head")
        if threat.modality == "both":
            raise ValueError("min_eps: one modality at a time")
        self.steps, self.kw = steps, kw


def min_eps(model: nn.Module, batch: Mapping[str, Tensor], norm: str, modality: str = "audio", *,
            domain: str = "input", steps: int = 30, target: Tensor | None = None,
            **fmn_kwargs: Any) -> Tensor:
    """Per-sample minimal eps (B,) for ``model`` on ``batch`` (FMN upper bound; inf where none found).

    For ``norm="snr"`` the value is in dB: the highest SNR at which an adversarial example was found
    (``20 log10(||x|| / ||delta||)``; ``+inf`` for samples misclassified clean, ``-inf`` where none found).
    """
    threat = Threat("l2" if norm == "snr" else norm, 1.0, modality, domain)
    atk = _MinNorm(model, threat, steps)
    atk._check_batch(batch, target)
    with attack_mode(model):
        p = atk.problem(batch, target)
        _, n = min_norm(p, norm, steps=steps, **fmn_kwargs)
    if norm == "snr":
        xn = lp_norm(p.x[modality], "l2")
        with np.errstate(divide="ignore"):
            return 20 * torch.log10(xn / n)
    return n


def _collect(batches: Iterable[Mapping[str, Tensor]] | Mapping[str, Tensor]) -> list[Mapping[str, Tensor]]:
    if isinstance(batches, Mapping):
        return [batches]
    out = list(batches)
    if not out:
        raise ValueError("eps_star: no batches")
    return out


def _metric(model: nn.Module, batches: Sequence[Mapping[str, Tensor]], advs: Sequence[Mapping[str, Tensor]]
            ) -> float:
    with torch.no_grad():
        logits = torch.cat([predict(model, a) for a in advs])
    labels = torch.cat([b["label"] for b in batches])
    if labels.dim() == 2:
        return mean_average_precision(logits, labels)
    return float((logits.argmax(1) == labels).float().mean())


def deactivation_level(model: nn.Module, batches: Sequence[Mapping[str, Tensor]], level: str | float,
                       clean: float) -> float:
    """Chance (1/K, or mean label prevalence = chance mAP for multi-label) or ``level`` x clean metric."""
    if level == "chance":
        if model.spec.multilabel:
            y = torch.cat([b["label"] for b in batches]).float()
            prev = y.mean(0)
            return float(prev[prev > 0].mean())
        return 1.0 / model.spec.num_classes
    if isinstance(level, str) or not 0 <= float(level) <= 1:
        raise ValueError(f"eps_star: level must be 'chance' or a fraction in [0, 1], got {level!r}")
    return float(level) * clean


def eps_star(model: nn.Module, batches: Iterable[Mapping[str, Tensor]] | Mapping[str, Tensor], norm: str,
             modality: str, grid: Sequence[float], attack: str = "pgd", level: str | float = "chance", *,
             method: str = "min-eps", min_norm_steps: int = 20, domain: str = "input",
             early_stop: bool = True, **attack_kwargs: Any) -> dict[str, Any]:
    """Smallest grid budget at which the attacked metric falls to the deactivation level.

    Args:
        model: a ZooModel.
        batches: a batch dict or an iterable of them (the attacked points).
        norm, modality, domain: the threat (``eps`` comes from ``grid``; for ``snr`` a *higher* dB is a
            weaker attack, so "smallest" means weakest: the highest SNR).
        grid: candidate budgets.
        attack: registered attack used to measure accuracy at a budget (default ``"pgd"``).
        level: ``"chance"`` or a fraction of the clean metric.
        method: ``"min-eps"`` (FMN-predicted candidate + verified galloping/bisection) or ``"bisection"``.
        min_norm_steps: FMN steps for ``"min-eps"``.
        early_stop: per-sample early stop in the verifying attack (on by default: same successes, cheaper).
        **attack_kwargs: passed to the attack (``steps``, ``restarts``, ...).

    Returns:
        dict with ``eps_star`` (None if no grid point reaches the level), ``curve`` (list of ``{"eps",
        "accuracy", "source"}``: ``"attack"`` for measured points, ``"min-eps"`` for FMN predictions),
        ``deactivation_level``, ``clean``, ``method``, ``attack_runs`` (budgets the attack was run at).
    """
    if method not in ("min-eps", "bisection"):
        raise ValueError(f"eps_star: method must be 'min-eps' or 'bisection', got {method!r}")
    if not grid:
        raise ValueError("eps_star: empty grid")
    batches = _collect(batches)
    # order grid by strength (snr: higher dB = weaker)
    strength = sorted(set(float(e) for e in grid), reverse=(norm == "snr"))
    with torch.no_grad():
        clean = _metric(model, batches, batches)
    lvl = deactivation_level(model, batches, level, clean)
    if attack_kwargs.get("early_stop") is not None:
        early_stop = attack_kwargs.pop("early_stop")
    measured: dict[int, float] = {}

    def run(k: int) -> float:
        if k not in measured:
            atk = create(attack, model, Threat(norm, strength[k], modality, domain),
                         **({"early_stop": early_stop} if attack in ("pgd", "apgd-ce", "apgd-dlr") else {}),
                         **attack_kwargs)
            measured[k] = _metric(model, batches, [atk(b) for b in batches])
        return measured[k]

    def passes(k: int) -> bool:
        return run(k) <= lvl

    n = len(strength)
    predicted: list[float] | None = None
    if method == "min-eps" and not model.spec.multilabel and norm in ("linf", "l2", "snr"):
        need, ok = [], []
        for b in batches:  # FMN only on the clean-correct points (the others count as broken anyway)
            with torch.no_grad():
                hit = predict(model, b).argmax(1) == b["label"]
            nb = torch.zeros(hit.shape[0])
            if bool(hit.any()):
                sub = {k: v[hit] for k, v in b.items()}
                nb[hit] = min_eps(model, sub, norm, modality, domain=domain, steps=min_norm_steps).cpu()
            need.append(nb)
            ok.append(hit.cpu())
        need_t, ok_t = torch.cat(need), torch.cat(ok)
        predicted = []
        for e in strength:
            robust = need_t < e if norm == "snr" else need_t > e
            predicted.append(float((ok_t & robust).float().mean()))
        cand = next((k for k, a in enumerate(predicted) if a <= lvl), n - 1)
        # gallop from the candidate to a bracket (lo fails, hi passes), then bisect
        if passes(cand):
            hi, step, lo = cand, 1, -1
            while hi - step >= 0:
                k = hi - step
                if passes(k):
                    hi, step = k, step * 2
                else:
                    lo = k
                    break
        else:
            lo, step, hi = cand, 1, None
            while lo < n - 1:
                k = min(lo + step, n - 1)
                if passes(k):
                    hi = k
                    break
                lo, step = k, step * 2
    else:
        lo, hi = -1, (n - 1 if passes(n - 1) else None)
    if hi is not None:
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if passes(mid):
                hi = mid
            else:
                lo = mid
    curve = []
    for k, e in enumerate(strength):
        if k in measured:
            curve.append({"eps": e, "accuracy": measured[k], "source": "attack"})
        elif predicted is not None:
            curve.append({"eps": e, "accuracy": predicted[k], "source": "min-eps"})
    curve.sort(key=lambda r: r["eps"])
    return {"eps_star": None if hi is None else strength[hi], "curve": curve, "deactivation_level": lvl,
            "clean": clean, "method": "min-eps" if predicted is not None else "bisection",
            "attack_runs": [strength[k] for k in measured], "attack": attack}


def accuracy_from_min_eps(need: Tensor, correct: Tensor, eps: float, norm: str = "linf") -> float:
    """Accuracy at ``eps`` predicted from per-sample minimal eps ``need`` and clean correctness."""
    robust = need < eps if norm == "snr" else need > eps
    return float((correct.bool() & robust).float().mean())


__all__ = ["accuracy_from_min_eps", "deactivation_level", "eps_star", "min_eps", "min_norm", "bview"]
