"""Result files of a run folder: ``results.jsonl`` (one row per measurement), ``summary.json``, ``env.json``
and the resolved ``study.toml``. Reports are rendered from these files only.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..atomic import write_text_atomic

#: columns every measurement row carries (condition fields of a kind come between ``tier`` and ``metric``)
ROW_FIELDS = (
    "study",
    "part",
    "kind",
    "cell",
    "model",
    "dataset",
    "seed",
    "tier",
    "metric",
    "value",
    "n",
    "ci_low",
    "ci_high",
)


def write_results(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Write rows as JSON lines, atomically; numbers stay numbers, non-finite floats are rejected."""
    text = "".join(json.dumps(dict(r), allow_nan=False, separators=(", ", ": ")) + "\n" for r in rows)
    write_text_atomic(Path(path), text)


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Rows of a ``results.jsonl``.

    Raises:
        ValueError: naming the file and line of a row that is not a JSON object with ``metric``.
    """
    rows = []
    path = Path(path)
    for i, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except ValueError as exc:
            raise ValueError(f"{path}:{i}: not JSON: {exc}") from None
        if not isinstance(row, dict) or "metric" not in row:
            raise ValueError(f"{path}:{i}: a result row must be an object with a 'metric'")
        rows.append(row)
    return rows


@dataclass
class RunFiles:
    """The result files of one run folder, loaded."""

    path: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any] = field(default_factory=dict)
    env: dict[str, Any] = field(default_factory=dict)
    study: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return str(self.summary.get("study") or self.study.get("name") or self.path.parent.name)

    @property
    def run_id(self) -> str:
        return self.path.name


def load_run(run_dir: str | Path) -> RunFiles:
    """Load a run folder's result files.

    Raises:
        FileNotFoundError: the folder has no ``results.jsonl``.
    """
    run = Path(run_dir)
    results = run / "results.jsonl"
    if not results.is_file():
        raise FileNotFoundError(f"{run} is not a finished run folder: no results.jsonl")

    def _json(name: str) -> dict[str, Any]:
        p = run / name
        return json.loads(p.read_text(encoding="utf-8")) if p.is_file() else {}

    study = {}
    if (run / "study.toml").is_file():
        study = tomllib.loads((run / "study.toml").read_text(encoding="utf-8"))
    return RunFiles(run, read_results(results), _json("summary.json"), _json("env.json"), study)


__all__ = ["ROW_FIELDS", "RunFiles", "load_run", "read_results", "write_results"]
