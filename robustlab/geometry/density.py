"""kNN density of each class in an embedding space.

For every class ``c`` (members ``M_c``, ``n_c`` of them) and every ``k`` in ``ks``:

- **knn_distance[k]**: the mean distance from a member of ``c`` to its ``k`` nearest *other members of c*
  (``None`` when ``n_c - 1 < k``): small = a dense class;
- **same_class_fraction[k]**: among the ``k`` nearest neighbours of a member of ``c`` in the *whole* set, the
  mean fraction that belongs to ``c`` (kNN label purity; compare with ``chance_fraction`` =
  ``(n_c - 1) / (n - 1)``, the value for randomly placed points);

and per class, independent of ``k``:

- **intra_distance**: the mean distance between two distinct members of ``c``;
- **inter_distance**: the mean distance between a member of ``c`` and a non-member;
- **intra_inter_ratio** = intra / inter: below 1 the class is more compact than its separation from the rest
  (scale-free, unlike the distances).

The intra / inter means are exact up to ``max_points`` members (and non-members) per class and estimated from
a seeded uniform subsample above it. Labels are class indices (n,) or a multi-hot (n, K) matrix; with
multi-hot labels a point belongs to every class it is tagged with.

Example:
    >>> result = class_density(embeddings, labels, ks=(5, 10, 20))
    >>> result.summary["same_class_fraction"]["10"], result.per_class[0].intra_inter_ratio
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .knn import METRICS, as_matrix, knn_search, normalize_rows, pairwise_distances

log = logging.getLogger(__name__)

DEFAULT_KS: tuple[int, ...] = (5, 10, 20)


def membership(labels: Any, num_classes: int | None = None) -> np.ndarray:
    """A boolean (n, C) matrix: ``m[i, c]`` is True when point ``i`` belongs to class ``c``.

    Args:
        labels: (n,) integer class indices, or (n, K) multi-hot labels (``> 0.5`` = member).
        num_classes: C (default: the largest index + 1, or K).

    Raises:
        ValueError: on other shapes, negative or non-integer indices, NaNs, or indices >= ``num_classes``.
    """
    if hasattr(labels, "detach"):
        labels = labels.detach().cpu().numpy()
    arr = np.asarray(labels)
    if arr.ndim == 2:
        if not np.issubdtype(arr.dtype, np.number) or np.isnan(arr.astype(np.float64)).any():
            raise ValueError("multi-hot labels must be numbers without NaN")
        if num_classes is not None and arr.shape[1] != num_classes:
            raise ValueError(f"multi-hot labels have {arr.shape[1]} columns but num_classes={num_classes}")
        return np.ascontiguousarray(arr > 0.5)
    if arr.ndim != 1:
        raise ValueError(f"labels must be (n,) class indices or (n, K) multi-hot; got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        as_int = arr.astype(np.int64)
        if not np.array_equal(as_int, arr):
            raise ValueError(f"class-index labels must be integers; got dtype {arr.dtype} with fractions")
        arr = as_int
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < 0:
        raise ValueError(f"class indices must be >= 0; got {int(arr.min())}")
    c = int(num_classes) if num_classes is not None else (int(arr.max()) + 1 if arr.size else 0)
    if arr.size and arr.max() >= c:
        raise ValueError(f"class index {int(arr.max())} out of range for num_classes={c}")
    out = np.zeros((arr.size, c), dtype=bool)
    out[np.arange(arr.size), arr] = True
    return out


def _num(x: float | None) -> float | None:
    """A JSON-safe float: None for None / NaN / inf."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def _mean_or_none(values: Sequence[float | None]) -> float | None:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def _sample(idx: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    if idx.size <= limit:
        return idx
    return np.sort(rng.choice(idx, size=limit, replace=False))


def mean_distance(
    a: np.ndarray, b: np.ndarray | None = None, *, metric: str = "l2", block: int = 2048
) -> float | None:
    """The mean distance between the rows of ``a`` and of ``b`` (blocked, float64); with ``b`` None the mean
    over distinct pairs of rows of ``a`` (None when ``a`` has fewer than two rows, or ``b`` is empty).

    For ``cosine`` the rows must already be L2-normalised.
    """
    if b is None:
        n = a.shape[0]
        if n < 2:
            return None
        total = 0.0
        for s in range(0, n, block):
            d = pairwise_distances(a[s : s + block], a, metric)
            d[np.arange(d.shape[0]), s + np.arange(d.shape[0])] = 0.0  # self-distances: 0 up to rounding
            total += float(d.sum())
        return total / (n * (n - 1))
    if b.shape[0] == 0 or a.shape[0] == 0:
        return None
    total = sum(pairwise_distances(a[s : s + block], b, metric).sum() for s in range(0, a.shape[0], block))
    return float(total) / (a.shape[0] * b.shape[0])


@dataclass(frozen=True)
class ClassDensity:
    """Density of one class (see the module docstring for the definitions).

    Attributes:
        label: class index.
        name: class name ("" when unknown).
        count: members ``n_c``.
        knn_distance: ``k`` -> mean distance to the k nearest same-class neighbours (None: ``n_c - 1 < k``).
        same_class_fraction: ``k`` -> mean fraction of the k nearest neighbours (all points) in the class.
        chance_fraction: ``(n_c - 1) / (n - 1)``, the same-class fraction of randomly placed points.
        intra_distance: mean distance between distinct members.
        inter_distance: mean distance from a member to a non-member.
        intra_inter_ratio: ``intra_distance / inter_distance``.
    """

    label: int
    name: str
    count: int
    knn_distance: dict[int, float | None]
    same_class_fraction: dict[int, float | None]
    chance_fraction: float | None
    intra_distance: float | None
    inter_distance: float | None
    intra_inter_ratio: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``k`` keys as strings)."""
        return {
            "label": self.label,
            "name": self.name,
            "count": self.count,
            "knn_distance": {str(k): _num(v) for k, v in self.knn_distance.items()},
            "same_class_fraction": {str(k): _num(v) for k, v in self.same_class_fraction.items()},
            "chance_fraction": _num(self.chance_fraction),
            "intra_distance": _num(self.intra_distance),
            "inter_distance": _num(self.inter_distance),
            "intra_inter_ratio": _num(self.intra_inter_ratio),
        }


@dataclass(frozen=True)
class DensityResult:
    """Per-class density of one embedding space, with a summary.

    Attributes:
        metric: ``"l2"`` or ``"cosine"``.
        ks: the neighbourhood sizes.
        n: number of points.
        dim: embedding dimension.
        per_class: one `ClassDensity` per class (classes without members are left out).
        summary: macro means over classes (classes with a value), the micro same-class fraction (mean over
            all points of their classes' neighbour fraction) and the mean pairwise distance of the whole set
            (a scale for the distances).
        settings: the parameters (``max_points``, ``seed``, index).
    """

    metric: str
    ks: tuple[int, ...]
    n: int
    dim: int
    per_class: tuple[ClassDensity, ...]
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "metric": self.metric,
            "ks": list(self.ks),
            "n": self.n,
            "dim": self.dim,
            "summary": self.summary,
            "per_class": [c.to_dict() for c in self.per_class],
            "settings": dict(self.settings),
        }


def class_density(
    embeddings: Any,
    labels: Any,
    *,
    ks: Sequence[int] = DEFAULT_KS,
    metric: str = "l2",
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    max_points: int = 2000,
    seed: int = 0,
    knn_options: Mapping[str, Any] | None = None,
) -> DensityResult:
    """kNN density, same-class fraction and intra/inter distance ratio of every class.

    Args:
        embeddings: (n, d) vectors (numpy or torch).
        labels: (n,) class indices or (n, K) multi-hot.
        ks: neighbourhood sizes (positive integers).
        metric: ``"l2"`` or ``"cosine"``.
        num_classes: number of classes (default from the labels).
        class_names: optional names, indexed by class.
        max_points: members / non-members per class used for the intra / inter means (seeded subsample above).
        seed: seed of those subsamples.
        knn_options: extra arguments of `knn_search` (``index``, ``approx_threshold``, ``threads``, ...).

    Returns:
        A `DensityResult`.

    Raises:
        ValueError: on bad shapes, NaNs, a label count that differs from the embedding count, or bad ``ks``.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    x = as_matrix(embeddings, "embeddings")
    member = membership(labels, num_classes)
    n, dim = x.shape
    if member.shape[0] != n:
        raise ValueError(f"got {member.shape[0]} labels for {n} embeddings")
    ks_t = tuple(int(k) for k in ks)
    if not ks_t or any(k < 1 for k in ks_t) or len(set(ks_t)) != len(ks_t):
        raise ValueError(f"ks must be distinct positive integers; got {tuple(ks)}")
    if max_points < 2:
        raise ValueError(f"max_points must be >= 2; got {max_points}")
    opts = dict(knn_options or {})
    names = list(class_names or [])
    xn = normalize_rows(x, "embeddings") if metric == "cosine" else x
    rng = np.random.default_rng(seed)

    # neighbours in the whole set, once, for the same-class fractions
    k_all = min(max(ks_t), n - 1)
    all_idx = knn_search(x, k=k_all, metric=metric, **opts).indices if k_all >= 1 else None

    per_class: list[ClassDensity] = []
    micro_num = {k: 0.0 for k in ks_t}
    micro_den = {k: 0 for k in ks_t}
    for c in range(member.shape[1]):
        rows = np.flatnonzero(member[:, c])
        n_c = int(rows.size)
        if n_c == 0:
            continue
        knn_distance: dict[int, float | None] = {k: None for k in ks_t}
        k_c = min(max(ks_t), n_c - 1)
        if k_c >= 1:
            dist = knn_search(x[rows], k=k_c, metric=metric, **opts).distances.astype(np.float64)
            for k in ks_t:
                if k <= k_c:
                    knn_distance[k] = float(dist[:, :k].mean())
        same: dict[int, float | None] = {k: None for k in ks_t}
        if all_idx is not None:
            hit = member[all_idx[rows], c]  # (n_c, k_all): neighbour is in class c
            for k in ks_t:
                if k <= k_all:
                    frac = hit[:, :k].mean(axis=1)
                    same[k] = float(frac.mean())
                    micro_num[k] += float(frac.sum())
                    micro_den[k] += n_c
        others = np.flatnonzero(~member[:, c])
        inside = _sample(rows, max_points, rng)
        outside = _sample(others, max_points, rng)
        intra = mean_distance(xn[inside], metric=metric)
        inter = mean_distance(xn[inside], xn[outside], metric=metric) if outside.size else None
        ratio = intra / inter if intra is not None and inter is not None and inter > 0 else None
        per_class.append(
            ClassDensity(
                label=c,
                name=names[c] if c < len(names) else "",
                count=n_c,
                knn_distance=knn_distance,
                same_class_fraction=same,
                chance_fraction=(n_c - 1) / (n - 1) if n > 1 else None,
                intra_distance=intra,
                inter_distance=inter,
                intra_inter_ratio=ratio,
            )
        )
    sample_all = _sample(np.arange(n), max_points, rng)
    summary = {
        "classes": len(per_class),
        "knn_distance": {str(k): _mean_or_none([c.knn_distance[k] for c in per_class]) for k in ks_t},
        "same_class_fraction": {
            str(k): _mean_or_none([c.same_class_fraction[k] for c in per_class]) for k in ks_t
        },
        "same_class_fraction_micro": {
            str(k): (micro_num[k] / micro_den[k] if micro_den[k] else None) for k in ks_t
        },
        "chance_fraction": _mean_or_none([c.chance_fraction for c in per_class]),
        "intra_inter_ratio": _mean_or_none([c.intra_inter_ratio for c in per_class]),
        "mean_pairwise_distance": _num(mean_distance(xn[sample_all], metric=metric)),
    }
    summary = {k: (_num(v) if isinstance(v, float) else v) for k, v in summary.items()}
    return DensityResult(
        metric=metric,
        ks=ks_t,
        n=n,
        dim=dim,
        per_class=tuple(per_class),
        summary=summary,
        settings={
            "max_points": int(max_points), "seed": int(seed), "knn": {k: opts[k] for k in sorted(opts)}
        },
    )


__all__ = ["DEFAULT_KS", "ClassDensity", "DensityResult", "class_density", "mean_distance", "membership"]
