"""Base class of robustlab datasets: items follow the batch contract of ARCHITECTURE §3."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset

from .spec import DatasetSpec


class RobustlabDataset(Dataset):
    """A map-style dataset whose items are dicts: ``audio`` (T,) float32 in [-1, 1], ``visual`` (C, H, W)
    float32 in [0, 1], ``label`` int64 scalar or (K,) float32 multi-hot.

    Subclasses set ``self.spec`` (a `DatasetSpec`) and implement ``__len__`` / ``__getitem__``.
    ``problems`` lists ``{"file", "problem"}`` for inputs skipped with ``on_error="skip"``.
    """

    spec: DatasetSpec
    problems: list[dict[str, str]]

    def __init__(self) -> None:
        self.problems = []

    def __len__(self) -> int:  # pragma: no cover - abstract
        raise NotImplementedError

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.spec.name!r}, split={self.spec.split!r}, n={len(self)})"


def collate(items: Sequence[Mapping[str, Any]]) -> dict[str, torch.Tensor]:
    """Stack a list of items into a batch dict (same keys, leading batch dimension).

    Raises:
        ValueError: on an empty list or items with different keys or shapes.
    """
    if not items:
        raise ValueError("collate: got an empty list of items")
    keys = set(items[0])
    out: dict[str, torch.Tensor] = {}
    for i, item in enumerate(items):
        if set(item) != keys:
            raise ValueError(f"collate: item {i} has keys {sorted(item)}, expected {sorted(keys)}")
    for key in sorted(keys):
        values = [torch.as_tensor(item[key]) for item in items]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ValueError(f"collate: {key!r} has differing shapes {sorted(shapes)}")
        out[key] = torch.stack(values)
    return out


def materialize(dataset: Dataset, indices: Sequence[int] | None = None) -> dict[str, torch.Tensor]:
    """All items of ``dataset`` (or ``indices``) stacked into one batch dict held in memory.

    Small audio datasets (FSDD, synth-av) fit easily; training and evaluation then slice tensors instead of
    going through a DataLoader.
    """
    idx = range(len(dataset)) if indices is None else indices
    return collate([dataset[i] for i in idx])
