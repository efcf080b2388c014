"""Study kind ``sharpness``: loss-landscape sharpness of zoo models and how it ranks with robustness.

Per model: weight-space curvature of the training loss (top Hessian eigenvalues, Hutchinson trace, optionally
the spectral density), epsilon- and adaptive sharpness, input-space gradient norm, curvature and local
linearity per modality, 1-D / 2-D filter-normalised landscapes and the loss along the adversarial direction,
train and test accuracy; eps* and noise accuracy through the very cells of ``attack_sweep`` (`Potency`) and
``noise_sweep`` (`Noise`), or from the run folders named by ``source_run``. Across models: Spearman's rho and
Kendall's tau of every measure with eps*, mean noise accuracy and the generalisation gap, exact p-values for
few models (`robustlab.metrics.correlation`).

One job per module:

* `plan` -- `Options` and the typed conditions of a model's cells;
* `compute` -- the registry of cell computations (`robustlab.sharpness` measures; eps* and noise by the
  other kinds' own functions);
* `derive` -- per-model targets and the rank correlations, from the row index the runner hands over;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout
from . import plan
from .compute import CELLS
from .derive import derive
from .plan import Options


class Sharpness(StudyKind):
    """Sharpness measures per model and their rank correlations with eps*, noise accuracy and the gap."""

    name = "sharpness"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def inputs(self, options: Options) -> tuple[str, ...]:
        """The ``source_run`` folders (their eps* / noise rows join the index handed to `derive`)."""
        return options.source_runs

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return derive(options, rows, part, run)


KINDS.register("sharpness", Sharpness)

__all__ = ["Options", "Sharpness"]
