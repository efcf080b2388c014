"""faiss kNN search: exact index == brute force (torch.cdist), approximate recall, self-exclusion, errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from robustlab.geometry.knn import knn_search, resolve_index_kind

N, D, K = 3000, 16, 10


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    return np.random.default_rng(0).normal(size=(N, D)).astype(np.float32)


def _brute(xq: np.ndarray, xb: np.ndarray, k: int, self_query: bool, metric: str = "l2"):
    q, b = torch.from_numpy(xq).double(), torch.from_numpy(xb).double()
    if metric == "cosine":
        q, b = torch.nn.functional.normalize(q, dim=1), torch.nn.functional.normalize(b, dim=1)
        dist = 1.0 - q @ b.T
    else:
        dist = torch.cdist(q, b)
    if self_query:
        dist.fill_diagonal_(float("inf"))
    d, i = dist.topk(k, largest=False)
    return d.numpy(), i.numpy()


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b)) / truth.shape[1] for a, b in zip(found, truth, strict=True)]))


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_exact_index_equals_cdist_self_query(points: np.ndarray, metric: str) -> None:
    dist, idx = knn_search(points, k=K, metric=metric)  # n <= threshold: the flat index
    bd, bi = _brute(points, points, K, True, metric)
    assert dist.shape == idx.shape == (N, K)
    assert dist.dtype == np.float32 and idx.dtype == np.int64
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_allclose(dist, bd, atol=1e-4)
    assert (idx != np.arange(N)[:, None]).all()
    assert (np.diff(dist, axis=1) >= -1e-6).all()  # nearest first


def test_exact_index_equals_cdist_separate_queries(points: np.ndarray) -> None:
    queries = torch.from_numpy(np.random.default_rng(1).normal(size=(200, D))).double()  # torch, float64
    dist, idx = knn_search(points, queries, k=K, index="flat")
    bd, bi = _brute(queries.float().numpy(), points, K, False)
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_allclose(dist, bd, atol=1e-4)


@pytest.mark.parametrize("metric", ["l2", "cosine"])
def test_hnsw_recall_at_10(points: np.ndarray, metric: str) -> None:
    _, truth = _brute(points, points, K, True, metric)
    dist, idx = knn_search(points, k=K, metric=metric, index="hnsw")
    assert dist.shape == idx.shape == (N, K)
    assert _recall(idx, truth) >= 0.95
    assert (idx != np.arange(N)[:, None]).all()


def test_ivf_recall_at_10(points: np.ndarray) -> None:
    _, truth = _brute(points, points, K, True)
    lists = 40
    _, idx = knn_search(points, k=K, index="ivf", nlist=lists, nprobe=lists // 2, seed=3)
    assert _recall(idx, truth) >= 0.95


def test_auto_switches_to_the_approximate_index_above_the_threshold(points: np.ndarray) -> None:
    assert resolve_index_kind("auto", 100, 100, "hnsw") == "flat"
    assert resolve_index_kind("auto", 101, 100, "hnsw") == "hnsw"
    assert resolve_index_kind("auto", 101, 100, "ivf") == "ivf"
    assert resolve_index_kind("flat", 10**9, 100, "hnsw") == "flat"
    small = points[:500]
    auto = knn_search(small, k=5, approx_threshold=100)
    hnsw = knn_search(small, k=5, index="hnsw")
    np.testing.assert_array_equal(auto.indices, hnsw.indices)


def test_duplicates_are_neighbours_and_self_is_excluded() -> None:
    x = np.array([[0.0, 0.0], [0.0, 0.0], [5.0, 0.0], [7.0, 0.0]], dtype=np.float32)
    dist, idx = knn_search(x, k=1)
    np.testing.assert_array_equal(idx[:, 0], [1, 0, 3, 2])
    np.testing.assert_allclose(dist[:, 0], [0.0, 0.0, 2.0, 2.0])


@pytest.mark.parametrize(
    ("database", "kwargs", "match"),
    [
        (np.zeros(5), {}, "2-D"),
        (np.zeros((0, 3)), {}, "at least one row"),
        (np.array([[0.0, np.nan], [1.0, 1.0]]), {"k": 1}, "NaN"),
        (np.array([[0.0, np.inf], [1.0, 1.0]]), {"k": 1}, "NaN or infinite"),
        (np.ones((4, 2)), {"k": 4}, "larger than the 3"),
        (np.ones((4, 2)), {"k": 0}, "positive integer"),
        (np.ones((4, 2)), {"metric": "manhattan", "k": 1}, "metric"),
        (np.ones((4, 2)), {"index": "lsh", "k": 1}, "index"),
        (np.array([[0.0, 0.0], [1.0, 1.0]]), {"metric": "cosine", "k": 1}, "zero norm"),
        (np.array([["a", "b"], ["c", "d"]]), {"k": 1}, "real numbers"),
    ],
)
def test_bad_inputs_raise_clear_errors(database, kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        knn_search(database, **kwargs)


def test_query_dimension_mismatch_raises() -> None:
    with pytest.raises(ValueError, match="dimension 3 but the database has 2"):
        knn_search(np.ones((4, 2)), np.ones((2, 3)), k=1)
