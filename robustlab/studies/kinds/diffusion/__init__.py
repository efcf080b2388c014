"""Study kind ``diffusion``: a zoo diffusion model's generation quality, the purification defense it gives
its classifier under adaptive attacks only, and certified robustness by Gaussian and denoised smoothing.

One job per module:

* `plan` -- `Options` and the typed conditions (card, clean, quality, purified clean, purification attacks
  and their stochastic checks, CERTIFY);
* `compute` -- the registry of cell computations;
* `layout` -- the report layout, registered with `robustlab.reports.layouts.LAYOUTS`.

Options (``[parts.grid]`` of a study file) are the fields of `Options`; ``quality``, ``purify`` and
``certify`` switch the three groups, so one study file can give each its own part.
"""

from __future__ import annotations

from .. import KINDS
from ..base import StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .plan import Options


class Diffusion(StudyKind):
    """Generation quality, purification under adaptive attacks, and randomized-smoothing certificates of a
    zoo diffusion model and the classifier whose features it models."""

    name = "diffusion"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan


KINDS.register("diffusion", Diffusion)

__all__ = ["Diffusion", "Options"]
