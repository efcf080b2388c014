"""What a study kind provides to the runner, and the typed pieces it is built from.

A kind has one job per module (see ``studies/README.md``, "Adding a study kind"):

* planning -- its ``Options`` (a frozen dataclass) and ``conditions(options, model)``: typed, frozen
  `Condition` dataclasses, one per cell; a condition's `Condition.to_json` is hashed into the cell id;
* computing -- a `CellComputations` registry mapping each condition type to the function that computes its
  rows from a `robustlab.studies.cells.CellContext` (no ``getattr`` on strings);
* deriving (optional) -- run-level rows from an explicit `RowIndex` the runner hands over;
* report layout -- a `robustlab.reports.layouts.ReportLayout` registered with the reports package under the
  kind's name (the reports never import the studies).

A kind never reads or writes files: the runner hands it everything it uses (its resolved options, the cell
context, the row index) and writes what it returns.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

if TYPE_CHECKING:  # pragma: no cover
    from ..cells import Cell, CellContext


@dataclass(frozen=True)
class ModelInfo:
    """What a study needs to know about a zoo model before it is trained (from ``robustlab.zoo.list``).

    Attributes:
        id: zoo id ``arch.tag``.
        arch: architecture name.
        dataset: dataset name the model is trained and evaluated on.
        modalities: the inputs the model reads.
        classifier: its architecture is a registered classifier (`robustlab.models.MODELS`); False for the
            zoo's other models (the diffusion denoisers), which model patterns such as ``*.base_fsdd`` skip.
    """

    id: str
    arch: str
    dataset: str
    modalities: tuple[str, ...]
    classifier: bool = True

    @classmethod
    def from_listing(cls, entry: Mapping[str, Any]) -> ModelInfo:
        """From one ``robustlab.zoo.list()`` entry."""
        dataset = entry.get("dataset")
        if isinstance(dataset, Mapping):
            dataset = dataset.get("name")
        from ...models import MODELS

        arch = str(entry.get("arch", str(entry["id"]).split(".")[0]))
        return cls(
            id=str(entry["id"]),
            arch=arch,
            dataset=str(dataset),
            modalities=tuple(entry.get("modalities") or ("audio",)),
            classifier=arch in MODELS,
        )


@dataclass(frozen=True)
class RunInfo:
    """Run-level facts a kind may use when deriving rows (see `StudyKind.derive`).

    Attributes:
        study / run_dir / tier / seeds: of this run.
        weights: model id -> checkpoint sha256 of this run's models (rows of other runs are only combined
            with this run's when they measured the same checkpoint).
    """

    study: str
    run_dir: str
    tier: str
    seeds: tuple[int, ...]
    weights: Mapping[str, str] = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- conditions


def _plain(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    return value


@dataclass(frozen=True)
class Condition:
    """Base class of a kind's cell conditions: a frozen dataclass of everything besides model, data, seed,
    tier and limit that fixes a cell's result.

    Subclasses set ``cell`` (the condition type's tag, stored as the ``"cell"`` key) and declare fields; the
    JSON form (`to_json`) is what is hashed into the cell id, so renaming or adding a field changes the ids
    of that kind's cells (bump the kind's ``version`` when the *meaning* changes).
    """

    cell: ClassVar[str] = ""

    def to_json(self) -> dict[str, Any]:
        """``{"cell": <tag>, <field>: <JSON value>, ...}`` (tuples as lists)."""
        out: dict[str, Any] = {"cell": self.cell}
        for f in dataclasses.fields(self):
            out[f.name] = _plain(getattr(self, f.name))
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Condition:
        """The condition of a stored JSON form (lists of tuple-typed fields become tuples).

        Raises:
            ValueError: naming a missing or unknown field.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        given = {k: v for k, v in data.items() if k != "cell"}
        unknown, missing = (
            set(given) - names,
            {
                f.name
                for f in dataclasses.fields(cls)
                if f.name not in given
                and f.default is dataclasses.MISSING
                and f.default_factory is dataclasses.MISSING
            },
        )
        if unknown or missing:
            raise ValueError(
                f"condition {cls.cell!r}: unknown fields {sorted(unknown)}, missing fields {sorted(missing)}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in given.items()})

    def label(self) -> str:
        """Short text for progress bars and error tables."""
        parts = [self.cell] if self.cell else []
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if not isinstance(v, dict | list | tuple):
                parts.append(f"{f.name}={v}")
        return " ".join(parts)


@dataclass(frozen=True)
class Clean(Condition):
    """Clean accuracy on the cell's ``limit`` test items (every kind that reports it uses this condition)."""

    cell = "clean"
    batch_size: int
    n_boot: int

    def label(self) -> str:
        return "clean"


C = TypeVar("C", bound=Condition)
Compute = Callable[[Any, "CellContext"], list[dict[str, Any]]]


class CellComputations:
    """A kind's registry of cell computations: condition type -> the function computing its rows.

    Example:
        >>> CELLS = CellComputations("my_kind")
        >>> @CELLS.computes(Clean)
        ... def clean(c: Clean, ctx: CellContext) -> list[dict]:
        ...     return [{"metric": "clean_accuracy", "value": ...}]
    """

    def __init__(self, kind: str) -> None:
        self.kind = kind
        self._types: dict[str, type[Condition]] = {}
        self._compute: dict[type[Condition], Compute] = {}

    def computes(
        self, condition: type[C]
    ) -> Callable[[Callable[[C, CellContext], list[dict[str, Any]]]], Any]:
        """Decorator registering the computation of ``condition`` cells.

        Raises:
            ValueError: the condition type has no ``cell`` tag, or its tag is registered already.
        """
        if not condition.cell:
            raise ValueError(f"{condition.__name__} has no `cell` tag")
        if condition.cell in self._types:
            raise ValueError(f"kind {self.kind}: condition {condition.cell!r} already has a computation")

        def add(fn: Callable[[C, CellContext], list[dict[str, Any]]]) -> Any:
            self._types[condition.cell] = condition
            self._compute[condition] = fn
            return fn

        return add

    @property
    def types(self) -> dict[str, type[Condition]]:
        """Condition tag -> condition type."""
        return dict(self._types)

    def parse(self, data: Mapping[str, Any]) -> Condition:
        """The typed condition of a cell's stored JSON condition.

        Raises:
            ValueError: naming an unknown condition tag and the known ones.
        """
        tag = data.get("cell")
        if tag not in self._types:
            raise ValueError(
                f"kind {self.kind}: unknown condition {tag!r}; known: {', '.join(sorted(self._types))}"
            )
        return self._types[tag].from_json(data)

    def compute(self, condition: Condition, ctx: CellContext) -> list[dict[str, Any]]:
        """Rows of one cell.

        Raises:
            TypeError: no computation is registered for the condition's type.
        """
        fn = self._compute.get(type(condition))
        if fn is None:
            raise TypeError(f"kind {self.kind}: no computation registered for {type(condition).__name__}")
        return fn(condition, ctx)


# ----------------------------------------------------------------------------------------------- row index


@dataclass(frozen=True)
class RowSource:
    """Rows from one place: this run (``name = "this run"``) or a finished run folder named in the study.

    Attributes:
        name: ``"this run"`` or the run folder.
        rows: its result rows.
        weights: model id -> checkpoint sha256 the rows were measured on (from its ``env.json``).
    """

    name: str
    rows: tuple[Mapping[str, Any], ...]
    weights: Mapping[str, str] = field(default_factory=dict)


class ProtocolMismatch(ValueError):
    """Rows that a derived statistic would combine were measured under different protocols."""


class RowIndex:
    """The rows a kind may combine when deriving run-level rows: this run's, then other runs' named in the
    study file. Built by the runner; a kind reads nothing else.

    Args:
        sources: `RowSource` objects, this run first.
    """

    def __init__(self, sources: Sequence[RowSource]) -> None:
        self.sources = tuple(sources)

    @classmethod
    def of(cls, rows: Iterable[Mapping[str, Any]], weights: Mapping[str, str] | None = None) -> RowIndex:
        """An index holding only this run's ``rows``."""
        return cls([RowSource("this run", tuple(rows), dict(weights or {}))])

    @property
    def this_run(self) -> tuple[Mapping[str, Any], ...]:
        """The rows of this run (the first source)."""
        return self.sources[0].rows if self.sources else ()

    def select(self, source: RowSource, **match: Any) -> list[Mapping[str, Any]]:
        """Rows of ``source`` whose fields equal ``match`` (a list / tuple / set value: membership)."""
        out = []
        for r in source.rows:
            ok = True
            for k, want in match.items():
                have = r.get(k)
                if isinstance(want, list | tuple | set | frozenset):
                    ok = have in want
                else:
                    ok = have == want
                if not ok:
                    break
            if ok:
                out.append(r)
        return out


# ----------------------------------------------------------------------------------------------- the kind


class StudyKind:
    """Base class of study kinds (register subclasses in ``robustlab.studies.kinds.KINDS``).

    Class attributes:
        name: the registry name used in study files (``kind = "attack_sweep"``).
        version: bump when the meaning of a kind's results changes; it is part of every cell id.
        Options: a frozen dataclass of typed options with defaults (see `robustlab.studies.options`).
        computations: the kind's `CellComputations`.
        layout_module: the module that registers the kind's report layout with
            `robustlab.reports.layouts.LAYOUTS` (recorded in the run so a fresh renderer finds it).
        planning: the kind's planning module (``plan.py``); the default `check` and `conditions` call its
            ``check(options, models)`` and ``conditions(options, model)``.
    """

    name: ClassVar[str] = ""
    version: ClassVar[int] = 1
    Options: ClassVar[type]
    computations: ClassVar[CellComputations]
    layout_module: ClassVar[str | None] = None
    planning: ClassVar[ModuleType | None] = None

    def check(self, options: Any, models: Sequence[ModelInfo]) -> None:
        """Validate options against what is registered (attack names, ...). Raise ValueError naming it."""
        if self.planning is not None:
            self.planning.check(options, models)

    def conditions(self, options: Any, model: ModelInfo) -> list[Condition]:
        """The cells of one model: typed conditions holding *everything* besides model, data, seed, tier and
        limit that fixes the cell's result (their JSON form is hashed into the cell id)."""
        if self.planning is None:
            raise NotImplementedError(f"study kind {self.name!r} names no planning module and does not "
                                      "override conditions()")
        return self.planning.conditions(options, model)

    def inputs(self, options: Any) -> tuple[str, ...]:
        """Finished run folders whose results this kind may combine in `derive` (default: none)."""
        return ()

    def label(self, condition: Condition) -> str:
        """Short text for progress bars and error tables."""
        return condition.label()

    def parse(self, condition: Mapping[str, Any]) -> Condition:
        """The typed condition of a cell's JSON condition."""
        return self.computations.parse(condition)

    def run_cell(self, cell: Cell, ctx: CellContext) -> list[dict[str, Any]]:
        """Compute one cell: rows with ``metric`` and ``value`` (and ``n``, ``ci_low``, ``ci_high``, condition
        fields); the runner adds study, part, cell, model, dataset, seed and tier."""
        return self.computations.compute(self.parse(cell.condition), ctx)

    def derive(self, options: Any, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
        """Run-level rows computed from the rows the runner hands over (default: none).

        Raises:
            ProtocolMismatch: rows to combine were measured under different protocols (named).
        """
        return []


__all__ = [
    "CellComputations",
    "Clean",
    "Condition",
    "ModelInfo",
    "ProtocolMismatch",
    "RowIndex",
    "RowSource",
    "RunInfo",
    "StudyKind",
]
