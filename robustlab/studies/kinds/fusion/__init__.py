"""Study kind ``fusion``: are audio-visual fusion models more robust than the unimodal models of their data?

For each dataset the study file names the unimodal model of each modality (option ``unimodal``); every other
model of the part that reads both modalities is a fused model compared with them. One job per module:

* `plan` -- `Options` and the typed conditions of a model's cells (clean; attack curves per modality and
  joint; potency eps*; per-example minimal budgets; noise per modality; missing modality; sanity checks);
* `budgets` -- per-example minimal budgets by bisection on a geometric grid (one attack call per round);
* `compute` -- the registry of cell computations (``attack_sweep``'s and ``noise_sweep``'s reused);
* `derive` -- Theorem 1 measured per example, eps* with bootstrap intervals and their fused / unimodal
  ratios, and the verdict per fused model and attacked modality, from the run's row index;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import derive
from .plan import Options


class Fusion(StudyKind):
    """Fusion vs unimodal robustness: per-modality and joint attacks, potency, Theorem 1, noise, missing
    modality and verdicts."""

    name = "fusion"
    version = 2  # 2: verdicts say whether the fusion uses the attacked modality; missing-modality drops
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return derive(options, rows, part, run)


KINDS.register("fusion", Fusion)

__all__ = ["Fusion", "Options"]
