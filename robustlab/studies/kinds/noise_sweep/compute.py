"""Cell computations of ``noise_sweep``: one function per condition type, registered in `CELLS`."""

from __future__ import annotations

from typing import Any

from ...cells import CellContext
from ..base import CellComputations
from ..measure import clean_accuracy, concat, estimate, predict_correct
from .plan import Clean, Noise

#: condition type -> computation
CELLS = CellComputations("noise_sweep")


@CELLS.computes(Clean)
def clean(c: Clean, ctx: CellContext) -> list[dict[str, Any]]:
    """Clean accuracy with n and a 95% bootstrap interval."""
    acc = clean_accuracy(ctx, c.batch_size, c.n_boot)
    return [{"perturbation": "none", "metric": "clean_accuracy", **acc}]


@CELLS.computes(Noise)
def noise(c: Noise, ctx: CellContext) -> list[dict[str, Any]]:
    """Accuracy on the perturbed test items (one seeded draw of the perturbation per batch)."""
    from .... import perturbations as rp

    model = ctx.model()
    pert = rp.create(c.perturbation, **c.options)
    oks = []
    for i, batch in enumerate(ctx.batches(c.batch_size)):
        noisy = pert(batch, c.level, sample_rate=ctx.sample_rate, seed=(ctx.seed + i) & 0x7FFFFFFF)
        oks.append(predict_correct(model, noisy))
    return [
        {
            "perturbation": c.perturbation,
            "modality": c.modality,
            "level_kind": c.level_kind,
            "level": c.level,
            "description": pert.describe(c.level),
            "metric": "accuracy",
            **estimate(concat(oks), ctx.seed, c.n_boot),
        }
    ]


__all__ = ["CELLS", "clean", "noise"]
