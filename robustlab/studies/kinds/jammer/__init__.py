"""Study kind ``jammer``: a universal over-the-air jammer (adversarial music) against a keyword spotter.

One job per module:

* `plan` -- `Options` and the typed conditions (dry F1; one jammer per speech-to-jammer level);
* `compute` -- the cell computations: EOT optimisation of a synthesized jammer over simulated rooms
  (`robustlab.physical`), F1 on held-out rooms against random music and white noise at the same level, the
  measured levels, and the jammer's audio attached to the run (``ctx.attach``);
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.
"""

from __future__ import annotations

from .. import KINDS
from ..base import StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .plan import Options


class JammerStudy(StudyKind):
    """Keyword F1 before / after a synthesized over-the-air jammer, on held-out rooms, vs baselines."""

    name = "jammer"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan


KINDS.register("jammer", JammerStudy)

__all__ = ["JammerStudy", "Options"]
