"""Study kind ``noise_sweep``: models x a perturbation suite (``robustlab.perturbations``) x levels.

One job per module:

* `plan` -- `Options` and the typed conditions (clean; one per perturbation and level);
* `compute` -- the registry of cell computations (accuracy with n and a 95% bootstrap interval);
* `derive` -- the Spearman rank correlation between adversarial and noise robustness across models, from
  the row index the runner hands over (this run's attack rows, else those of ``attack_run`` folders), one
  protocol only;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import correlation, spearman
from .plan import Options


class NoiseSweep(StudyKind):
    """Accuracy under natural noise and corruptions, and its rank correlation with adversarial robustness."""

    name = "noise_sweep"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def inputs(self, options: Options) -> tuple[str, ...]:
        """The ``attack_run`` folders (their rows join the index handed to `derive`)."""
        return options.attack_runs

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return correlation(options, rows, part, run)


KINDS.register("noise_sweep", NoiseSweep)

__all__ = ["NoiseSweep", "Options", "spearman"]
