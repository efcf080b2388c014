"""The cross-run cell cache: finished cell records under ``$ROBUSTLAB_HOME/cache/cells/<id[:2]>/<id>.json``.

Any run of any study that plans a cell with the same id (same model weights, test data, condition, seed,
tier and limit) takes the record from here instead of computing it. Failed cells are never cached.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from .. import paths
from ..atomic import write_json_atomic
from .cells import read_record


class CellCache:
    """Finished cell records keyed by cell id.

    Args:
        root: the cache folder (default ``robustlab.paths.cache_dir("cells")``, made on first use).
    """

    def __init__(self, root: str | Path | None = None) -> None:
        self._root = Path(root) if root is not None else None

    @property
    def root(self) -> Path:
        if self._root is None:
            self._root = paths.cache_dir("cells")
        return self._root

    def path(self, cid: str) -> Path:
        return self.root / cid[:2] / f"{cid}.json"

    def get(self, cid: str) -> dict[str, Any] | None:
        """The finished record of cell ``cid``, or None."""
        return read_record(self.path(cid), cid)

    def put(self, record: dict[str, Any]) -> None:
        """Store a finished record (failed ones are ignored)."""
        if record.get("status") == "done":
            write_json_atomic(self.path(record["cell"]), record)

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable finished record (for lookups across runs, e.g. attack results of a model)."""
        if not self.root.is_dir():
            return
        for f in sorted(self.root.glob("*/*.json")):
            try:
                rec = json.loads(f.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                continue
            if isinstance(rec, dict) and rec.get("status") == "done":
                yield rec
