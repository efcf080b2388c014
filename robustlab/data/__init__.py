"""Datasets: one registry, one `get`, items and batches as dicts (ARCHITECTURE §3).

Example:
    >>> import robustlab.data as rd
    >>> ds = rd.get("synth-av", "test")
    >>> batch = rd.collate([ds[i] for i in range(8)])
    >>> batch["audio"].shape, batch["visual"].shape, batch["label"].shape
"""

from __future__ import annotations

import os
from typing import Any

from .._registry import Registry
from .base import RobustlabDataset, collate, materialize
from .spec import DatasetSpec, fingerprint

#: name -> builder ``(split, root=None, **options) -> RobustlabDataset``
DATASETS: Registry = Registry("dataset")


def get(name: str, split: str, root: str | os.PathLike | None = None, **options: Any) -> RobustlabDataset:
    """Build dataset ``name``'s ``split``.

    Args:
        name: a registered dataset (see `list_datasets`).
        split: ``"train"``, ``"val"``, ``"test"``, ``"all"`` ... (the dataset's ``spec.splits``).
        root: the dataset root; defaults to ``$ROBUSTLAB_DATA`` (file-based datasets only).
        **options: dataset options (``seed``, ``clip_seconds``, ``sample_rate``, ``on_error``, ...).
    """
    _load_builtin()
    return DATASETS.get(name)(split, root=root, **options)


def list_datasets(pattern: str | None = None) -> list[str]:
    """Registered dataset names."""
    _load_builtin()
    return DATASETS.list(pattern)


def _load_builtin() -> None:
    # Importing the modules registers their datasets; done lazily so `import robustlab.data` stays cheap.
    from . import audioset_csv, esc50, folder, fsdd, speechcommands, synthav  # noqa: F401


__all__ = [
    "DATASETS", "DatasetSpec", "RobustlabDataset", "collate", "fingerprint", "get", "list_datasets",
    "materialize",
]
