"""Study kind ``defenses``: the recipes of one defense family (a base recipe and its mixup / adversarial
training variants, optionally under several training seeds ``<id>@seed<N>``) evaluated side by side.

One job per module:

* `plan` -- `Options` and the typed conditions of a model's cells (clean; attack_sweep's attack, eps* and
  sanity-check conditions per attacked modality; noise_sweep's noise conditions; geometry's geometry
  condition; the training cost from the card), planned by their owners' functions;
* `compute` -- the registry of cell computations (those kinds' computations, and the card's training row);
* `derive` -- per-model summaries (cost ratio vs the base recipe, geometry before -> after, flags), the
  ranking (flagged models never first) and the verdict paragraph on mixup vs PGD adversarial training;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import derive_rows
from .plan import Options


class Defenses(StudyKind):
    """Clean and robust accuracy, eps*, noise robustness, training cost and latent geometry of defended
    recipes against their base, with sanity flags, a ranking and a verdict."""

    name = "defenses"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return derive_rows(options, rows, part, run)


KINDS.register("defenses", Defenses)

__all__ = ["Defenses", "Options"]
