"""Evaluation of embeddings without fine-tuning: the weighted kNN vote of NPID (faiss search through
`robustlab.geometry.knn.knn_search`) and a linear probe.

Weighted kNN (Wu et al. 2018, the DLS protocol: K = 5, tau = 0.4): each query's ``k`` nearest database rows
by cosine similarity ``s_j`` vote for their class with weight ``exp(s_j / tau)``; the class with the largest
total wins. Multi-hot labels vote for each of their classes.

Linear probe: a logistic-regression (softmax, or per-class sigmoid for multi-label) classifier fitted on
standardised frozen embeddings with full-batch L-BFGS, evaluated on held-out embeddings.

Example:
    >>> ev = knn_evaluate(train_emb, train_labels, test_emb, test_labels, k=5, tau=0.4)
    >>> ev.accuracy, ev.correct.shape
    >>> probe = linear_probe(train_emb, train_labels, test_emb, test_labels)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ...geometry.knn import as_matrix, knn_search
from ...metrics.classification import correct as correct_of
from ...metrics.classification import summarize


@dataclass(frozen=True)
class KNNEval:
    """A classifier's predictions on queries.

    Attributes:
        scores: (m, C) class scores (kNN: summed vote weights; probe: logits).
        correct: (m,) per-query correctness (0/1 floats; multi-label: all classes right at score > 0).
        metrics: `robustlab.metrics.classification.summarize` of the scores (``accuracy``; mAP for
            multi-label).
    """

    scores: np.ndarray
    correct: np.ndarray
    metrics: dict[str, float]

    @property
    def accuracy(self) -> float:
        return float(self.metrics["accuracy"])


def _labels(labels: Any, n: int, name: str) -> np.ndarray:
    arr = labels.detach().cpu().numpy() if hasattr(labels, "detach") else np.asarray(labels)
    if arr.shape[0] != n:
        raise ValueError(f"{name} has {arr.shape[0]} rows but its embeddings have {n}")
    return arr


def _one_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.ndim == 2:
        return (labels > 0.5).astype(np.float64)
    if labels.min() < 0 or labels.max() >= num_classes:
        raise ValueError(f"class labels must lie in [0, {num_classes}); got {labels.min()}..{labels.max()}")
    return np.eye(num_classes, dtype=np.float64)[labels.astype(np.int64)]


def weighted_knn_scores(
    database: Any,
    labels: Any,
    queries: Any | None = None,
    *,
    k: int = 5,
    tau: float = 0.4,
    num_classes: int | None = None,
    threads: int | None = None,
) -> np.ndarray:
    """Summed vote weights ``exp(cos / tau)`` of each query's ``k`` nearest database rows per class.

    Args:
        database: (n, d) embeddings (normalised here; the cosine metric of `knn_search`).
        labels: (n,) class indices or (n, C) multi-hot labels of the database rows.
        queries: (m, d) query embeddings, or None for leave-one-out on the database.
        k: neighbours.
        tau: vote temperature.
        num_classes: C (default: ``max(label) + 1`` or the multi-hot width).
        threads: faiss threads.

    Returns:
        (m, C) float64 vote totals.

    Raises:
        ValueError: bad shapes, ``k``, ``tau`` or labels (see `knn_search`).
    """
    if not tau > 0:
        raise ValueError(f"tau must be > 0; got {tau!r}")
    xb = as_matrix(database, "database")
    lab = _labels(labels, xb.shape[0], "labels")
    c = int(num_classes if num_classes is not None else (lab.shape[1] if lab.ndim == 2 else lab.max() + 1))
    hot = _one_hot(lab, c)
    dist, idx = knn_search(xb, queries, k=k, metric="cosine", index="flat", threads=threads)
    weights = np.exp((1.0 - dist.astype(np.float64)) / tau)  # (m, k): exp(similarity / tau)
    return np.einsum("mk,mkc->mc", weights, hot[idx])


def knn_evaluate(
    database: Any,
    labels: Any,
    queries: Any,
    query_labels: Any,
    *,
    k: int = 5,
    tau: float = 0.4,
    num_classes: int | None = None,
) -> KNNEval:
    """Weighted kNN classification of labelled queries against a labelled database (see
    `weighted_knn_scores`); ``accuracy`` is top-1 for class labels."""
    q_lab = _labels(query_labels, as_matrix(queries, "queries").shape[0], "query_labels")
    db_lab = _labels(labels, as_matrix(database, "database").shape[0], "labels")
    if num_classes is None:
        num_classes = int(db_lab.shape[1] if db_lab.ndim == 2 else max(db_lab.max(), q_lab.max()) + 1)
    scores = weighted_knn_scores(database, db_lab, queries, k=k, tau=tau, num_classes=num_classes)
    if q_lab.ndim == 2:  # multi-label: a class is predicted when it holds at least half of the vote mass
        logits = np.log(np.maximum(scores, 1e-300)) - np.log(
            np.maximum(scores.sum(1, keepdims=True) - scores, 1e-300))
    else:
        logits = scores
    return KNNEval(scores, correct_of(logits, q_lab), summarize(logits, q_lab))


def linear_probe(
    train: Any,
    train_labels: Any,
    test: Any,
    test_labels: Any,
    *,
    weight_decay: float = 1e-4,
    max_iter: int = 200,
    num_classes: int | None = None,
    seed: int = 0,
) -> KNNEval:
    """Logistic regression on frozen embeddings (standardised with the training mean and std), fitted by
    full-batch L-BFGS with an L2 penalty ``weight_decay * ||W||^2``; evaluated on ``test``.

    Raises:
        ValueError: bad shapes or labels, ``max_iter < 1`` or a negative ``weight_decay``.
    """
    if max_iter < 1 or weight_decay < 0:
        raise ValueError(f"max_iter must be >= 1 and weight_decay >= 0; got {max_iter}, {weight_decay}")
    xtr = torch.from_numpy(as_matrix(train, "train")).double()
    xte = torch.from_numpy(as_matrix(test, "test")).double()
    ytr = _labels(train_labels, xtr.shape[0], "train_labels")
    yte = _labels(test_labels, xte.shape[0], "test_labels")
    multilabel = ytr.ndim == 2
    c = int(num_classes if num_classes is not None else (ytr.shape[1] if multilabel else ytr.max() + 1))
    mean, std = xtr.mean(0), xtr.std(0).clamp(min=1e-8)
    xtr, xte = (xtr - mean) / std, (xte - mean) / std
    g = torch.Generator().manual_seed(int(seed))
    w = (0.01 * torch.randn(xtr.shape[1], c, generator=g, dtype=torch.float64)).requires_grad_(True)
    b = torch.zeros(c, dtype=torch.float64, requires_grad=True)
    target = torch.from_numpy(ytr).double() if multilabel else torch.from_numpy(ytr.astype(np.int64))
    opt = torch.optim.LBFGS([w, b], max_iter=max_iter, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        z = xtr @ w + b
        loss = F.binary_cross_entropy_with_logits(z, target) if multilabel else F.cross_entropy(z, target)
        loss = loss + weight_decay * (w * w).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    with torch.no_grad():
        logits = (xte @ w + b).numpy()
    return KNNEval(logits, correct_of(logits, yte), summarize(logits, yte))


__all__ = ["KNNEval", "knn_evaluate", "linear_probe", "weighted_knn_scores"]


def embedding_evaluation(
    model: Any,
    train: Any,
    test: Any,
    *,
    key: str = "fused",
    k: int = 5,
    tau: float = 0.4,
    probe: bool = True,
    batch_size: int = 64,
    max_train_items: int | None = None,
    seed: int = 0,
) -> dict[str, KNNEval]:
    """Weighted kNN (and a linear probe) of any model's embeddings: ``model.embed(inputs)[key]`` of the
    ``train`` examples form the labelled database, those of ``test`` are the queries.

    Args:
        model: a zoo model (``embed`` and ``spec``).
        train / test: datasets or batch dicts (with ``label``), see
            `robustlab.geometry.embeddings.extract_embeddings`.
        key: embedding key (``"fused"``, ``"audio"``, ...).
        k / tau: kNN neighbours and vote temperature.
        probe: also fit a linear probe.
        batch_size: examples per forward pass.
        max_train_items: a seeded subsample of the database.
        seed: seed of that subsample and of the probe.

    Returns:
        ``{"knn": KNNEval, "probe": KNNEval}`` (``probe`` only when asked).
    """
    from ...geometry.embeddings import extract_embeddings

    num_classes = int(model.spec.num_classes)
    db = extract_embeddings(model, train, keys=[key], batch_size=batch_size, max_items=max_train_items,
                            seed=seed)
    q = extract_embeddings(model, test, keys=[key], batch_size=batch_size)
    out = {"knn": knn_evaluate(db.vectors[key], db.labels, q.vectors[key], q.labels, k=k, tau=tau,
                               num_classes=num_classes)}
    if probe:
        out["probe"] = linear_probe(db.vectors[key], db.labels, q.vectors[key], q.labels,
                                    num_classes=num_classes, seed=seed)
    return out


__all__ += ["embedding_evaluation"]
