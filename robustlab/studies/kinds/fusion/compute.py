"""Cell computations of ``fusion``: one function per condition type, registered in `CELLS`.

The single-modality attack curves, potency eps* and sanity checks are ``attack_sweep``'s computations, the
noise cells ``noise_sweep``'s (imported, not copied); the joint attack, the per-example minimal budgets and
the missing-modality cells are this kind's own.

Test items are the cell context's (`robustlab.studies.cells.test_order`: a fixed seeded sample of the test
split, the same for every model of a dataset); the per-example rows cite their positions in the split.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from typing import Any

import numpy as np

from ...cells import CellContext
from ..attack_sweep.compute import attack as _attack_cell
from ..attack_sweep.compute import checks as _checks_cell
from ..attack_sweep.compute import potency as _potency_cell
from ..base import CellComputations
from ..measure import clean_accuracy, concat, estimate, predict_correct
from ..noise_sweep.compute import noise as _noise_cell
from .budgets import MISCLASSIFIED, minimal_budgets
from .plan import AttackCell, Checks, Clean, JointAttack, MinBudget, Missing, Noise, Potency

#: condition type -> computation
CELLS = CellComputations("fusion")

CELLS.computes(AttackCell)(_attack_cell)
CELLS.computes(Potency)(_potency_cell)
CELLS.computes(Checks)(_checks_cell)
CELLS.computes(Noise)(_noise_cell)


def _attacks() -> Any:
    from .... import attacks

    return attacks


def items_digest(items: Mapping[str, Any]) -> dict[str, str]:
    """sha256 (16 hex characters) of each tensor of a batch dict: the identity of the measured examples, so
    rows of two models are paired only when they measured the very same items."""
    out = {}
    for key in sorted(items):
        v = items[key]
        if hasattr(v, "detach"):
            arr = np.ascontiguousarray(v.detach().cpu().numpy())
            out[key] = hashlib.sha256(arr.tobytes() + str(arr.shape).encode()).hexdigest()[:16]
    return out


@CELLS.computes(Clean)
def clean(c: Clean, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy with n and a 95% bootstrap interval."""
    return [{"metric": "clean_accuracy", **clean_accuracy(ctx, c.batch_size, c.n_boot)}]


@CELLS.computes(JointAttack)
def joint_attack(c: JointAttack, ctx: CellContext) -> list[dict[str, Any]]:
    """Robust accuracy under a joint threat (both modalities, paired budgets), the success rate among
    clean-correct items and each modality's perturbation size."""
    atk_mod = _attacks()
    model = ctx.model()
    threat = atk_mod.Threat(c.norm, {"audio": c.eps_audio, "visual": c.eps_visual}, "both")
    attack = atk_mod.create(c.attack, model, threat, seed=ctx.seed, **c.kwargs)
    clean_ok, adv_ok = [], []
    sizes: dict[str, list[np.ndarray]] = {m: [] for m in threat.modalities}
    for batch in ctx.batches(c.batch_size):
        clean_ok.append(predict_correct(model, batch))
        adv = attack(batch)
        adv_ok.append(predict_correct(model, adv))
        for m in threat.modalities:
            st = atk_mod.perturbation_stats(batch, adv, modality=m)
            sizes[m].append(st[c.norm if c.norm in st else "l2"].detach().cpu().numpy())
    ok, robust = concat(clean_ok), concat(adv_ok)
    ident = {
        "attack": c.attack,
        "norm": c.norm,
        "modality": "both",
        "eps_audio": c.eps_audio,
        "eps_visual": c.eps_visual,
        "threat": threat.label,
    }
    seed, nb = ctx.seed, c.n_boot
    rows = [
        {**ident, "metric": "robust_accuracy", **estimate(robust, seed, nb), "protocol": attack.protocol()}
    ]
    rows.append({**ident, "metric": "attack_success_rate", **estimate(1.0 - robust[ok > 0.5], seed, nb)})
    for m, chunks in sizes.items():
        rows.append({**ident, "metric": f"perturbation_{m}", **estimate(concat(chunks), seed, nb)})
    return rows


@CELLS.computes(MinBudget)
def min_budget(c: MinBudget, ctx: CellContext) -> list[dict[str, Any]]:
    """Per-example minimal budgets (grid indices, clean correctness, clean and adversarial predictions) of
    the cell's items; ``value`` is the median minimal budget (in ``ref`` multiples) over the examples
    classified correctly (None when more than half are never fooled)."""
    model = ctx.model()
    items = ctx.items()
    batch = {k: v.to(ctx.device or "cpu") for k, v in items.items()}
    ref: Any = dict(c.ref) if isinstance(c.ref, Mapping) else float(c.ref)
    res = minimal_budgets(
        model,
        batch,
        c.norm,
        c.modality,
        ref,
        c.scales,
        attack=c.attack,
        batch_size=c.batch_size,
        seed=ctx.seed,
        **c.kwargs,
    )
    g = len(res.scales)
    idx = np.asarray(res.index)
    ok = idx != MISCLASSIFIED
    scale = np.array([res.scales[i] if 0 <= i < g else np.inf for i in idx[ok]], dtype=np.float64)
    median = float(np.median(scale)) if len(scale) else None
    attacked = ("audio", "visual") if c.modality == "both" else (c.modality,)
    return [
        {
            "attack": c.attack,
            "norm": c.norm,
            "modality": c.modality,
            "metric": "min_budget",
            "value": median if median is not None and np.isfinite(median) else None,
            "n": int(len(idx)),
            "n_correct": int(ok.sum()),
            "n_never": int((idx == g).sum()),
            "ref": ref,
            "scales": list(res.scales),
            "index": list(res.index),
            "label": [int(v) for v in items["label"]],
            "test_index": list(ctx.item_indices()),
            "pred_clean": list(res.pred_clean),
            "pred_adv": list(res.pred_adv),
            "num_classes": int(model.spec.num_classes),
            "items": {k: v for k, v in items_digest(items).items() if k in ("label", *attacked)},
            "rounds": res.rounds,
            "samples_attacked": res.samples_attacked,
            "protocol": dict(res.protocol),
        }
    ]


@CELLS.computes(Missing)
def missing(c: Missing, ctx: CellContext) -> list[dict[str, Any]]:
    """Accuracy with one modality removed: all zeros (silence / a black image), or the per-element mean of
    ``mean_items`` training items (seeded subset, seed 0: every model of a dataset gets one fill); with
    ``c.paired`` also ``missing_drop``, the clean minus that accuracy on the same examples (paired
    bootstrap: whether the model uses the modality at all)."""
    import torch

    model = ctx.model()
    fill = None
    if c.fill == "mean":
        train = ctx.split_items("train", c.mean_items, seed=0)
        fill = train[c.modality].float().mean(0, keepdim=True)
    oks, clean_oks = [], []
    for batch in ctx.batches(c.batch_size):
        if c.paired:
            clean_oks.append(predict_correct(model, batch))
        x = batch[c.modality]
        batch = dict(batch)
        batch[c.modality] = torch.zeros_like(x) if fill is None else fill.to(x.device).expand_as(x).clone()
        oks.append(predict_correct(model, batch))
    ident = {"modality": c.modality, "fill": c.fill}
    rows = [{**ident, "metric": "missing_accuracy", **estimate(concat(oks), ctx.seed, c.n_boot)}]
    if c.paired:
        drop = concat(clean_oks) - concat(oks)
        rows.append({**ident, "metric": "missing_drop", **estimate(drop, ctx.seed, c.n_boot)})
    return rows


__all__ = [
    "CELLS",
    "clean",
    "items_digest",
    "joint_attack",
    "min_budget",
    "missing",
]
