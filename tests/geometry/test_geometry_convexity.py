"""Li's convexity with constructed heads and graph convexity on hand-built graphs with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from robustlab.geometry.convexity import graph_convexity, graph_convexity_on_graph, knn_graph, li_convexity

CENTRES = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])


def separable_clusters(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.repeat(np.arange(3), n)
    return CENTRES[y] + rng.uniform(-1.0, 1.0, size=(3 * n, 2)), y


def linear_head(z: torch.Tensor) -> torch.Tensor:
    """Nearest-centre logits, a linear map: -||z - mu_c||^2 / 2 + ||z||^2 / 2 = <mu_c, z> - ||mu_c||^2 / 2."""
    mu = torch.as_tensor(CENTRES, dtype=z.dtype)
    return z @ mu.T - 0.5 * (mu * mu).sum(1)


def test_linear_head_on_separable_clusters_is_fully_convex() -> None:
    z, y = separable_clusters()
    res = li_convexity(z, y, linear_head, pairs_per_class=300, taus=(0.1, 0.5), seed=0)
    assert res.probabilities == "softmax"
    for cls in res.per_class:
        assert cls.endpoint_argmax == 1.0 and cls.endpoint_convexity[0.5] == 1.0  # endpoints all confident
        # softmax regions {p_c >= tau} of a linear head are convex: every mix keeps its class
        assert cls.convexity == {0.1: 1.0, 0.5: 1.0}
        assert cls.argmax == 1.0
        assert cls.pairs == 300
    assert res.summary["convexity"] == {"0.1": 1.0, "0.5": 1.0}
    json.dumps(res.to_dict(), allow_nan=False)


def _blob_head(z: torch.Tensor) -> torch.Tensor:
    """Class 0 outside |x| > 5, class 1 inside (a non-convex class-0 region)."""
    r = z[:, 0].abs() - 5.0
    return torch.stack([2.0 * r, -2.0 * r], 1)


def test_a_class_made_of_two_distant_blobs_is_not_convex() -> None:
    rng = np.random.default_rng(1)
    blobs = np.array([[-10.0, 0.0], [10.0, 0.0], [0.0, 0.0]])  # class 0 left and right, class 1 between
    which = np.repeat([0, 1, 2], 50)
    z = blobs[which] + rng.uniform(-1, 1, size=(150, 2))
    y = np.where(which == 2, 1, 0)
    res = li_convexity(z, y, _blob_head, pairs_per_class=2000, seed=0)
    c0, c1 = res.per_class
    assert c0.endpoint_argmax == 1.0 and c1.endpoint_argmax == 1.0
    # cross-blob pairs (~50/99 of pairs) land inside |x| < 5 for lambda in ~(0.25, 0.75): about 1 - 0.5 * 0.5
    assert 0.65 < c0.argmax < 0.85
    assert c0.convexity[0.5] == c0.argmax  # two classes: p >= 0.5 is the argmax
    assert c1.argmax == 1.0 and c1.convexity[0.1] == 1.0
    assert res.summary["argmax"] == pytest.approx((c0.argmax + 1.0) / 2)


def test_li_convexity_is_seeded() -> None:
    rng = np.random.default_rng(1)
    z = np.concatenate([rng.normal(-3, 2, (40, 2)), rng.normal(3, 2, (40, 2))])
    y = np.repeat([0, 1], 40)
    head = torch.nn.Linear(2, 2)
    with torch.no_grad():
        head.weight.copy_(torch.tensor([[-1.0, 0.3], [1.0, -0.3]]))
        head.bias.zero_()
    a = li_convexity(z, y, head, pairs_per_class=50, seed=4).to_dict()
    b = li_convexity(z, y, head, pairs_per_class=50, seed=4).to_dict()
    c = li_convexity(z, y, head, pairs_per_class=50, seed=5).to_dict()
    assert a == b
    assert a["per_class"] != c["per_class"]


def test_multi_hot_labels_use_sigmoid() -> None:
    z = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0], [0.0, 2.0]])
    labels = np.array([[1, 0], [1, 0], [0, 1], [1, 1]])
    res = li_convexity(z, labels, lambda t: 4.0 * t - 1.0, pairs_per_class=20)
    assert res.probabilities == "sigmoid"
    assert [c.count for c in res.per_class] == [3, 2]


def test_li_convexity_errors() -> None:
    z, y = separable_clusters(5)
    with pytest.raises(ValueError, match="taus"):
        li_convexity(z, y, linear_head, taus=(1.0,))
    with pytest.raises(ValueError, match=r"\(B, K\) logits"):
        li_convexity(z, y, lambda t: t.sum(1))
    with pytest.raises(ValueError, match="2 logits for 3 classes"):
        li_convexity(z, y, lambda t: t)
    with pytest.raises(ValueError, match="14 labels for 15"):
        li_convexity(z, y[:-1], linear_head)


def _graph(n: int, edges: list[tuple[int, int, float]]) -> sp.csr_matrix:
    r, c, w = zip(*edges, strict=True)
    return sp.csr_matrix((w, (r, c)), shape=(n, n))


def test_graph_convexity_on_a_path_graph() -> None:
    # 0 - 1 - 2 - 3 - 4 with node 2 of class 1: of class 0's 6 pairs only (0, 1) and (3, 4) avoid node 2
    g = _graph(5, [(0, 1, 1.0), (1, 2, 1.0), (2, 3, 1.0), (3, 4, 1.0)])
    res = graph_convexity_on_graph(g, np.array([0, 0, 1, 0, 0]))
    c0, c1 = res.per_class
    assert (c0.pairs, c0.reachable, c0.exhaustive) == (6, 6, True)
    assert c0.convexity == pytest.approx(2 / 6)
    # interior shares: (0,1) 1, (0,3) 1/2, (0,4) 2/3, (1,3) 0, (1,4) 1/2, (3,4) 1
    assert c0.node_fraction == pytest.approx((1 + 0.5 + 2 / 3 + 0 + 0.5 + 1) / 6)
    assert c0.mean_hops == pytest.approx((1 + 3 + 4 + 2 + 3 + 1) / 6)
    assert (c1.count, c1.pairs, c1.convexity) == (1, 0, None)
    assert res.summary["convexity"] == pytest.approx(1 / 3) and res.summary["classes"] == 1
    json.dumps(res.to_dict(), allow_nan=False)


@pytest.mark.parametrize(("detour", "expected"), [(1.5, 0.0), (0.9, 1.0)])
def test_graph_convexity_follows_edge_weights(detour: float, expected: float) -> None:
    # 0 -1- 1 -1- 2 (node 1 of class 1) versus 0 -d- 3 -d- 2 (all class 0): the weights pick the path
    g = _graph(4, [(0, 1, 1.0), (1, 2, 1.0), (0, 3, detour), (3, 2, detour)])
    res = graph_convexity_on_graph(g, np.array([0, 1, 0, 0]))
    c0 = res.per_class[0]
    assert c0.pairs == 3  # (0, 2), (0, 3), (2, 3): the last two are direct edges
    assert c0.convexity == pytest.approx((2 + expected) / 3)


def test_unreachable_pairs_are_counted_apart() -> None:
    g = _graph(4, [(0, 1, 1.0), (2, 3, 1.0)])  # two components, class 0 = {0, 2}, class 1 = {1, 3}
    res = graph_convexity_on_graph(g, np.array([0, 1, 0, 1]))
    assert all(c.reachable == 0 and c.convexity is None for c in res.per_class)
    assert res.summary["unreachable_fraction"] == 1.0 and res.summary["convexity"] is None


def test_graph_pairs_are_sampled_above_the_limit() -> None:
    z, y = separable_clusters(40)
    res = graph_convexity(z, y, k=5, max_pairs_per_class=100, seed=0)
    for cls in res.per_class:
        assert cls.pairs == 100 and not cls.exhaustive
        assert cls.convexity == 1.0  # well-separated clusters: paths never leave the class
    assert res.settings["k"] == 5 and res.settings["weighted"] is True


def test_knn_graph_is_symmetric_with_distance_weights() -> None:
    x = np.array([[0.0], [1.0], [3.0], [10.0]])
    g = knn_graph(x, k=1)
    assert (g != g.T).nnz == 0
    dense = g.toarray()
    # nearest neighbours: 0 -> 1, 1 -> 0, 2 -> 1, 3 -> 2; the union of both directions, weight = distance
    expected = np.array([[0, 1, 0, 0], [1, 0, 2, 0], [0, 2, 0, 7], [0, 0, 7, 0]], dtype=float)
    np.testing.assert_array_equal(dense, expected)
    assert (knn_graph(x, k=1, weighted=False).toarray() == (expected > 0)).all()
