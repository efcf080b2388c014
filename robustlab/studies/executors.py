"""Executors run planned cells and hand each record back as it finishes: ``local`` (in this process, one
cell after another) and ``ray`` (one Ray task per cell; ``ray.init()`` starts a local cluster unless an
address is given or ``RAY_ADDRESS`` is set). Both call `robustlab.studies.cells.execute_cell`, which seeds
from (study seed, cell id), so they give identical rows.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from .._registry import Registry
from .cells import Cell, execute_cell, record_skeleton

log = logging.getLogger(__name__)

#: name -> Executor class
EXECUTORS: Registry = Registry("executor")

OnStart = Callable[[Cell], None]
OnDone = Callable[[Cell, dict[str, Any]], None]


class Executor:
    """Runs cells; calls ``on_start(cell)`` when one begins (when known) and ``on_done(cell, record)``."""

    name = ""

    def run(self, cells: Sequence[Cell], on_done: OnDone, on_start: OnStart | None = None) -> None:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        """JSON-able facts for env.json."""
        return {"name": self.name}


def _default_device() -> str | None:
    import torch

    return "cuda" if torch.cuda.is_available() else None


@EXECUTORS.register("local")
class LocalExecutor(Executor):
    """Cells one after another in this process.

    Args:
        device: torch device for models and batches (default: ``cuda`` when available, else CPU).
    """

    name = "local"

    def __init__(self, device: str | None = None) -> None:
        self.device = device if device is not None else _default_device()

    def run(self, cells: Sequence[Cell], on_done: OnDone, on_start: OnStart | None = None) -> None:
        for cell in cells:
            if on_start:
                on_start(cell)
            on_done(cell, execute_cell(cell, executor=self.name, device=self.device))

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, "device": self.device or "cpu"}


def _ray_task(cell: Cell, device: str | None, threads: int | None) -> dict[str, Any]:
    if threads:
        import torch

        # same intra-op thread count as the driver: float reductions (and so borderline predictions) do not
        # depend on how Ray sized the worker (it sets OMP_NUM_THREADS to the task's CPUs)
        torch.set_num_threads(threads)
    return execute_cell(cell, executor="ray", device=device)


@EXECUTORS.register("ray")
class RayExecutor(Executor):
    """One Ray task per cell.

    Args:
        address: a Ray cluster address (default: ``RAY_ADDRESS``, else a local cluster via ``ray.init()``).
        num_cpus: CPUs for a local cluster (default: all).
        gpus_per_task: GPUs each task requests (default: 1 when the cluster has GPUs, else 0).
        cpus_per_task: CPUs each task requests.
        threads: torch intra-op threads in each task (default: this process's ``torch.get_num_threads()``,
            so results match the local executor bit for bit).
    """

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        gpus_per_task: float | None = None,
        cpus_per_task: float = 1.0,
        threads: int | None = None,
    ) -> None:
        self.address = address or os.environ.get("RAY_ADDRESS") or None
        self.num_cpus = num_cpus
        self.gpus_per_task = gpus_per_task
        self.cpus_per_task = cpus_per_task
        self.threads = threads
        self._facts: dict[str, Any] = {}

    def _init(self) -> Any:
        try:
            import ray
        except ImportError as exc:
            raise RuntimeError("the ray executor needs ray: pip install 'robustlab[distributed]'") from exc
        if not ray.is_initialized():
            if self.address:
                ray.init(address=self.address, logging_level=logging.WARNING)
            else:
                # local workers are children of this process: give them our import path (kinds registered
                # from modules outside the package, a checkout that is not installed)
                entries = [p for p in sys.path if p and os.path.isdir(p)]
                old = os.environ.get("PYTHONPATH")
                os.environ["PYTHONPATH"] = os.pathsep.join([os.getcwd(), *entries])
                try:
                    ray.init(
                        num_cpus=self.num_cpus,
                        include_dashboard=False,
                        logging_level=logging.WARNING,
                        configure_logging=True,
                    )
                finally:
                    if old is None:
                        os.environ.pop("PYTHONPATH", None)
                    else:
                        os.environ["PYTHONPATH"] = old
        return ray

    def run(self, cells: Sequence[Cell], on_done: OnDone, on_start: OnStart | None = None) -> None:
        if not cells:
            return
        ray = self._init()
        resources = ray.cluster_resources()
        gpus = self.gpus_per_task
        if gpus is None:
            gpus = 1.0 if resources.get("GPU", 0) > 0 else 0.0
        device = "cuda" if gpus > 0 else None
        self._facts = {
            "address": self.address or "local",
            "resources": dict(resources),
            "gpus_per_task": gpus,
        }
        task = ray.remote(_ray_task).options(num_cpus=self.cpus_per_task, num_gpus=gpus, max_retries=0)
        import torch

        threads = self.threads or torch.get_num_threads()
        self._facts["threads"] = threads
        pending = {task.remote(cell, device, threads): cell for cell in cells}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                cell = pending.pop(ref)
                try:
                    record = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - a worker crash fails the cell, not the run
                    record = record_skeleton(cell)
                    record.update(status="failed", error=f"{type(exc).__name__}: {exc}", traceback=str(exc))
                on_done(cell, record)

    def describe(self) -> dict[str, Any]:
        return {"name": self.name, **self._facts}


def make_executor(name: str, **kwargs: Any) -> Executor:
    """An executor by name (``local`` or ``ray``)."""
    return EXECUTORS.get(name)(**kwargs)


__all__ = ["EXECUTORS", "Executor", "LocalExecutor", "RayExecutor", "make_executor"]
