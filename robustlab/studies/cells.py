"""Cells: the unit of work of a study run, their ids, the context a kind computes in, and cell records.

A cell is one (part, model, condition, seed) of a resolved study. Its id hashes everything that fixes its
result: the kind and its version, the model id and checkpoint hash (``card["weights_sha256"]``), the test
split's dataset fingerprint, the condition (grid coordinates *and* protocol settings), the seed, the tier, the
item limit and how the items are drawn (`ITEM_ORDER`). Study and part names are not in the id, so identical
cells of different studies share the cross-run cache.

A cell record (``<run>/cells/<cell-id>.json``)::

    {"format": 1, "cell": "...", "status": "done" | "failed", "kind": ..., "model": ..., "condition": {...},
     "seed": 0, "tier": "smoke", "limit": 128, "rows": [...],            # rows: results, no timings
     "error": null, "traceback": null,
     "artefacts": {name: {"media_type", "sha256", "size", "base64"}},   # only when the cell attached files
     "timing": {"wall_s", "cpu_s", "started", "finished"}, "memory": {"peak_rss_mb", "cuda_peak_mb"},
     "worker": {"executor", "host", "pid", "device", "torch_threads"}}
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import logging
import math
import os
import random
import re
import resource
import socket
import time
import traceback
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from ..atomic import write_bytes_atomic, write_json_atomic, write_text_atomic

log = logging.getLogger(__name__)

RECORD_FORMAT = 1
#: largest file a cell may attach (bytes), and the names it may give it
ARTEFACT_MAX_BYTES = 16 * 2**20
_ARTEFACT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")


@dataclass(frozen=True)
class Cell:
    """One unit of work. ``condition`` is a JSON-able dict (do not mutate it)."""

    study: str
    part: str
    kind: str
    kind_version: int
    kind_module: str
    model: str
    dataset: str
    weights_sha256: str
    dataset_fingerprint: str
    condition: dict[str, Any] = field(hash=False)
    seed: int
    tier: str
    limit: int | None
    label: str = ""

    @property
    def id(self) -> str:
        """The cell id (see `cell_id`)."""
        return cell_id(
            kind=self.kind,
            kind_version=self.kind_version,
            model=self.model,
            weights_sha256=self.weights_sha256,
            dataset_fingerprint=self.dataset_fingerprint,
            condition=self.condition,
            seed=self.seed,
            tier=self.tier,
            limit=self.limit,
        )

    @property
    def derived_seed(self) -> int:
        """The seed torch / numpy / random get for this cell: a hash of (study seed, cell id)."""
        return derive_seed(self.seed, self.id)


def cell_id(
    *,
    kind: str,
    kind_version: int,
    model: str,
    weights_sha256: str,
    dataset_fingerprint: str,
    condition: Mapping[str, Any],
    seed: int,
    tier: str,
    limit: int | None,
) -> str:
    """A 20-hex-character hash of everything that fixes a cell's result (stable across processes)."""
    payload = {
        "kind": kind,
        "kind_version": int(kind_version),
        "model": model,
        "weights_sha256": weights_sha256,
        "dataset_fingerprint": dataset_fingerprint,
        "condition": condition,
        "seed": int(seed),
        "tier": tier,
        "limit": limit,
        "items": ITEM_ORDER,
    }
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()
    return hashlib.sha256(blob).hexdigest()[:20]


def derive_seed(seed: int, cid: str) -> int:
    """A 31-bit seed from the study seed and a cell id."""
    return int.from_bytes(hashlib.sha256(f"{int(seed)}:{cid}".encode()).digest()[:4], "big") & 0x7FFFFFFF


def seed_everything(seed: int) -> None:
    """Seed python's random, numpy's global RNG and torch (all devices)."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ----------------------------------------------------------------------------------------------- context


@functools.lru_cache(maxsize=2)
def _load_model(model_id: str, weights_sha256: str, device: str | None) -> Any:
    from .. import zoo

    model = zoo.get_or_train(model_id, device=device)
    sha = model.card.get("weights_sha256")
    if sha != weights_sha256:
        raise RuntimeError(
            f"model {model_id}: checkpoint hash {sha} differs from the one this cell was planned with "
            f"({weights_sha256}); the zoo changed under the run, re-plan it"
        )
    return model


@functools.lru_cache(maxsize=2)
def _load_dataset(model_id: str, fingerprint: str) -> Any:
    from .. import zoo

    ds = zoo.dataset_for(model_id, "test")
    if ds.spec.fingerprint != fingerprint:
        raise RuntimeError(
            f"model {model_id}: test-split fingerprint {ds.spec.fingerprint} differs from the planned "
            f"{fingerprint}; the dataset changed under the run"
        )
    return ds


@functools.lru_cache(maxsize=2)
def _load_split(model_id: str, split: str, fingerprint: str | None) -> Any:
    from .. import zoo

    ds = zoo.dataset_for(model_id, split)
    if fingerprint is not None and ds.spec.fingerprint != fingerprint:
        raise RuntimeError(
            f"model {model_id}: {split}-split fingerprint {ds.spec.fingerprint} differs from the one the "
            f"checkpoint was trained with ({fingerprint}, its card); the dataset changed since training"
        )
    return ds


@functools.lru_cache(maxsize=4)
def _load_split_items(
    model_id: str, split: str, fingerprint: str | None, limit: int | None, seed: int
) -> dict[str, Any]:
    from ..data import collate

    ds = _load_split(model_id, split, fingerprint)
    n = len(ds)
    if n == 0:
        raise RuntimeError(f"model {model_id}: the {split} split is empty")
    if limit is None or limit >= n:
        index = range(n)
    else:
        index = sorted(np.random.default_rng(seed).choice(n, size=limit, replace=False).tolist())
    return collate([ds[i] for i in index])


#: how a cell's test items are chosen (part of every cell id): the first ``limit`` positions of one fixed
#: seeded permutation of the test split (`test_order`), in that order
ITEM_ORDER = "permutation-seed0"


def test_order(n: int, limit: int | None = None) -> list[int]:
    """The test-split indices a cell with ``limit`` reads, in the order it reads them: the first ``limit``
    entries of the permutation of ``range(n)`` drawn with seed 0 (all of it for ``limit`` None).

    Never the split's first items: a split stored class by class (FSDD and av-digits keep their test split
    digit by digit) would give a limit of 128 only digits 0-4. A fixed permutation keeps every prefix a random
    sample -- the ``check_items`` that a computation takes from the front of its items included -- and nests
    the limits (the 64 items of a smaller limit are the first 64 of a larger one), for every model of a data
    set alike (paired comparisons stay paired).
    """
    order = np.random.default_rng(0).permutation(n).tolist()
    return order if limit is None else order[:limit]


@functools.lru_cache(maxsize=2)
def _load_items(model_id: str, fingerprint: str, limit: int | None) -> dict[str, Any]:
    from ..data import collate

    ds = _load_dataset(model_id, fingerprint)
    index = test_order(len(ds), limit)
    if not index:
        raise RuntimeError(f"model {model_id}: the test split is empty")
    return collate([ds[i] for i in index])


class CellContext:
    """What a kind computes a cell with: its model, its test items, its seed and device.

    Models, datasets and items are cached per process (two of each), so consecutive cells of one model on
    one worker load them once. A computation writes no files; a file a person should get (a sound, say) is
    handed over with `attach` and travels in the cell record, and the runner writes it into the run folder.
    """

    def __init__(self, cell: Cell, device: str | None = None) -> None:
        self.cell = cell
        self.device = device
        self.seed = cell.derived_seed
        self.artefacts: dict[str, dict[str, Any]] = {}

    def attach(self, name: str, data: bytes, media_type: str) -> str:
        """Hand over a file for the run folder (a WAV of a jammer, say); returns its path in the run folder,
        ``artefacts/<cell id>/<name>``, for the cell's rows to cite.

        The bytes travel in the cell record (base64, so the cross-run cache and remote executors keep them);
        the runner writes them when the run is assembled (`write_artefacts`).

        Raises:
            ValueError: a bad or repeated name, or more than `ARTEFACT_MAX_BYTES` bytes.
        """
        if not isinstance(name, str) or not _ARTEFACT_NAME.match(name):
            raise ValueError(
                f"artefact name {name!r} must be 1-128 characters of [A-Za-z0-9_.-], not starting with '.', "
                "'_' or '-'"
            )
        if name in self.artefacts:
            raise ValueError(f"artefact {name!r} is attached twice by cell {self.cell.id}")
        data = bytes(data)
        if len(data) > ARTEFACT_MAX_BYTES:
            raise ValueError(f"artefact {name!r} has {len(data)} bytes; at most {ARTEFACT_MAX_BYTES} allowed")
        self.artefacts[name] = {
            "media_type": str(media_type),
            "sha256": hashlib.sha256(data).hexdigest(),
            "size": len(data),
            "base64": base64.b64encode(data).decode("ascii"),
        }
        return artefact_path(self.cell.id, name)

    def model(self) -> Any:
        """The zoo model (eval mode), checked against the planned checkpoint hash."""
        model = _load_model(self.cell.model, self.cell.weights_sha256, self.device)
        model.eval()
        return model

    def dataset(self) -> Any:
        """The model's test split (``robustlab.zoo.dataset_for(model, "test")``), fingerprint-checked."""
        return _load_dataset(self.cell.model, self.cell.dataset_fingerprint)

    def items(self) -> dict[str, Any]:
        """The cell's ``limit`` test items (a fixed seeded sample of the split, `test_order`) as one batch
        dict (on CPU)."""
        return _load_items(self.cell.model, self.cell.dataset_fingerprint, self.cell.limit)

    def item_indices(self) -> list[int]:
        """Positions of `items` in the test split, in the order `items` holds them."""
        return test_order(len(self.dataset()), self.cell.limit)

    def batches(self, batch_size: int) -> Iterator[dict[str, Any]]:
        """The items in consecutive batches of ``batch_size``, moved to the device."""
        items = self.items()
        n = len(items["label"])
        for start in range(0, n, batch_size):
            yield {k: v[start : start + batch_size].to(self.device or "cpu") for k, v in items.items()}

    def split_items(self, split: str, limit: int | None = None, *, seed: int = 0) -> dict[str, Any]:
        """Items of another split of the model's dataset (``"train"``, ``"val"``) as one batch dict (on CPU).

        ``limit`` items are a seeded random subset (``seed``; all items when ``limit`` is None), so a
        condition that names ``limit`` and ``seed`` fixes them. The split is checked against the fingerprint
        the checkpoint's card recorded for it (the cell id holds the checkpoint hash, so the training data is
        fixed by it).

        Raises:
            RuntimeError: the split changed since the checkpoint was trained, or it is empty.
        """
        card = getattr(self.model(), "card", {}) or {}
        fingerprint = ((card.get("dataset") or {}).get("fingerprints") or {}).get(split)
        return _load_split_items(self.cell.model, split, fingerprint, limit, int(seed))

    def split_batches(
        self, split: str, batch_size: int, limit: int | None = None, *, seed: int = 0
    ) -> Iterator[dict[str, Any]]:
        """`split_items` in consecutive batches of ``batch_size``, moved to the device."""
        items = self.split_items(split, limit, seed=seed)
        n = len(items["label"])
        for start in range(0, n, batch_size):
            yield {k: v[start : start + batch_size].to(self.device or "cpu") for k, v in items.items()}

    @property
    def sample_rate(self) -> int | None:
        """Audio sample rate of the test split."""
        return self.dataset().spec.sample_rate


# ----------------------------------------------------------------------------------------------- records


def execute_cell(cell: Cell, *, executor: str = "local", device: str | None = None) -> dict[str, Any]:
    """Compute one cell and return its record; an exception becomes a ``failed`` record (error + traceback).

    Seeds torch / numpy / random from (study seed, cell id) first, so any executor gives the same values.
    """
    import torch

    from .kinds import get_kind

    started = datetime.now(UTC).isoformat(timespec="seconds")
    t0, c0 = time.perf_counter(), time.process_time()
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    record = record_skeleton(cell)
    try:
        seed_everything(cell.derived_seed)
        kind = get_kind(cell.kind, cell.kind_module)
        ctx = CellContext(cell, device)
        rows = kind.run_cell(cell, ctx)
        record["rows"] = clean_rows(rows, cell)
        if ctx.artefacts:
            record["artefacts"] = ctx.artefacts
        record["status"] = "done"
    except Exception as exc:  # noqa: BLE001 - a failing cell is recorded, the run goes on
        record["status"] = "failed"
        record["error"] = f"{type(exc).__name__}: {exc}"
        record["traceback"] = traceback.format_exc()
        log.warning("cell %s (%s %s) failed: %s", cell.id, cell.model, cell.label, record["error"])
    record["timing"] = {
        "wall_s": round(time.perf_counter() - t0, 4),
        "cpu_s": round(time.process_time() - c0, 4),
        "started": started,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    record["memory"] = {
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "cuda_peak_mb": round(torch.cuda.max_memory_allocated() / 2**20, 1)
        if torch.cuda.is_available()
        else None,
    }
    record["worker"] = {
        "executor": executor,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "device": device or "cpu",
        "torch_threads": torch.get_num_threads(),
    }
    return record


def record_skeleton(cell: Cell) -> dict[str, Any]:
    """The identity part of a cell record."""
    return {
        "format": RECORD_FORMAT,
        "cell": cell.id,
        "status": "pending",
        "study": cell.study,
        "part": cell.part,
        "kind": cell.kind,
        "kind_version": cell.kind_version,
        "model": cell.model,
        "dataset": cell.dataset,
        "weights_sha256": cell.weights_sha256,
        "dataset_fingerprint": cell.dataset_fingerprint,
        "condition": cell.condition,
        "label": cell.label,
        "seed": cell.seed,
        "tier": cell.tier,
        "limit": cell.limit,
        "rows": [],
        "error": None,
        "traceback": None,
    }


def clean_rows(rows: Any, cell: Cell) -> list[dict[str, Any]]:
    """Check a kind's rows (list of dicts with a ``metric`` string and a numeric or null ``value``) and
    make them strict JSON (NaN / inf -> null, numpy / torch scalars -> Python numbers)."""
    if not isinstance(rows, list):
        raise TypeError(f"kind {cell.kind} returned {type(rows).__name__}, expected a list of row dicts")
    out = []
    for i, row in enumerate(rows):
        if not isinstance(row, Mapping) or not isinstance(row.get("metric"), str) or "value" not in row:
            raise TypeError(f"kind {cell.kind} row {i} needs a 'metric' string and a 'value': {row!r}")
        out.append({str(k): to_json(v) for k, v in row.items()})
    return out


def to_json(v: Any) -> Any:
    """Python / numpy / torch values -> strict JSON values (non-finite floats become None)."""
    if hasattr(v, "detach"):
        v = v.detach().cpu()
        v = v.item() if v.numel() == 1 else v.tolist()
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, np.ndarray):
        v = v.tolist()
    if isinstance(v, float):
        return v if math.isfinite(v) else None
    if isinstance(v, Mapping):
        return {str(k): to_json(x) for k, x in v.items()}
    if isinstance(v, list | tuple):
        return [to_json(x) for x in v]
    if v is None or isinstance(v, bool | int | str):
        return v
    raise TypeError(f"cannot store {type(v).__name__} {v!r} in a result row")


def artefact_path(cid: str, name: str) -> str:
    """Where artefact ``name`` of cell ``cid`` lives in a run folder (POSIX, relative)."""
    return f"artefacts/{cid}/{name}"


def write_artefacts(run_dir: Path, record: Mapping[str, Any]) -> list[str]:
    """Write the artefacts a finished cell record carries into ``run_dir`` (atomically; a file already there
    with the same sha256 is kept). Returns their relative paths.

    Raises:
        ValueError: an artefact whose bytes do not match its recorded sha256 or size, or a bad name.
    """
    out = []
    for name, art in (record.get("artefacts") or {}).items():
        if not _ARTEFACT_NAME.match(str(name)):
            raise ValueError(f"cell {record.get('cell')}: bad artefact name {name!r}")
        data = base64.b64decode(art["base64"])
        if hashlib.sha256(data).hexdigest() != art.get("sha256") or len(data) != art.get("size"):
            raise ValueError(f"cell {record.get('cell')}: artefact {name!r} does not match its sha256 / size")
        rel = artefact_path(str(record["cell"]), str(name))
        path = Path(run_dir) / rel
        if not (path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() == art["sha256"]):
            write_bytes_atomic(path, data)
        out.append(rel)
    return out


def read_record(path: Path, expected_id: str | None = None) -> dict[str, Any] | None:
    """A finished cell record at ``path``, or None when missing, unreadable, failed or for another cell."""
    try:
        record = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if (
        not isinstance(record, dict)
        or record.get("status") != "done"
        or record.get("format") != RECORD_FORMAT
    ):
        return None
    if expected_id is not None and record.get("cell") != expected_id:
        return None
    if not isinstance(record.get("rows"), list):
        return None
    return record


__all__ = [
    "ARTEFACT_MAX_BYTES",
    "ITEM_ORDER",
    "Cell",
    "CellContext",
    "artefact_path",
    "cell_id",
    "clean_rows",
    "derive_seed",
    "execute_cell",
    "read_record",
    "record_skeleton",
    "seed_everything",
    "test_order",
    "to_json",
    "write_artefacts",
    "write_json_atomic",
    "write_text_atomic",
]
