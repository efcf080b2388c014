"""What a study kind provides to the runner and to the report renderer.

A kind turns its options and one model into *conditions* (one cell each), computes a cell's result rows,
optionally derives run-level rows from all rows (a correlation across models, say), and lays out its part
of the report. It never writes files; the runner does.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:  # pragma: no cover
    from ...reports.document import Section
    from ...reports.figures import FigureWriter
    from ..cells import Cell, CellContext


@dataclass(frozen=True)
class ModelInfo:
    """What a study needs to know about a zoo model before it is trained (from ``robustlab.zoo.list``).

    Attributes:
        id: zoo id ``arch.tag``.
        arch: architecture name.
        dataset: dataset name the model is trained and evaluated on.
        modalities: the inputs the model reads.
    """

    id: str
    arch: str
    dataset: str
    modalities: tuple[str, ...]

    @classmethod
    def from_listing(cls, entry: Mapping[str, Any]) -> ModelInfo:
        """From one ``robustlab.zoo.list()`` entry."""
        dataset = entry.get("dataset")
        if isinstance(dataset, Mapping):
            dataset = dataset.get("name")
        return cls(
            id=str(entry["id"]),
            arch=str(entry.get("arch", str(entry["id"]).split(".")[0])),
            dataset=str(dataset),
            modalities=tuple(entry.get("modalities") or ("audio",)),
        )


@dataclass(frozen=True)
class RunInfo:
    """Run-level facts a kind may use when deriving rows (see `StudyKind.derive`)."""

    study: str
    run_dir: str
    tier: str
    seeds: tuple[int, ...]


class StudyKind:
    """Base class of study kinds (register subclasses in ``robustlab.studies.kinds.KINDS``).

    Class attributes:
        name: the registry name used in study files (``kind = "attack_sweep"``).
        version: bump when the meaning of a kind's results changes; it is part of every cell id.
        Options: a frozen dataclass of typed options with defaults (see `robustlab.studies.options`).
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Options: ClassVar[type]

    def check(self, options: Any, models: Sequence[ModelInfo]) -> None:
        """Validate options against what is registered (attack names, ...). Raise ValueError naming it."""

    def conditions(self, options: Any, model: ModelInfo) -> list[dict[str, Any]]:
        """The cells of one model: JSON-able dicts holding *everything* besides model, data, seed, tier and
        limit that fixes the cell's result (they are hashed into the cell id)."""
        raise NotImplementedError

    def label(self, condition: Mapping[str, Any]) -> str:
        """Short text for progress bars and error tables."""
        return " ".join(f"{k}={v}" for k, v in condition.items() if not isinstance(v, dict | list))

    def run_cell(self, cell: Cell, ctx: CellContext) -> list[dict[str, Any]]:
        """Compute one cell: rows with ``metric`` and ``value`` (and ``n``, ``ci_low``, ``ci_high``, condition
        fields); the runner adds study, part, cell, model, dataset, seed and tier."""
        raise NotImplementedError

    def derive(self, rows: Sequence[Mapping[str, Any]], part: str, run: RunInfo) -> list[dict[str, Any]]:
        """Run-level rows computed from all rows of the run (default: none)."""
        return []

    def report(self, rows: Sequence[Mapping[str, Any]], figures: FigureWriter) -> list[Section]:
        """Report sections of this kind from its rows (default: none)."""
        return []

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        """Protocol table rows (attack/perturbation, steps, step size, restarts, n, seeds, ...)."""
        return []
