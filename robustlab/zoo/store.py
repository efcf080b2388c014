"""The checkpoint store: ``$ROBUSTLAB_HOME/checkpoints/<model-id>/<sha8>/{model.safetensors, card.json}``.

Weights are only ever read through safetensors, after their sha256 matches the card: a tampered file is
refused with an error that says so, and a pickle posing as a checkpoint fails to parse without running
anything. A card carries what it takes to rebuild its model (architecture, args, model spec).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from .. import paths
from ..atomic import write_json_atomic as _write_json_atomic
from ..models.base import ModelSpec, ZooModel

FORMAT_VERSION = 1
WEIGHTS = "model.safetensors"
CARD = "card.json"

#: zoo architectures that are not classifiers (not in `robustlab.models.MODELS`): arch -> the module that
#: validates their recipes (``check_recipe(recipe)``), trains them from one (``train_for_zoo(recipe, *,
#: epochs, device, progress) -> (model, card)``) and rebuilds a stored one (``build_from_card(card)``)
EXTERNAL_ARCHS: dict[str, str] = {"diffusion": "robustlab.diffusion.training"}


def external_module(arch: str) -> Any:
    """The module of a non-classifier zoo architecture (see `EXTERNAL_ARCHS`), or None for a classifier."""
    import importlib

    name = EXTERNAL_ARCHS.get(arch)
    return importlib.import_module(name) if name else None


class CheckpointError(RuntimeError):
    """A checkpoint is missing, tampered with, or not a safetensors file."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def model_dir(model_id: str) -> Path:
    return paths.checkpoints_dir() / model_id


def write_json_atomic(path: Path, obj: Any) -> None:
    """Write a card as JSON atomically (`robustlab.atomic`): sorted keys, indent 2, non-JSON values as str."""
    _write_json_atomic(path, obj, indent=2, sort_keys=True, allow_nan=True, default=str)


def save_checkpoint(model: ZooModel, card: dict[str, Any]) -> Path:
    """Store ``model``'s state_dict and its card; returns the checkpoint folder.

    The folder is assembled under a temporary name and renamed into place, so a crash leaves nothing
    half-written behind.
    """
    root = model_dir(card["id"])
    root.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=".tmp-"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
        # one metadata key only: safetensors writes its metadata map in random order, and the file hash must
        # be a function of the weights alone
        save_file(state, str(tmp / WEIGHTS), metadata={"format": "pt"})
        digest = sha256_file(tmp / WEIGHTS)
        full = {
            **card,
            "format_version": FORMAT_VERSION,
            "weights_sha256": digest,
            "created_at": card.get("created_at") or time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        write_json_atomic(tmp / CARD, full)
        final = root / digest[:8]
        if final.exists() and _intact(final, digest):
            shutil.rmtree(tmp)  # identical weights already stored
            return final
        if final.exists():  # a damaged copy of the same weights: replace it
            shutil.rmtree(final)
        os.replace(tmp, final)
        return final
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _intact(folder: Path, digest: str) -> bool:
    weights = folder / WEIGHTS
    return weights.is_file() and (folder / CARD).is_file() and sha256_file(weights) == digest


def read_card(folder: Path) -> dict[str, Any]:
    path = Path(folder) / CARD
    try:
        card = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no card.json in checkpoint folder") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: card is not valid JSON ({exc})") from None
    if card.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: card format_version {card.get('format_version')!r}, expected {FORMAT_VERSION}"
        )
    for key in ("id", "arch", "arch_args", "model_spec", "weights_sha256"):
        if key not in card:
            raise CheckpointError(f"{path}: card lacks {key!r}")
    card["path"] = str(Path(folder).resolve())
    return card


def find_checkpoint(model_id: str) -> Path | None:
    """The newest stored checkpoint folder of ``model_id`` (by card time), or None."""
    root = model_dir(model_id)
    if not root.is_dir():
        return None
    best, best_time = None, ""
    for folder in root.iterdir():
        if folder.name.startswith(".") or not (folder / CARD).is_file():
            continue
        try:
            created = json.loads((folder / CARD).read_text()).get("created_at", "")
        except (OSError, json.JSONDecodeError):
            created = ""
        if best is None or created > best_time:
            best, best_time = folder, created
    return best


def verified_state_dict(folder: Path, card: dict[str, Any]) -> dict[str, torch.Tensor]:
    """Weights of a checkpoint, after checking their sha256 against the card; safetensors only."""
    weights = Path(folder) / WEIGHTS
    if not weights.is_file():
        raise CheckpointError(f"{weights}: missing weights file")
    digest = sha256_file(weights)
    if digest != card["weights_sha256"]:
        raise CheckpointError(
            f"{weights}: sha256 mismatch (card says {card['weights_sha256'][:16]}..., file hashes to "
            f"{digest[:16]}...); the weights were modified or corrupted — refusing to load"
        )
    try:
        return load_file(str(weights))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{weights}: not a valid safetensors file ({exc}); refusing to load") from None


def load_checkpoint(folder: Path) -> ZooModel:
    """Rebuild the model described by the folder's card and load its verified weights (eval mode)."""
    from .. import models as rmodels

    card = read_card(folder)
    state = verified_state_dict(folder, card)
    external = external_module(card["arch"])
    if external is not None:
        model = external.build_from_card(card)
    else:
        spec = ModelSpec.from_dict(card["model_spec"])
        model = rmodels.create(card["arch"], spec, **card["arch_args"])
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise CheckpointError(f"{folder}: weights do not fit architecture {card['arch']!r}: {exc}") from None
    model.eval()
    model.card = card
    return model
