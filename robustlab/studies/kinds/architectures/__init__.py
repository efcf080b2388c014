"""Study kind ``architectures``: CNNs vs transformers under occlusion, noise, universal perturbations and PGD,
with the change of the output distribution (KL) per condition (the robustness-of-architectures chapter,
arXiv 2205.03268).

One job per module:

* `plan` -- `Options` and the typed conditions (clean with the model's family; one per perturbation and
  level from `robustlab.perturbations`, waveform and feature domain; universal perturbations; PGD and its
  sanity checks, the attack_sweep conditions);
* `compute` -- the cell computations (accuracy, KL(p_clean || p_perturbed), prediction change);
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from .. import KINDS
from ..base import StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .plan import Options


class Architectures(StudyKind):
    """Side-by-side robustness of CNN and transformer audio classifiers, with output-distribution change."""

    name = "architectures"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan


KINDS.register("architectures", Architectures)

__all__ = ["Architectures", "Options"]
