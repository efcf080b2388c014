"""The study runner: plan cells from a resolved study, reuse what exists, compute the rest, write the run.

Run folder ``<root>/<study>/<YYYYmmdd-HHMMSS>-<id>/``::

    study.toml      the resolved study (a valid study file; `run <it>` reproduces the run)
    env.json        versions, device, git sha, seeds, model / dataset fingerprints, command
    cells/<id>.json one record per cell (see `robustlab.studies.cells`), written atomically
    artefacts/<id>/ files the cells handed over (`CellContext.attach`: a jammer's WAV, ...), from the records
    results.jsonl   one row per measurement, from the cell records (+ run-level derived rows)
    summary.json    cell counts (total, done, reused, cached, computed, failed), failures, wall time
    report.md, report.html, figures/*.png   rendered from the files above (`robustlab.reports`)
"""

from __future__ import annotations

import inspect
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .. import paths
from .cache import CellCache
from .cells import (
    Cell,
    read_record,
    record_skeleton,
    write_artefacts,
    write_json_atomic,
    write_text_atomic,
)
from .executors import Executor, LocalExecutor
from .kinds import ModelInfo, RunInfo, get_kind
from .kinds.base import Condition, RowIndex, RowSource, StudyKind
from .spec import ResolvedStudy, zoo_catalog

log = logging.getLogger(__name__)

IDENTITY_FIELDS = ("study", "part", "kind", "cell", "model", "dataset", "seed", "tier")


# ----------------------------------------------------------------------------------------------- models


@dataclass(frozen=True)
class ModelFacts:
    """What fixes a model's results: checkpoint hash and test-split fingerprint (plus its card)."""

    id: str
    weights_sha256: str
    dataset_fingerprint: str
    card: Mapping[str, Any] = field(default_factory=dict, repr=False)


class ZooSource:
    """Where the runner gets models: ``robustlab.zoo`` (trains on demand with ``get_or_train``).

    Args:
        progress: show the zoo's training progress (epochs) when a model is trained.
    """

    def __init__(self, progress: bool = False) -> None:
        self.progress = progress

    def catalog(self) -> dict[str, ModelInfo]:
        """Zoo id -> `ModelInfo` (``robustlab.zoo.list()``)."""
        return zoo_catalog()

    def facts(self, model_id: str) -> ModelFacts:
        """Train or load ``model_id`` and describe it."""
        from .. import zoo

        takes_progress = "progress" in inspect.signature(zoo.get_or_train).parameters
        model = zoo.get_or_train(model_id, **({"progress": True} if self.progress and takes_progress else {}))
        ds = zoo.dataset_for(model_id, "test")
        return ModelFacts(
            model_id, str(model.card["weights_sha256"]), str(ds.spec.fingerprint), dict(model.card)
        )


# ----------------------------------------------------------------------------------------------- planning


@dataclass
class Plan:
    """The cells of a run, in order, and the facts of its models (failed models: their error)."""

    cells: list[Cell]
    facts: dict[str, ModelFacts]
    model_errors: dict[str, str]


def plan_cells(study: ResolvedStudy, facts: Mapping[str, ModelFacts]) -> list[Cell]:
    """Expand a resolved study into cells (parts x models x seeds x the kind's conditions), de-duplicated."""
    cells: list[Cell] = []
    seen: set[str] = set()
    for part in study.parts:
        kind = get_kind(part.kind)
        for model_id in part.models:
            info = study.models[model_id]
            f = facts.get(model_id) or ModelFacts(model_id, "", "")
            for seed in study.seeds:
                for cond in kind.conditions(part.options, info):
                    if not isinstance(cond, Condition):
                        raise TypeError(
                            f"kind {part.kind}: conditions() must return Condition dataclasses, got "
                            f"{type(cond).__name__}"
                        )
                    cell = Cell(
                        study=study.name,
                        part=part.name,
                        kind=part.kind,
                        kind_version=type(kind).version,
                        kind_module=type(kind).__module__,
                        model=model_id,
                        dataset=info.dataset,
                        weights_sha256=f.weights_sha256,
                        dataset_fingerprint=f.dataset_fingerprint,
                        condition=json.loads(json.dumps(cond.to_json(), allow_nan=False)),
                        seed=int(seed),
                        tier=study.tier,
                        limit=study.limit,
                        label=kind.label(cond),
                    )
                    if cell.id not in seen:
                        seen.add(cell.id)
                        cells.append(cell)
    return cells


def count_cells(study: ResolvedStudy) -> int:
    """How many cells a study plans (no model is trained to count them)."""
    return len(plan_cells(study, {m: ModelFacts(m, "", "") for m in study.models}))


def make_plan(study: ResolvedStudy, source: Any, on_model: Callable[[str], None] | None = None) -> Plan:
    """Get every model (training it when missing) and plan the cells."""
    facts: dict[str, ModelFacts] = {}
    errors: dict[str, str] = {}
    for model_id in study.models:
        if on_model:
            on_model(model_id)
        try:
            facts[model_id] = source.facts(model_id)
        except Exception as exc:  # noqa: BLE001 - recorded as failed cells of that model
            errors[model_id] = f"{type(exc).__name__}: {exc}"
            log.error("model %s unavailable: %s", model_id, errors[model_id])
    return Plan(plan_cells(study, facts), facts, errors)


# ----------------------------------------------------------------------------------------------- running


@dataclass
class RunResult:
    """A finished run: its folder and summary."""

    run_dir: Path
    summary: dict[str, Any]


def new_run_dir(study: ResolvedStudy, root: str | os.PathLike | None = None) -> Path:
    """``<root>/<study>/<YYYYmmdd-HHMMSS>-<id>`` (created; a suffix keeps it unique)."""
    base = paths.reports_root(root) / study.name
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = base / f"{stamp}-{study.fingerprint()}"
    n = 2
    while run_dir.exists():
        run_dir = base / f"{stamp}-{study.fingerprint()}-{n}"
        n += 1
    run_dir.mkdir(parents=True)
    return run_dir


class Progress:
    """Progress callbacks of a run (the CLI shows a tqdm bar; the default is silent)."""

    def start(self, total: int, done: int) -> None: ...

    def model(self, model_id: str) -> None: ...

    def cell_started(self, cell: Cell) -> None: ...

    def cell_done(self, cell: Cell, record: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


def run_study(
    study: ResolvedStudy,
    *,
    root: str | os.PathLike | None = None,
    run_dir: str | os.PathLike | None = None,
    executor: Executor | None = None,
    source: Any = None,
    cache: CellCache | None = None,
    use_cache: bool = True,
    progress: Progress | None = None,
    render: bool = True,
) -> RunResult:
    """Run (or resume) a resolved study.

    Args:
        study: from `robustlab.studies.load_study(...).resolve(...)`.
        root: reports root for a new run folder (default ``./reports``).
        run_dir: an existing run folder to resume (its finished cells are reused).
        executor: `LocalExecutor` by default.
        source: where models come from (default `ZooSource`).
        cache: the cross-run cell cache (default under ROBUSTLAB_HOME).
        use_cache: read and fill the cross-run cache.
        progress: progress callbacks.
        render: render report.md / report.html / figures at the end.

    Returns:
        the run folder and its summary.
    """
    t0 = time.perf_counter()
    started = datetime.now(UTC).isoformat(timespec="seconds")
    executor = executor or LocalExecutor()
    source = source or ZooSource()
    cache = cache or CellCache()
    progress = progress or Progress()
    resumed = run_dir is not None
    if resumed:
        run = Path(run_dir)
        if not (run / "study.toml").is_file():
            raise FileNotFoundError(f"{run} is not a run folder (no study.toml)")
    else:
        run = new_run_dir(study, root)
        write_text_atomic(run / "study.toml", study.to_toml())
    cells_dir = run / "cells"
    cells_dir.mkdir(exist_ok=True)
    for stale in cells_dir.glob(".*.tmp"):  # a killed run may leave its last temp file behind
        stale.unlink(missing_ok=True)

    plan = make_plan(study, source, on_model=progress.model)
    write_json_atomic(run / "env.json", environment(study, plan, executor))

    records: dict[str, dict[str, Any]] = {}
    counts = {"reused": 0, "cached": 0, "computed": 0, "failed": 0}
    pending: list[Cell] = []
    for cell in plan.cells:
        if cell.model in plan.model_errors:
            rec = record_skeleton(cell)
            rec.update(status="failed", error=f"model unavailable: {plan.model_errors[cell.model]}")
            records[cell.id] = rec
            write_json_atomic(cells_dir / f"{cell.id}.json", rec)
            counts["failed"] += 1
            continue
        rec = read_record(cells_dir / f"{cell.id}.json", cell.id) if resumed else None
        if rec is not None:
            records[cell.id] = rec
            counts["reused"] += 1
            continue
        rec = cache.get(cell.id) if use_cache else None
        if rec is not None:
            rec = {**rec, "study": cell.study, "part": cell.part, "label": cell.label, "source": "cache"}
            write_json_atomic(cells_dir / f"{cell.id}.json", rec)
            records[cell.id] = rec
            counts["cached"] += 1
            continue
        pending.append(cell)

    progress.start(len(plan.cells), len(plan.cells) - len(pending))

    def on_done(cell: Cell, record: dict[str, Any]) -> None:
        record = {**record, "study": cell.study, "part": cell.part}
        write_json_atomic(cells_dir / f"{cell.id}.json", record)
        records[cell.id] = record
        if record["status"] == "done":
            counts["computed"] += 1
            if use_cache:
                cache.put(record)
        else:
            counts["failed"] += 1
        progress.cell_done(cell, record)

    try:
        executor.run(pending, on_done, progress.cell_started)
    finally:
        progress.close()

    artefacts = 0
    for cell in plan.cells:
        rec = records.get(cell.id) or {}
        if rec.get("status") == "done" and rec.get("artefacts"):
            try:
                artefacts += len(write_artefacts(run, rec))
            except (OSError, ValueError) as exc:
                log.error("artefacts of cell %s not written: %s", cell.id, exc)
    rows = collect_rows(study, plan.cells, records)
    rows += derived_rows(study, rows, run, plan.facts)
    from ..reports.results import write_results

    write_results(run / "results.jsonl", rows)
    failed = [
        {
            "cell": c.id,
            "part": c.part,
            "model": c.model,
            "label": c.label,
            "error": records[c.id].get("error"),
        }
        for c in plan.cells
        if records.get(c.id, {}).get("status") != "done"
    ]
    done = sum(1 for c in plan.cells if records.get(c.id, {}).get("status") == "done")
    summary = {
        "study": study.name,
        "run": run.name,
        "tier": study.tier,
        "limit": study.limit,
        "seeds": list(study.seeds),
        "executor": executor.name,
        "cells_total": len(plan.cells),
        "cells_done": done,
        "cells_reused": counts["reused"],
        "cells_cached": counts["cached"],
        "cells_computed": counts["computed"],
        "cells_failed": len(failed),
        "rows": len(rows),
        "artefacts": artefacts,
        "failed": failed,
        "models_failed": plan.model_errors,
        "parts": {
            p.name: {
                "kind": p.kind,
                "layout": get_kind(p.kind).layout_module,
                "cells": sum(1 for c in plan.cells if c.part == p.name),
                "done": sum(
                    1
                    for c in plan.cells
                    if c.part == p.name and records.get(c.id, {}).get("status") == "done"
                ),
            }
            for p in study.parts
        },
        "compute_s": round(
            sum(
                r.get("timing", {}).get("wall_s", 0.0) for r in records.values() if r.get("source") != "cache"
            ),
            3,
        ),
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "resumed": resumed,
    }
    summary["wall_s"] = round(time.perf_counter() - t0, 3)
    write_json_atomic(run / "summary.json", summary)
    if render:
        from ..reports.render import render_run

        render_run(run)
    return RunResult(run, summary)


def collect_rows(
    study: ResolvedStudy, cells: Sequence[Cell], records: Mapping[str, Mapping[str, Any]]
) -> list[dict[str, Any]]:
    """Result rows of the finished cells, in plan order, with the identity fields first."""
    rows = []
    for cell in cells:
        rec = records.get(cell.id)
        if not rec or rec.get("status") != "done":
            continue
        ident = {
            "study": study.name,
            "part": cell.part,
            "kind": cell.kind,
            "cell": cell.id,
            "model": cell.model,
            "dataset": cell.dataset,
            "seed": cell.seed,
            "tier": cell.tier,
        }
        for row in rec["rows"]:
            rows.append({**ident, **{k: v for k, v in row.items() if k not in ident}})
    return rows


def row_index(
    kind: StudyKind, options: Any, rows: Sequence[Mapping[str, Any]], facts: Mapping[str, ModelFacts]
) -> RowIndex:
    """The rows a part's kind may combine: this run's, then those of the finished run folders it names
    (``kind.inputs(options)``), each with the checkpoint hashes its rows were measured on.

    Raises:
        FileNotFoundError: a named run folder has no ``results.jsonl``.
    """
    from ..reports.results import load_run

    sources = [RowSource("this run", tuple(rows), {m: f.weights_sha256 for m, f in facts.items()})]
    for folder in kind.inputs(options):
        other = load_run(folder)
        weights = {m: str(i.get("weights_sha256")) for m, i in (other.env.get("models") or {}).items()}
        sources.append(RowSource(str(folder), tuple(other.rows), weights))
    return RowIndex(sources)


def derived_rows(
    study: ResolvedStudy, rows: list[dict[str, Any]], run: Path, facts: Mapping[str, ModelFacts] | None = None
) -> list[dict[str, Any]]:
    """Run-level rows of each part (``StudyKind.derive`` on the part's resolved options and its row index),
    marked ``cell = "derived"``; an error (a protocol mismatch, say) becomes a ``derive_error`` row."""
    facts = facts or {}
    out = []
    info = RunInfo(
        study=study.name,
        run_dir=str(run),
        tier=study.tier,
        seeds=study.seeds,
        weights={m: f.weights_sha256 for m, f in facts.items()},
    )
    for part in study.parts:
        kind = get_kind(part.kind)
        try:
            extra = kind.derive(part.options, row_index(kind, part.options, rows, facts), part.name, info)
        except Exception as exc:  # noqa: BLE001 - derived rows must not lose the run's results
            log.error("deriving rows of part %s failed: %s", part.name, exc)
            extra = [{"metric": "derive_error", "value": None, "message": f"{type(exc).__name__}: {exc}"}]
        for row in extra:
            ident = {"study": study.name, "part": part.name, "kind": part.kind, "cell": "derived"}
            out.append({**ident, **{k: v for k, v in row.items() if k not in ident}})
    return out


# ----------------------------------------------------------------------------------------------- env


def environment(study: ResolvedStudy, plan: Plan, executor: Executor) -> dict[str, Any]:
    """env.json: versions, device, git sha, seeds, fingerprints, command line (`robustlab.provenance`)."""
    from .. import __version__, provenance

    versions = provenance.library_versions(("scipy", "seaborn", "matplotlib", "ray"))
    return {
        "robustlab": __version__,
        "python": versions.pop("python"),
        "platform": platform.platform(),
        "versions": versions,
        "device": provenance.device_info(),
        "executor": executor.describe(),
        "git": provenance.git_state(),
        "seeds": list(study.seeds),
        "tier": study.tier,
        "limit": study.limit,
        "models": {
            m: {
                "weights_sha256": f.weights_sha256,
                "dataset": study.models[m].dataset,
                "dataset_fingerprint": f.dataset_fingerprint,
                "test_accuracy": (f.card.get("metrics", {}).get("test", {}) or {}).get("accuracy"),
                "arch": f.card.get("arch", study.models[m].arch),
            }
            for m, f in plan.facts.items()
        },
        "models_failed": plan.model_errors,
        "command": sys.argv,
        "written": datetime.now(UTC).isoformat(timespec="seconds"),
    }


__all__ = [
    "ModelFacts",
    "Plan",
    "Progress",
    "RunResult",
    "ZooSource",
    "count_cells",
    "make_plan",
    "new_run_dir",
    "plan_cells",
    "row_index",
    "derived_rows",
    "run_study",
]
