"""Fine-tuning from a stored checkpoint (recipe ``[init]``): copy its front-end and encoder into a freshly
built model whose head is new, optionally freezing everything but the head.

The source model must have the same architecture and arch args as the recipe's; every parameter and buffer
outside the head (``head.*``) must exist in it with the same shape (a mismatch names the keys). The
front-end's normalisation statistics come with the weights: the encoder was trained on them.

Example:
    >>> model = create(recipe.arch, spec, **recipe.arch_args)
    >>> info = initialize_from(model, InitFrom("vggish.npid_synthav"))
    >>> info["copied"], info["new"]          # counts of copied tensors and the head's new ones
"""

from __future__ import annotations

import json
import logging
from typing import Any

import torch
from torch import nn

log = logging.getLogger(__name__)

#: state-dict prefix of the part that is rebuilt for the target dataset
HEAD_PREFIX = "head."


def _json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, default=str)


def copy_backbone(model: nn.Module, source: nn.Module, *, where: str = "source") -> dict[str, Any]:
    """Copy every state-dict entry of ``source`` outside ``head.*`` into ``model`` (in place).

    Returns:
        ``{"copied": n, "new": [head keys kept at their fresh initialisation]}``.

    Raises:
        ValueError: ``model`` has no ``head``, or a non-head key is missing from ``source`` or has another
            shape.
    """
    if not isinstance(getattr(model, "head", None), nn.Module):
        raise ValueError(f"{type(model).__name__} has no `head` module: fine-tuning from {where} needs a "
                         "model split into a backbone and a head")
    mine, theirs = model.state_dict(), source.state_dict()
    missing = [k for k in mine if not k.startswith(HEAD_PREFIX) and k not in theirs]
    shape = [f"{k} {tuple(theirs[k].shape)} -> {tuple(mine[k].shape)}" for k in mine
             if not k.startswith(HEAD_PREFIX) and k in theirs and theirs[k].shape != mine[k].shape]
    if missing or shape:
        raise ValueError(f"{where}: weights do not fit the model outside its head; missing {missing[:5]}, "
                         f"shape mismatches {shape[:5]}")
    new_state = {k: (v if k.startswith(HEAD_PREFIX) else theirs[k].to(v.dtype)) for k, v in mine.items()}
    model.load_state_dict(new_state, strict=True)
    return {"copied": sum(1 for k in mine if not k.startswith(HEAD_PREFIX)),
            "new": sorted(k for k in mine if k.startswith(HEAD_PREFIX))}


def freeze_backbone(model: nn.Module) -> int:
    """Stop gradients everywhere but the head; returns the number of frozen parameter tensors."""
    n = 0
    for name, p in model.named_parameters():
        if not name.startswith(HEAD_PREFIX):
            p.requires_grad_(False)
            n += 1
    return n


def frozen_train_mode(model: nn.Module) -> None:
    """Training mode for the head only: every other submodule (BatchNorm, dropout) is put in eval mode, so a
    frozen backbone's running statistics stay those of the checkpoint."""
    model.train()
    for name, child in model.named_children():
        if f"{name}." != HEAD_PREFIX:
            child.eval()


def initialize_from(model: nn.Module, init: Any) -> dict[str, Any]:
    """Start ``model`` from the checkpoint of zoo model ``init.source`` (trained on demand).

    Args:
        model: a freshly built zoo model (``arch`` and ``arch_args`` set by `robustlab.models.create`).
        init: a `robustlab.train.recipe.InitFrom`.

    Returns:
        What the card records: source id, its weights sha256 and card facts (pre-training, epochs), counts of
        copied and new tensors, whether the backbone is frozen.

    Raises:
        ValueError: another architecture or other arch args, or weights that do not fit (see `copy_backbone`).
    """
    from ... import zoo

    src = zoo.get_or_train(init.source)
    card = getattr(src, "card", {}) or {}
    if card.get("arch") != getattr(model, "arch", None) or _json(card.get("arch_args")) != _json(
        getattr(model, "arch_args", None)
    ):
        raise ValueError(
            f"[init] from = {init.source!r} is arch {card.get('arch')!r} with args {card.get('arch_args')}; "
            f"the recipe builds {getattr(model, 'arch', None)!r} with {getattr(model, 'arch_args', None)}: "
            "they must match outside the head"
        )
    counts = copy_backbone(model, src, where=init.source)
    frozen = freeze_backbone(model) if init.freeze_backbone else 0
    info = {
        "from": init.source,
        "weights_sha256": card.get("weights_sha256"),
        "source_dataset": (card.get("dataset") or {}).get("name"),
        "source_pretrain": {k: v for k, v in (card.get("pretrain") or {}).items() if k != "history"},
        "source_epochs": (card.get("training") or {}).get("epochs"),
        "copied": counts["copied"],
        "new": len(counts["new"]),
        "freeze_backbone": bool(init.freeze_backbone),
        "frozen_parameters": frozen,
    }
    log.info("initialised from %s (%d tensors copied, head new%s)", init.source, counts["copied"],
             ", backbone frozen" if frozen else "")
    return info


def trainable(model: nn.Module) -> list[torch.nn.Parameter]:
    """Parameters that still require gradients."""
    return [p for p in model.parameters() if p.requires_grad]


__all__ = [
    "HEAD_PREFIX", "copy_backbone", "freeze_backbone", "frozen_train_mode", "initialize_from", "trainable"
]
