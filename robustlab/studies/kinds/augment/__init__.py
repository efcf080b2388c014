"""Study kind ``augment``: classifiers trained on real, real + generated and generated-only features, at full
and reduced real data, over seeds (does diffusion augmentation help, as Audio-Journey found?).

One job per module:

* `plan` -- `Options` and the `AugmentCell` conditions (fraction x mix);
* `compute` -- train one classifier on one mix and test it on real items;
* `derive` -- accuracy over seeds and the paired gain over real-only training;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import summarize
from .plan import Options


class Augment(StudyKind):
    """Accuracy of classifiers trained with and without generated features, over seeds."""

    name = "augment"
    version = 2  # 2: generator settings and the class consistency of the generated items in the rows
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return summarize(options, rows, part, run)


KINDS.register("augment", Augment)

__all__ = ["Augment", "Options"]
