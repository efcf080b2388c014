"""Class density on constructed point sets with closed-form answers."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from robustlab.geometry.density import class_density, mean_distance, membership

SIDES = (0.1, 2.0)  # edge lengths: class 0 tight, class 1 loose
SEP = 100.0


def simplex_classes() -> tuple[np.ndarray, np.ndarray]:
    """Two classes of 6 points each, every class a regular simplex (all pairwise distances = its edge),
    class 1 shifted by SEP along an extra axis: z = side / sqrt(2) * e_i (+ SEP * e_6)."""
    pts, labels = [], []
    for c, side in enumerate(SIDES):
        for i in range(6):
            p = np.zeros(7)
            p[i] = side / math.sqrt(2.0)
            p[6] = c * SEP
            pts.append(p)
            labels.append(c)
    return np.array(pts), np.array(labels)


def test_tight_and_loose_clusters_have_their_known_density() -> None:
    x, y = simplex_classes()
    res = class_density(x, y, ks=(5, 10), class_names=["tight", "loose"])
    tight, loose = res.per_class
    assert (tight.name, tight.count, loose.name) == ("tight", 6, "loose")
    # 5 nearest same-class neighbours = the 5 other vertices at distance = the edge
    assert tight.knn_distance[5] == pytest.approx(0.1, rel=1e-5)
    assert loose.knn_distance[5] == pytest.approx(2.0, rel=1e-5)
    assert tight.knn_distance[10] is None and loose.knn_distance[10] is None  # only 5 same-class neighbours
    # far-apart classes: all 5 nearest are same-class; of 10 nearest, 5 are
    assert tight.same_class_fraction == {5: 1.0, 10: 0.5}
    assert loose.same_class_fraction == {5: 1.0, 10: 0.5}
    assert tight.chance_fraction == pytest.approx(5 / 11)
    # inter, with s = side / sqrt(2): ||s0 e_i - s1 e_j - SEP e_6||^2 = (s0 - s1)^2 + SEP^2 for i == j
    # (1 in 6), s0^2 + s1^2 + SEP^2 otherwise
    s0, s1 = (s / math.sqrt(2.0) for s in SIDES)
    inter = (math.sqrt((s0 - s1) ** 2 + SEP**2) + 5 * math.sqrt(s0**2 + s1**2 + SEP**2)) / 6
    assert tight.intra_distance == pytest.approx(0.1, rel=1e-6)
    assert loose.intra_distance == pytest.approx(2.0, rel=1e-6)
    assert tight.inter_distance == pytest.approx(inter, rel=1e-6)
    assert tight.intra_inter_ratio == pytest.approx(0.1 / inter, rel=1e-6)
    assert loose.intra_inter_ratio == pytest.approx(2.0 / inter, rel=1e-6)
    assert res.summary["knn_distance"]["5"] == pytest.approx(1.05, rel=1e-5)
    assert res.summary["knn_distance"]["10"] is None
    assert res.summary["same_class_fraction_micro"]["10"] == pytest.approx(0.5)
    json.dumps(res.to_dict(), allow_nan=False)


def test_interleaved_classes_have_the_known_same_class_fraction() -> None:
    # class 0 at 0, 2, ..., 18 and class 1 at 1, 3, ..., 19 on a line: the 2 nearest neighbours of an interior
    # point are its two other-class neighbours; the end points (0 and 19) see one other-class point at 1 and
    # one same-class point at 2
    x = np.stack([np.arange(20.0), np.zeros(20)], 1)
    y = np.arange(20) % 2
    res = class_density(x, y, ks=(2,))
    for cls in res.per_class:
        assert cls.same_class_fraction[2] == pytest.approx(0.05)  # (0.5 + 9 * 0) / 10
        # same-class spacing 2: interior members see {2, 2} (8 of them), the two class ends {2, 4}
        assert cls.knn_distance[2] == pytest.approx((8 * 2.0 + 2 * 3.0) / 10)


def test_cosine_metric_is_scale_free() -> None:
    x, y = simplex_classes()
    a = class_density(x, y, ks=(3,), metric="cosine")
    b = class_density(7.5 * x, y, ks=(3,), metric="cosine")
    for ca, cb in zip(a.per_class, b.per_class, strict=True):
        assert ca.knn_distance[3] == pytest.approx(cb.knn_distance[3], rel=1e-5, abs=1e-6)
        assert ca.intra_inter_ratio == pytest.approx(cb.intra_inter_ratio, rel=1e-5)


def test_subsampled_intra_inter_is_close_to_exact() -> None:
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.normal(0, 1, (300, 4)), rng.normal(3, 1, (300, 4))])
    y = np.repeat([0, 1], 300)
    exact = class_density(x, y, ks=(5,), max_points=1000)
    sub = class_density(x, y, ks=(5,), max_points=100, seed=1)
    for e, s in zip(exact.per_class, sub.per_class, strict=True):
        assert s.intra_inter_ratio == pytest.approx(e.intra_inter_ratio, rel=0.1)
        assert s.knn_distance == e.knn_distance  # kNN terms never subsample


def test_mean_distance_matches_torch() -> None:
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(50, 3)), rng.normal(size=(30, 3))
    full = torch.cdist(torch.from_numpy(a), torch.from_numpy(a))
    assert mean_distance(a, block=7) == pytest.approx(float(full.sum() / (50 * 49)), rel=1e-9)
    cross = torch.cdist(torch.from_numpy(a), torch.from_numpy(b)).mean()
    assert mean_distance(a, b, block=7) == pytest.approx(float(cross), rel=1e-9)
    assert mean_distance(a[:1]) is None


def test_multi_hot_labels_count_a_point_in_each_of_its_classes() -> None:
    m = membership(np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=np.float32))
    np.testing.assert_array_equal(m, [[True, False, True], [False, True, False], [True, True, False]])
    x = np.array([[0.0], [1.0], [2.0], [10.0]])
    res = class_density(x, np.array([[1, 0], [1, 1], [1, 0], [0, 1]]), ks=(1,))
    assert [c.count for c in res.per_class] == [3, 2]


@pytest.mark.parametrize(
    ("labels", "match"),
    [
        (np.array([0, -1]), ">= 0"),
        (np.array([0.5, 1.0]), "integers"),
        (np.zeros((2, 2, 2)), "class indices"),
        (np.array([0, 3]), "out of range"),
    ],
)
def test_bad_labels_raise(labels, match) -> None:
    with pytest.raises(ValueError, match=match):
        membership(labels, num_classes=2 if match == "out of range" else None)


def test_label_count_and_ks_are_checked() -> None:
    x = np.ones((4, 2))
    with pytest.raises(ValueError, match="3 labels for 4 embeddings"):
        class_density(x, np.array([0, 1, 0]))
    with pytest.raises(ValueError, match="distinct positive"):
        class_density(x, np.array([0, 1, 0, 1]), ks=(0,))
