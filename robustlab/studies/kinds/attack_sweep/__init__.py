"""Study kind ``attack_sweep``: models x attacks x threat grids (L-inf, L2, SNR) on each model's test split.

One job per module:

* `plan` -- `Options` and the typed conditions of a model's cells (clean, attack, potency, checks);
* `compute` -- the registry of cell computations (robust accuracy, success rate and perturbation size;
  potency eps*; the sanity checks of ARCHITECTURE §4 as rows ``flag:<name>``);
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.

Options (``[parts.grid]`` of a study file) are the fields of `Options`.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .plan import NORMS, Options, attack_kwargs


class AttackSweep(StudyKind):
    """Robust accuracy of zoo models over attacks x threat grids, with potency eps*, perturbation SNR and
    sanity flags."""

    name = "attack_sweep"
    #: 2 (evaluation honesty): attacks return the per-sample worst case seen (clean input included), so the
    #: perturbation statistics of unfooled samples change; stochastic models are judged on repeated draws;
    #: CW-L2 honours kappa and restarts with new defaults; the `stronger_attack` check (AutoAttack) replaces
    #: `more_steps`, and `full_range` requires ~0 accuracy.
    version = 2
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def attack_kwargs(self, options: Options, attack: str) -> dict[str, Any]:
        """Constructor keyword arguments of ``attack`` (see `plan.attack_kwargs`)."""
        return attack_kwargs(options, attack)


KINDS.register("attack_sweep", AttackSweep)

__all__ = ["NORMS", "AttackSweep", "Options"]
