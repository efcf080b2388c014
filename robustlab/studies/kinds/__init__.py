"""Study kinds: one registry (`KINDS`) of `StudyKind` subclasses, found by the ``kind`` key of study files.

Each built-in kind is a folder (``attack_sweep/``, ``noise_sweep/``) with one job per module: ``plan``
(options and typed conditions), ``compute`` (a registry of cell computations), optionally ``derive``
(run-level rows from the row index the runner hands over) and ``layout`` (its report layout, registered with
`robustlab.reports.layouts`). They are imported on first use, so importing this package is cheap. The recipe
for a new kind is in ``studies/README.md``; the registration is::

    from robustlab.studies.kinds import KINDS, StudyKind

    @KINDS.register("my_kind")
    class MyKind(StudyKind):
        ...
"""

from __future__ import annotations

import importlib

from ..._registry import Registry
from .base import (
    CellComputations,
    Condition,
    ModelInfo,
    ProtocolMismatch,
    RowIndex,
    RowSource,
    RunInfo,
    StudyKind,
)

#: name -> StudyKind subclass
KINDS: Registry = Registry("study kind")

_BUILTIN = (
    "attack_sweep", "noise_sweep", "sharpness", "geometry", "defenses", "domains", "fusion", "jammer",
    "pretraining", "architectures", "diffusion", "augment",
)


def _load_builtin() -> None:
    for module in _BUILTIN:
        importlib.import_module(f"{__name__}.{module}")


def get_kind(name: str, module: str | None = None) -> StudyKind:
    """An instance of the kind registered as ``name``.

    Args:
        name: registry name.
        module: a module to import first when ``name`` is not registered yet (kinds defined outside the
            package, e.g. on a Ray worker that has not imported them).

    Raises:
        RegistryError: naming the unknown kind and the known ones.
    """
    _load_builtin()
    if name not in KINDS and module:
        importlib.import_module(module)
    cls = KINDS.get(name)
    return cls()


def list_kinds() -> list[str]:
    """Registered kind names."""
    _load_builtin()
    return KINDS.list()


__all__ = [
    "KINDS",
    "CellComputations",
    "Condition",
    "ModelInfo",
    "ProtocolMismatch",
    "RowIndex",
    "RowSource",
    "RunInfo",
    "StudyKind",
    "get_kind",
    "list_kinds",
]
