"""Shared helpers of the study-kind tests: a minimal `CellContext` around fixed items, the cells of a kind's
conditions for one model, and running them all to report rows (as the runner stores them)."""

from __future__ import annotations

from typing import Any

from robustlab.studies.cells import Cell, clean_rows
from robustlab.studies.kinds import ModelInfo


class ItemsContext:
    """What `CellContext` offers for the test split: ``model()``, ``items()``, ``item_indices()`` and
    ``batches(bs)`` around a model and a fixed batch dict of items (subclass it for splits, sample rates,
    cell metadata)."""

    def __init__(self, model: Any, items: dict, seed: int = 123) -> None:
        self._model, self._items, self.seed, self.device = model, items, seed, None

    def model(self) -> Any:
        return self._model.eval()

    def items(self) -> dict:
        return self._items

    def item_indices(self) -> list[int]:
        return list(range(len(self._items["label"])))

    def batches(self, batch_size: int):
        n = len(self._items["label"])
        for s in range(0, n, batch_size):
            yield {k: v[s : s + batch_size] for k, v in self._items.items()}


def cells(kind: Any, options: Any, info: ModelInfo, *, limit: int, seed: int = 0) -> list[Cell]:
    """The cells of ``kind``'s conditions for the model ``info`` (study "t", part "p", smoke tier)."""
    return [
        Cell(
            study="t",
            part="p",
            kind=kind.name,
            kind_version=kind.version,
            kind_module="",
            model=info.id,
            dataset=info.dataset,
            weights_sha256="x",
            dataset_fingerprint="y",
            condition=c.to_json(),
            seed=seed,
            tier="smoke",
            limit=limit,
        )
        for c in kind.conditions(options, info)
    ]


def run_all(kind: Any, options: Any, info: ModelInfo, ctx: Any, *, limit: int, seed: int = 0) -> list[dict]:
    """The cleaned rows of every cell of ``kind`` for ``info`` on ``ctx``, with the runner's identity keys."""
    rows = []
    for cell in cells(kind, options, info, limit=limit, seed=seed):
        for r in clean_rows(kind.run_cell(cell, ctx), cell):
            ident = {"model": info.id, "kind": kind.name, "part": "p", "seed": seed, "cell": cell.id}
            rows.append({**ident, **r})
    return rows
