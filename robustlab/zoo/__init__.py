"""The model zoo: recipes -> trained checkpoints -> models, safely and reproducibly.

Example:
    >>> import robustlab.zoo as zoo
    >>> model = zoo.get_or_train("vggish.base_fsdd")      # trains once, then loads from the store
    >>> test = zoo.dataset_for("vggish.base_fsdd", "test")
    >>> replica = zoo.get_or_train("vggish.base_fsdd@seed1")  # the same recipe trained with seed 1

A seed variant ``<id>@seed<N>`` (`seed_variant`) is a model of its own (its own checkpoint folder); `list`
shows recipes only.
"""

from __future__ import annotations

import contextlib
import fcntl
import fnmatch
import logging
from collections.abc import Iterator
from typing import Any

import torch

from ..models.base import ZooModel, num_parameters
from ..provenance import git_sha, library_versions
from ..train.recipe import Recipe, list_recipes, load_recipe, seed_variant
from .store import (
    CheckpointError,
    external_module,
    find_checkpoint,
    load_checkpoint,
    read_card,
    save_checkpoint,
)

log = logging.getLogger(__name__)


def load(model_id: str) -> ZooModel:
    """Load the newest stored checkpoint of ``model_id`` (hash-verified, eval mode, CPU).

    Raises:
        FileNotFoundError: when the model has not been trained yet (use `get_or_train`).
        CheckpointError: when the stored checkpoint is tampered with or not safetensors.
    """
    folder = find_checkpoint(model_id)
    if folder is None:
        raise FileNotFoundError(
            f"no trained checkpoint for {model_id!r}; train it with "
            f"`python -m robustlab.zoo train {model_id}` or robustlab.zoo.get_or_train({model_id!r})"
        )
    return load_checkpoint(folder)


@contextlib.contextmanager
def _lock(model_id: str) -> Iterator[None]:
    from .store import model_dir

    root = model_dir(model_id)
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "w") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # one trainer per model id across processes (ray workers)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def train(
    model_id: str,
    *,
    epochs: int | None = None,
    device: str | None = None,
    size: str = "default",
    progress: bool = False,
) -> ZooModel:
    """Train ``model_id`` from its recipe and store the checkpoint; returns the model (eval mode, CPU)."""
    from ..train.trainer import train as run_training

    recipe = load_recipe(model_id, size=size)
    external = external_module(recipe.arch)
    if external is not None:  # a non-classifier architecture (e.g. a diffusion model) trains itself
        trained, ext_card = external.train_for_zoo(recipe, epochs=epochs, device=device, progress=progress)
        folder = save_checkpoint(trained, ext_card)
        log.info("stored %s in %s", model_id, folder)
        return load_checkpoint(folder)
    result = run_training(recipe, epochs=epochs, device=device, progress=progress)
    model = result.model
    card: dict[str, Any] = {
        "id": recipe.id,
        "arch": recipe.arch,
        "arch_args": getattr(model, "arch_args", recipe.arch_args),  # an ensemble stores its resolved members
        "model_spec": model.spec.to_dict(),
        "recipe": recipe.to_dict(),
        "dataset": {
            "name": recipe.data.name,
            "options": recipe.data.options,
            "fingerprint": result.dataset_fingerprints.get("train"),
            "fingerprints": result.dataset_fingerprints,
            "spec": result.dataset_spec,
        },
        "metrics": result.metrics,
        "training": {
            "seconds": round(result.seconds, 2),
            "seconds_per_epoch": round(result.seconds_per_epoch, 2),
            "epochs": epochs or recipe.train.epochs,
            "selected_epoch": result.selected_epoch,
            "device": str(device or ("cuda" if torch.cuda.is_available() else "cpu")),
            "torch_threads": torch.get_num_threads(),
            "history": result.history,
            "defense": result.defense,  # switches on, their settings and costs (attack / geometry seconds)
        },
        **({"pretrain": result.pretrain} if result.pretrain else {}),  # [pretrain]: protocol, data, kNN curve
        **({"init": result.init} if result.init else {}),  # [init] source checkpoint; label fraction
        "num_parameters": num_parameters(model),
        "git_sha": git_sha(),
        "versions": library_versions(),
    }
    folder = save_checkpoint(model, card)
    log.info("stored %s in %s (test %s)", model_id, folder, result.metrics.get("test"))
    return load_checkpoint(folder)


def get_or_train(model_id: str, *, device: str | None = None, progress: bool = False) -> ZooModel:
    """Load ``model_id`` if a checkpoint exists, else train it from its recipe first."""
    with _lock(model_id):
        if find_checkpoint(model_id) is None:
            log.info("%s not in the store: training it from its recipe", model_id)
            train(model_id, device=device, progress=progress)
        model = load(model_id)
    if device is not None:
        model.to(device)
    return model


def card(model_id: str) -> dict[str, Any]:
    """The card of the newest stored checkpoint (with its ``path``)."""
    folder = find_checkpoint(model_id)
    if folder is None:
        raise FileNotFoundError(f"no trained checkpoint for {model_id!r}")
    return read_card(folder)


def recipe(model_id: str) -> Recipe:
    """The recipe of ``model_id``."""
    return load_recipe(model_id)


def dataset_for(model_id: str, split: str = "test"):
    """The dataset (with the recipe's options) that ``model_id`` is trained and evaluated on."""
    from .. import data as rdata

    r = load_recipe(model_id)
    return rdata.get(r.data.name, split, **r.data.options)


def list(pattern: str | None = None) -> list[dict[str, Any]]:  # noqa: A001 - the zoo's verb
    """Recipes in the zoo (optionally matching a shell ``pattern``), with whether each is trained."""
    out = []
    for rid in list_recipes():
        if pattern and not fnmatch.fnmatchcase(rid, pattern):
            continue
        r = load_recipe(rid)
        folder = find_checkpoint(rid)
        out.append(
            {
                "id": rid,
                "arch": r.arch,
                "dataset": r.data.name,
                "modalities": _modalities(r),
                "trained": folder is not None,
                "description": r.description,
            }
        )
    return out


def _modalities(r: Recipe) -> list[str]:
    # note: this module's `list` is the zoo's verb, not the builtin
    if r.data.modalities:
        return [*r.data.modalities]
    from ..models import arch_info

    return [*arch_info(r.arch).modalities]


__all__ = [
    "CheckpointError",
    "card",
    "dataset_for",
    "get_or_train",
    "list",
    "load",
    "recipe",
    "seed_variant",
    "train",
]
