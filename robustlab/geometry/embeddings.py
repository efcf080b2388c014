"""Per-modality embeddings of a zoo model on a dataset split (batched, eval mode, no grad).

Example:
    >>> emb = extract_embeddings(model, dataset, batch_size=64)
    >>> emb.vectors["audio"].shape, emb.vectors["fused"].shape, emb.labels.shape
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from ..data import collate

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Embeddings:
    """Embeddings of a set of examples.

    Attributes:
        vectors: embedding key (``"audio"``, ``"visual"``, ``"fused"``) -> (n, D) float32 array.
        labels: (n,) int64 class indices or (n, K) float32 multi-hot labels.
        indices: (n,) int64 positions of the examples in the source dataset / batch.
        logits: (n, K) float32 logits of the full model (``model(inputs)``), when requested.
    """

    vectors: dict[str, np.ndarray]
    labels: np.ndarray
    indices: np.ndarray
    logits: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.indices.shape[0])


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with ``model`` in eval mode, restoring its previous train/eval mode afterwards."""
    was_training = model.training
    model.eval()
    try:
        yield model
    finally:
        model.train(was_training)


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter or buffer (CPU for a model without any)."""
    for t in [*model.parameters(), *model.buffers()]:
        return t.device
    return torch.device("cpu")


def _size(data: Any) -> int:
    if isinstance(data, Mapping):
        if "label" not in data:
            raise KeyError(f"a batch dict needs a 'label' entry; it has {sorted(data)}")
        return int(data["label"].shape[0])
    if not hasattr(data, "__len__") or not hasattr(data, "__getitem__"):
        raise TypeError(f"data must be a dataset (len + getitem) or a batch dict; got {type(data).__name__}")
    return len(data)


def _batch(data: Any, idx: np.ndarray) -> dict[str, Tensor]:
    if isinstance(data, Mapping):
        t = torch.as_tensor(idx)
        return {k: v[t] for k, v in data.items() if isinstance(v, Tensor)}
    return collate([data[int(i)] for i in idx])


def select_indices(n: int, max_items: int | None, seed: int) -> np.ndarray:
    """All of ``range(n)``, or a sorted seeded uniform subsample of ``max_items`` of them."""
    if max_items is None or max_items >= n:
        return np.arange(n, dtype=np.int64)
    if max_items < 1:
        raise ValueError(f"max_items must be >= 1 or None; got {max_items}")
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(n, size=int(max_items), replace=False)).astype(np.int64)


def extract_embeddings(
    model: nn.Module,
    data: Any,
    *,
    keys: Sequence[str] | None = None,
    batch_size: int = 64,
    max_items: int | None = None,
    seed: int = 0,
    with_logits: bool = False,
) -> Embeddings:
    """``model.embed`` on every example of ``data`` (or a seeded subsample), in eval mode without grad.

    The model's train/eval mode is restored afterwards; inputs are sent to the model's device.

    Args:
        model: a `robustlab.models.base.ZooModel` (anything with ``embed(inputs) -> dict`` and ``spec``).
        data: a dataset whose items follow the batch contract, or a batch dict (with ``label``).
        keys: embedding keys to keep (default: every key ``embed`` returns).
        batch_size: examples per forward pass.
        max_items: use at most this many examples (a sorted seeded uniform subsample).
        seed: seed of that subsample.
        with_logits: also run ``model(inputs)`` and keep the logits (costs a second forward pass).

    Returns:
        `Embeddings`.

    Raises:
        KeyError: when a requested key is not among the model's embeddings.
        ValueError: on ``batch_size < 1``, an empty dataset, or non-finite embeddings.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    n = _size(data)
    if n == 0:
        raise ValueError("cannot extract embeddings from an empty dataset")
    order = select_indices(n, max_items, seed)
    device = model_device(model)
    modalities = tuple(getattr(getattr(model, "spec", None), "modalities", ()))
    chunks: dict[str, list[np.ndarray]] = {}
    labels, logits = [], []
    with eval_mode(model), torch.no_grad():
        for s in range(0, order.size, batch_size):
            batch = _batch(data, order[s : s + batch_size])
            inputs = {m: batch[m].to(device) for m in (modalities or [k for k in batch if k != "label"])}
            emb = model.embed(inputs)
            wanted = tuple(keys) if keys is not None else tuple(emb)
            missing = [k for k in wanted if k not in emb]
            if missing:
                raise KeyError(f"model embeddings have keys {sorted(emb)}; missing requested {missing}")
            for k in wanted:
                chunks.setdefault(k, []).append(emb[k].detach().float().flatten(1).cpu().numpy())
            labels.append(batch["label"].cpu().numpy())
            if with_logits:
                logits.append(model(inputs).detach().float().cpu().numpy())
    vectors = {k: np.ascontiguousarray(np.concatenate(v, 0), dtype=np.float32) for k, v in chunks.items()}
    for k, v in vectors.items():
        if not np.isfinite(v).all():
            raise ValueError(f"embedding {k!r} holds NaN or infinite values")
    log.debug("extracted %s embeddings of %d examples", sorted(vectors), order.size)
    return Embeddings(
        vectors=vectors,
        labels=np.concatenate(labels, 0),
        indices=order,
        logits=np.concatenate(logits, 0) if with_logits else None,
    )


__all__ = ["Embeddings", "eval_mode", "extract_embeddings", "model_device", "select_indices"]
