"""Per-example minimal budgets by bisection on a geometric budget grid (the measurement behind Theorem 1).

For each example the model classifies correctly, `minimal_budgets` finds the weakest budget of a grid at
which a registered attack fools it: it attacks every correct example at the strongest budget, then bisects
each example's bracket (the largest budget the attack failed at, the smallest it succeeded at) with one
attack call per round, every example at its own budget (per-sample radii through `Attack.problem`'s
``eps=``). Rounds: ``1 + ceil(log2(G))`` for a grid of G budgets. The answer assumes, like every bisection
over budgets (``robustlab.attacks.potency.eps_star``), that an example fooled at a budget would be fooled at
every larger one; each reported budget is backed by a real adversarial example (the attack's verdict,
`Attack.last_success`, which is judged on fresh draws on a stochastic model).

The grid is ``scales`` times a reference budget per attacked modality (`Threat.scale_eps`: a radius times the
scale; dB shifted for SNR). One scale grid serves single-modality threats (``ref`` a number) and joint ones
(``modality="both"``, ``ref`` a dict: every modality's radius scaled together, paired budgets), so the
minimal budgets of a fused model under a joint attack and of the two unimodal models under attacks on their
own modality are on one axis.

Example:
    >>> res = minimal_budgets(model, batch, "linf", "audio", 0.002, geometric_scales(1 / 64, 16, 25),
    ...                       attack="pgd", steps=10)
    >>> res.index        # per example: grid index of its minimal budget (-1 misclassified, G never fooled)
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

#: index of an example the model misclassifies clean (its minimal budget is 0)
MISCLASSIFIED = -1


def geometric_scales(lo: float, hi: float, points: int) -> tuple[float, ...]:
    """``points`` scales from ``lo`` to ``hi``, evenly spaced in log (a constant ratio between neighbours).

    Raises:
        ValueError: unless ``0 < lo < hi`` and ``points >= 2``.
    """
    if not (0 < lo < hi) or not math.isfinite(hi):
        raise ValueError(f"scales must satisfy 0 < lo < hi < inf, got ({lo!r}, {hi!r})")
    if points < 2:
        raise ValueError(f"a scale grid needs >= 2 points, got {points!r}")
    return tuple(float(v) for v in np.geomspace(lo, hi, int(points)))


def grid_ratio(scales: Sequence[float]) -> float:
    """The constant ratio between neighbouring scales of a geometric grid.

    Raises:
        ValueError: when the grid is not geometric (relative tolerance 1e-6) or has fewer than 2 points.
    """
    s = np.asarray(scales, dtype=np.float64)
    if len(s) < 2 or (s <= 0).any():
        raise ValueError(f"a geometric grid needs >= 2 positive scales, got {list(scales)}")
    r = s[1:] / s[:-1]
    if not np.allclose(r, r[0], rtol=1e-6, atol=0):
        raise ValueError(f"scales {list(scales)} are not geometric (neighbour ratios {r.tolist()})")
    return float(r[0])


def budgets_at(norm: str, modality: str, ref: float | Mapping[str, float], scale: float) -> Any:
    """The budget (a number, or a per-modality dict for ``modality="both"``) at ``scale`` x ``ref``."""
    from ....attacks import Threat

    if modality == "both":
        if not isinstance(ref, Mapping):
            raise ValueError(f"a joint threat needs a per-modality ref budget dict, got {ref!r}")
        return {m: Threat(norm, float(v), m).scale_eps(float(v), scale) for m, v in ref.items()}
    if isinstance(ref, Mapping):
        raise ValueError(f"modality {modality!r} needs one ref budget, got {dict(ref)!r}")
    return Threat(norm, float(ref), modality).scale_eps(float(ref), scale)


@dataclass(frozen=True)
class MinimalBudgets:
    """Result of `minimal_budgets`.

    Attributes:
        index: (N,) per example, the grid index of the weakest budget the attack fooled it at;
            `MISCLASSIFIED` (-1) for examples misclassified clean, ``len(scales)`` when not fooled at the
            strongest budget.
        correct: (N,) clean correctness (judged like the attack judges success).
        pred_clean / pred_adv: (N,) predicted class on the clean input and at the adversarial example behind
            ``index`` (for examples never fooled: at the attack's answer at the strongest budget).
        scales: the grid (weakest first); rounds: attack calls made; samples_attacked: per-example runs.
        protocol: the attack's `Attack.protocol()`.
    """

    index: tuple[int, ...]
    correct: tuple[bool, ...]
    pred_clean: tuple[int, ...]
    pred_adv: tuple[int, ...]
    scales: tuple[float, ...]
    rounds: int
    samples_attacked: int
    protocol: Mapping[str, Any]


def _per_sample_eps(
    norm: str,
    modality: str,
    ref: float | Mapping[str, float],
    scales: Sequence[float],
    k: Tensor,
    mods: Sequence[str],
    device: Any,
) -> dict[str, Tensor]:
    vals = [budgets_at(norm, modality, ref, scales[int(i)]) for i in k]
    if modality == "both":
        return {m: torch.tensor([v[m] for v in vals], dtype=torch.float32, device=device) for m in mods}
    return {modality: torch.tensor(vals, dtype=torch.float32, device=device)}


def minimal_budgets(
    model: nn.Module,
    batch: Mapping[str, Tensor],
    norm: str,
    modality: str,
    ref: float | Mapping[str, float],
    scales: Sequence[float],
    *,
    attack: str = "pgd",
    batch_size: int = 64,
    seed: int = 0,
    **attack_kwargs: Any,
) -> MinimalBudgets:
    """Per-example minimal budget of ``attack`` on ``modality`` (see the module docstring).

    Args:
        model: a ZooModel with a single-label head.
        batch: the examples (a batch dict).
        norm, modality: the threat (``modality="both"``: a joint threat, ``ref`` per modality).
        ref: reference budget (a number; a dict ``{"audio": .., "visual": ..}`` for a joint threat).
        scales: the budget grid as multiples of ``ref`` (any positive values; sorted weakest first).
        attack: registered attack name (it must support ``norm``, and joint threats for ``"both"``).
        batch_size: examples per attack call.
        seed: the attack's seed.
        **attack_kwargs: passed to the attack (``steps``, ``restarts``, ...).

    Raises:
        ValueError: a multi-label model, an empty grid, or an attack that does not support the threat.
    """
    from ....attacks import ATTACKS, Threat, attack_mode, create, predict

    if model.spec.multilabel:
        raise ValueError("minimal_budgets: per-example budgets need a single-label head")
    grid = sorted(float(s) for s in scales)
    if not grid or grid[0] <= 0:
        raise ValueError(f"minimal_budgets: scales must be positive, got {list(scales)}")
    threat = Threat(norm, budgets_at(norm, modality, ref, grid[-1]), modality)
    cls = ATTACKS.get(attack)
    if norm not in cls.norms or (modality == "both" and not cls.supports_joint):
        raise ValueError(f"minimal_budgets: attack {attack!r} does not support threat {threat.label!r}")
    atk = create(attack, model, threat, seed=seed, **attack_kwargs)
    atk._check_batch(batch, None)
    y = batch["label"]
    n, g = int(y.shape[0]), len(grid)
    with torch.no_grad():
        logits = predict(model, batch)
    pred_clean = logits.argmax(1).cpu()
    lo = torch.full((n,), -1, dtype=torch.long)
    hi = torch.full((n,), g, dtype=torch.long)
    pred_adv = pred_clean.clone()
    rounds = attacked = 0
    correct: Tensor | None = None
    mods = threat.modalities

    def probe(idx: Tensor, k: Tensor) -> Tensor:
        """Attack examples ``idx`` at grid indices ``k`` (one call per chunk); their verdicts."""
        nonlocal correct
        out = torch.zeros(len(idx), dtype=torch.bool)
        for s in range(0, len(idx), batch_size):
            i, kk = idx[s : s + batch_size], k[s : s + batch_size]
            sub = {key: v[i.to(v.device)] for key, v in batch.items()}
            with attack_mode(model):
                p = atk.problem(sub, eps=_per_sample_eps(norm, modality, ref, grid, kk, mods, y.device))
                d = atk.solve(p)
                adv = atk.output(sub, p, d)
            fooled = atk.last_success.cpu()
            with torch.no_grad():
                pa = predict(model, adv).argmax(1).cpu()
            out[s : s + len(i)] = fooled
            upd = fooled | (kk == g - 1)
            pred_adv[i[upd]] = pa[upd]
        return out

    # clean correctness judged as the attack judges success (fresh draws on a stochastic model)
    with attack_mode(model):
        p0 = atk.problem(batch)
        votes = p0.votes(atk.zeros(p0)).cpu() if p0.stochastic else None
    if votes is not None:
        from ....attacks.base import success_threshold

        correct = votes < success_threshold(p0.draws)
    else:
        correct = pred_clean == y.cpu()
    lo[~correct], hi[~correct] = MISCLASSIFIED - 1, MISCLASSIFIED
    todo = correct.nonzero().flatten()
    if len(todo):
        k = torch.full((len(todo),), g - 1, dtype=torch.long)
        fooled = probe(todo, k)
        rounds, attacked = 1, len(todo)
        hi[todo[fooled]] = g - 1
        lo[todo[~fooled]] = g - 1  # never fooled: settled at hi = g
    while True:
        todo = ((hi - lo) > 1).nonzero().flatten()
        if not len(todo):
            break
        mid = (lo[todo] + hi[todo]) // 2
        fooled = probe(todo, mid)
        rounds, attacked = rounds + 1, attacked + len(todo)
        hi[todo[fooled]] = mid[fooled]
        lo[todo[~fooled]] = mid[~fooled]
    return MinimalBudgets(
        index=tuple(int(v) for v in hi),
        correct=tuple(bool(v) for v in correct),
        pred_clean=tuple(int(v) for v in pred_clean),
        pred_adv=tuple(int(v) for v in pred_adv),
        scales=tuple(grid),
        rounds=rounds,
        samples_attacked=attacked,
        protocol=atk.protocol(),
    )


__all__ = [
    "MISCLASSIFIED",
    "MinimalBudgets",
    "budgets_at",
    "geometric_scales",
    "grid_ratio",
    "minimal_budgets",
]
