"""Study kind ``geometry``: latent density and convexity of zoo models per embedding (audio / visual /
fused) and per class, and how they rank with robustness.

One job per module:

* `plan` -- `Options` and the typed conditions of a model's cells (clean; geometry; attack_sweep's eps*
  conditions and noise_sweep's noise conditions, planned by their own functions; per-class attack and noise
  accuracy);
* `compute` -- the registry of cell computations (`robustlab.geometry.model_geometry` as rows; eps*, clean
  and noise through attack_sweep's and noise_sweep's computations; per-class accuracies);
* `derive` -- Spearman correlations (`robustlab.metrics.correlation`: exact permutation p for n <= 9)
  across models and across classes;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import correlations
from .plan import Options


class Geometry(StudyKind):
    """Density and convexity of latents, per class and embedding, against eps* and noise robustness."""

    name = "geometry"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return correlations(options, rows, part, run)


KINDS.register("geometry", Geometry)

__all__ = ["Geometry", "Options"]
