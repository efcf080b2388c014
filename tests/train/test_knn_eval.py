"""Weighted kNN with faiss against a brute-force implementation, and the linear probe."""

from __future__ import annotations

import numpy as np
import pytest

from robustlab.train.pretrain.knn import knn_evaluate, linear_probe, weighted_knn_scores


def _brute(
    db: np.ndarray, labels: np.ndarray, q: np.ndarray | None, k: int, tau: float, c: int
) -> np.ndarray:
    dbn = db / np.linalg.norm(db, axis=1, keepdims=True)
    self_query = q is None
    qn = dbn if self_query else q / np.linalg.norm(q, axis=1, keepdims=True)
    sims = qn @ dbn.T
    if self_query:
        np.fill_diagonal(sims, -np.inf)
    out = np.zeros((qn.shape[0], c))
    for i in range(qn.shape[0]):
        top = np.argsort(-sims[i])[:k]
        for j in top:
            out[i, labels[j]] += np.exp(sims[i, j] / tau)
    return out


@pytest.mark.parametrize("self_query", [False, True])
def test_weighted_knn_equals_brute_force(self_query: bool) -> None:
    rng = np.random.default_rng(0)
    db = rng.normal(size=(120, 16))
    labels = rng.integers(0, 4, size=120)
    q = None if self_query else rng.normal(size=(30, 16))
    got = weighted_knn_scores(db, labels, q, k=5, tau=0.4, num_classes=4)
    want = _brute(db, labels, q, 5, 0.4, 4)
    np.testing.assert_allclose(got, want, rtol=1e-4)


def test_knn_evaluate_accuracy_on_clustered_data_and_multilabel() -> None:
    rng = np.random.default_rng(1)
    centres = rng.normal(size=(3, 8)) * 5
    y = np.repeat(np.arange(3), 40)
    x = centres[y] + rng.normal(size=(120, 8))
    ev = knn_evaluate(x[::2], y[::2], x[1::2], y[1::2], k=5, tau=0.4)
    assert ev.accuracy == 1.0 and ev.correct.shape == (60,) and ev.scores.shape == (60, 3)
    hot = np.eye(3)[y]
    ml = knn_evaluate(x[::2], hot[::2], x[1::2], hot[1::2], k=5, tau=0.4)
    assert ml.metrics["mAP"] == pytest.approx(1.0) and ml.accuracy == 1.0
    with pytest.raises(ValueError, match="tau"):
        weighted_knn_scores(x, y, k=5, tau=0.0)
    with pytest.raises(ValueError, match="rows"):
        knn_evaluate(x, y[:-1], x, y)


def test_linear_probe_separates_separable_data_and_not_random_labels() -> None:
    rng = np.random.default_rng(2)
    x = rng.normal(size=(200, 6))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(np.int64)
    good = linear_probe(x[:150], y[:150], x[150:], y[150:], max_iter=50)
    assert good.accuracy >= 0.96
    noise = rng.integers(0, 2, size=200)
    bad = linear_probe(x[:150], noise[:150], x[150:], noise[150:], max_iter=50)
    assert bad.accuracy < 0.75
