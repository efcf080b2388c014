"""Studies: ``python -m robustlab.studies list | show | run | report | compare``.

A study file (``<name>.toml``) names one or more *parts*, each of a kind (``attack_sweep``, ``noise_sweep``,
...), with zoo models, an option grid, tiers (``smoke`` for CPU minutes, ``full`` for a GPU) and seeds.
The runner expands it into cells, reuses finished cells (run folder, then the cross-run cache), computes the
rest with an executor (``local`` or ``ray``) and renders the report from the result files.

Example:
    >>> from robustlab.studies import load_study, run_study
    >>> study = load_study("quickstart").resolve("smoke", ["limit=16"])
    >>> result = run_study(study)
    >>> result.run_dir / "report.html"
"""

from __future__ import annotations

from .cache import CellCache
from .cells import Cell, CellContext, cell_id
from .executors import EXECUTORS, LocalExecutor, RayExecutor, make_executor
from .kinds import KINDS, ModelInfo, RunInfo, StudyKind, get_kind, list_kinds
from .runner import ModelFacts, ZooSource, count_cells, run_study
from .spec import ResolvedStudy, StudyError, StudySpec, find_study, list_studies, load_study

__all__ = [
    "EXECUTORS",
    "KINDS",
    "Cell",
    "CellCache",
    "CellContext",
    "LocalExecutor",
    "ModelFacts",
    "ModelInfo",
    "RayExecutor",
    "ResolvedStudy",
    "RunInfo",
    "StudyError",
    "StudyKind",
    "StudySpec",
    "ZooSource",
    "cell_id",
    "count_cells",
    "find_study",
    "get_kind",
    "list_kinds",
    "list_studies",
    "load_study",
    "make_executor",
    "run_study",
]
