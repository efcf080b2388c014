"""Study kind ``pretraining``: NPID self-supervised checkpoints -- their kNN accuracy over pre-training
epochs, kNN and linear probes of their embeddings, fine-tuning curves from the pre-trained weights vs from
scratch at several label fractions and seeds, and the clean and robust accuracy (and eps*) of the fine-tuned
models.

One job per module:

* `plan` -- `Options` and the typed conditions (pre-training curve, embedding evaluation, fine-tuning runs);
* `compute` -- the cell computations (fine-tuning through `robustlab.train`, evaluation through the cells of
  ``attack_sweep``);
* `derive` -- means over training seeds with t-intervals, and paired pre-trained minus scratch gains;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import aggregate
from .plan import Options


class Pretraining(StudyKind):
    """Self-supervised pre-training: kNN curves, probes, fine-tuning vs scratch and robustness."""

    name = "pretraining"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return aggregate(rows, part, run)


KINDS.register("pretraining", Pretraining)

__all__ = ["Options", "Pretraining"]
