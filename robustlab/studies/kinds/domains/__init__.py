"""Study kind ``domains``: time vs frequency, bands and modules -- where the audio of a model is vulnerable.

One job per module:

* `plan` -- `Options` and the typed conditions of a model's cells (clean; waveform- vs feature-domain attacks;
  band-limited attacks over octave and mel bands; module sensitivity and per-module attacks; sanity checks);
* `compute` -- the registry of cell computations;
* `derive` -- the ``band_projection`` sanity flag per model, from its band cells;
* `layout` -- the report layout (tables, curves with 95% bands, the band heatmap, the amplification ranking),
  registered with `robustlab.reports.layouts.LAYOUTS`.

Module taps (the activations between modules, and attacks on one of them) come from
`robustlab.models.taps`; the feature domain from the models' ``frontend`` / ``backbone`` split.
"""

from __future__ import annotations

from typing import Any

from .. import KINDS
from ..base import RowIndex, RunInfo, StudyKind
from . import layout as _layout  # noqa: F401 - registers the report layout
from . import plan
from .compute import CELLS
from .derive import band_flags
from .plan import Options


class Domains(StudyKind):
    """Waveform vs feature-domain attacks, the band vulnerability map and module sensitivity of audio models
    (and of the audio branch of audio-visual ones)."""

    name = "domains"
    version = 1
    Options = Options
    computations = CELLS
    layout_module = _layout.__name__
    planning = plan

    def derive(self, options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        return band_flags(options, rows, part, run)


KINDS.register("domains", Domains)

__all__ = ["Domains", "Options"]
