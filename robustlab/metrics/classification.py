"""Classification metrics for single-label (CE) and multi-label (BCE) heads, with bootstrap intervals.

All functions take numpy arrays or torch tensors and return plain floats (JSON-friendly).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
from scipy.special import ndtri


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x)


def accuracy(logits: Any, labels: Any) -> float:
    """Top-1 accuracy of ``logits`` (N, K) against int labels (N,)."""
    logits, labels = _np(logits), _np(labels)
    if len(labels) == 0:
        return float("nan")
    return float((logits.argmax(axis=1) == labels).mean())


def correct(logits: Any, labels: Any) -> np.ndarray:
    """Per-example correctness (N,) as float: top-1 for single-label, all-bits-right for multi-label."""
    logits, labels = _np(logits), _np(labels)
    if labels.ndim == 2:
        return ((logits > 0) == (labels > 0.5)).all(axis=1).astype(np.float64)
    return (logits.argmax(axis=1) == labels).astype(np.float64)


def _average_precision(scores: np.ndarray, targets: np.ndarray) -> float:
    order = np.argsort(-scores, kind="stable")
    t = targets[order]
    n_pos = t.sum()
    if n_pos == 0:
        return float("nan")
    hits = np.cumsum(t)
    precision = hits / np.arange(1, len(t) + 1)
    return float((precision * t).sum() / n_pos)


def _auc(scores: np.ndarray, targets: np.ndarray) -> float:
    pos, neg = scores[targets > 0.5], scores[targets <= 0.5]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    # Mann-Whitney U with average ranks for ties.
    from scipy.stats import rankdata

    ranks = rankdata(np.concatenate([pos, neg]))
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def _multi_hot(labels: np.ndarray, num_classes: int) -> np.ndarray:
    if labels.ndim == 2:
        return (labels > 0.5).astype(np.float64)
    out = np.zeros((len(labels), num_classes))
    out[np.arange(len(labels)), labels.astype(int)] = 1.0
    return out


def mean_average_precision(logits: Any, labels: Any) -> float:
    """Macro mAP over classes that have at least one positive (one-vs-rest for single-label)."""
    scores = _np(logits).astype(np.float64)
    targets = _multi_hot(_np(labels), scores.shape[1])
    aps = [_average_precision(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    aps = [a for a in aps if not math.isnan(a)]
    return float(np.mean(aps)) if aps else float("nan")


def mean_auc(logits: Any, labels: Any) -> float:
    """Macro ROC AUC over classes with both positives and negatives."""
    scores = _np(logits).astype(np.float64)
    targets = _multi_hot(_np(labels), scores.shape[1])
    aucs = [_auc(scores[:, k], targets[:, k]) for k in range(scores.shape[1])]
    aucs = [a for a in aucs if not math.isnan(a)]
    return float(np.mean(aucs)) if aucs else float("nan")


def d_prime(auc: float) -> float:
    """Sensitivity index d' = sqrt(2) * Phi^-1(AUC), as reported by AudioSet papers."""
    if math.isnan(auc):
        return float("nan")
    auc = min(max(auc, 1e-6), 1 - 1e-6)
    return float(math.sqrt(2.0) * ndtri(auc))


def expected_calibration_error(logits: Any, labels: Any, bins: int = 15) -> float:
    """ECE of the top-1 softmax confidence (single-label)."""
    logits, labels = _np(logits).astype(np.float64), _np(labels)
    z = logits - logits.max(axis=1, keepdims=True)
    probs = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    conf, pred = probs.max(axis=1), probs.argmax(axis=1)
    hit = (pred == labels).astype(np.float64)
    edges = np.linspace(0, 1, bins + 1)
    ece = 0.0
    for lo, hi in zip(edges[:-1], edges[1:]):
        mask = (conf > lo) & (conf <= hi)
        if mask.any():
            ece += mask.mean() * abs(hit[mask].mean() - conf[mask].mean())
    return float(ece)


def summarize(logits: Any, labels: Any) -> dict[str, float]:
    """The headline metrics: accuracy always; mAP, AUC and d' for multi-label heads."""
    labels_np = _np(labels)
    if labels_np.ndim == 2:
        auc = mean_auc(logits, labels)
        return {
            "accuracy": float(correct(logits, labels).mean()),
            "mAP": mean_average_precision(logits, labels),
            "AUC": auc,
            "d_prime": d_prime(auc),
        }
    return {"accuracy": accuracy(logits, labels)}


def bootstrap_ci(
    values: Any,
    statistic: Callable[[np.ndarray], float] = np.mean,
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap interval of ``statistic`` over per-example ``values`` (seeded, reproducible)."""
    v = _np(values).astype(np.float64)
    if len(v) == 0:
        return (float("nan"), float("nan"))
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(v), size=(n_boot, len(v)))
    if statistic is np.mean:
        stats = v[idx].mean(axis=1)
    else:
        stats = np.array([statistic(v[i]) for i in idx])
    alpha = (1 - level) / 2
    return (float(np.quantile(stats, alpha)), float(np.quantile(stats, 1 - alpha)))
