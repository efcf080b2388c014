"""k-nearest-neighbour search with faiss behind one function, `knn_search`.

An exact flat index (``IndexFlatL2``, or ``IndexFlatIP`` on L2-normalised vectors for the cosine metric) is
used up to ``approx_threshold`` database vectors, an approximate one (HNSW or IVF-Flat) above it; both return
the same ``(distances, indices)`` pair. Distances are true distances, smallest first:

- ``metric="l2"``: the Euclidean distance (faiss' squared distances are square-rooted);
- ``metric="cosine"``: the cosine distance ``1 - cos(a, b)`` (in [0, 2]).

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).normal(size=(1000, 16))
    >>> dist, idx = knn_search(x, k=5)  # the database against itself: self-matches excluded
    >>> dist.shape, idx.shape
    ((1000, 5), (1000, 5))
"""

from __future__ import annotations

import contextlib
import logging
import math
from collections.abc import Iterator
from typing import Any, Literal, NamedTuple

import numpy as np

log = logging.getLogger(__name__)

Metric = Literal["l2", "cosine"]
IndexKind = Literal["auto", "flat", "hnsw", "ivf"]

METRICS: tuple[str, ...] = ("l2", "cosine")
INDEX_KINDS: tuple[str, ...] = ("auto", "flat", "hnsw", "ivf")
#: database size above which ``index="auto"`` switches from the exact flat index to an approximate one
DEFAULT_APPROX_THRESHOLD = 100_000


class KNNResult(NamedTuple):
    """Neighbours of each query, nearest first.

    Attributes:
        distances: (n_queries, k) float32 distances (Euclidean for ``l2``, ``1 - cos`` for ``cosine``).
        indices: (n_queries, k) int64 row indices into the database.
    """

    distances: np.ndarray
    indices: np.ndarray


def _faiss() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - depends on the install
        raise ImportError(
            "robustlab.geometry needs faiss: pip install faiss-cpu (the 'geometry' extra of robustlab)"
        ) from err
    return faiss


def as_matrix(x: Any, name: str = "x") -> np.ndarray:
    """``x`` (numpy array, torch tensor or nested sequence) as a C-contiguous float32 (n, d) matrix.

    Raises:
        ValueError: when ``x`` is not 2-D, is empty, or holds NaN / infinite values.
    """
    if hasattr(x, "detach"):  # torch tensor, possibly on a GPU or requiring grad
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D (n, d) matrix; got shape {arr.shape}")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one row and one column; got shape {arr.shape}")
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.complexfloating):
        raise ValueError(f"{name} must hold real numbers; got dtype {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int((~np.isfinite(arr)).any(axis=1).sum())
        raise ValueError(f"{name} holds NaN or infinite values in {bad} of its {arr.shape[0]} rows")
    return arr


def normalize_rows(x: np.ndarray, name: str = "x") -> np.ndarray:
    """Rows of ``x`` scaled to unit L2 norm (float32, contiguous), for the cosine metric.

    Raises:
        ValueError: when a row has zero norm (its cosine distance is undefined).
    """
    norms = np.linalg.norm(x.astype(np.float64), axis=1, keepdims=True)
    zero = int((norms[:, 0] == 0).sum())
    if zero:
        raise ValueError(f"{name}: {zero} rows have zero norm; the cosine metric is undefined for them")
    return np.ascontiguousarray(x / norms, dtype=np.float32)


@contextlib.contextmanager
def faiss_threads(threads: int | None) -> Iterator[None]:
    """Run the block with faiss (OpenMP) limited to ``threads`` threads; None leaves the setting alone."""
    if threads is None:
        yield
        return
    if threads < 1:
        raise ValueError(f"threads must be >= 1 or None; got {threads}")
    faiss = _faiss()
    before = faiss.omp_get_max_threads()
    faiss.omp_set_num_threads(int(threads))
    try:
        yield
    finally:
        faiss.omp_set_num_threads(before)


def resolve_index_kind(
    index: str, n_database: int, approx_threshold: int, approx_method: str
) -> Literal["flat", "hnsw", "ivf"]:
    """The index `knn_search` builds: ``index`` itself, or for ``"auto"`` flat up to ``approx_threshold``
    database vectors and ``approx_method`` above it."""
    if index not in INDEX_KINDS:
        raise ValueError(f"index must be one of {INDEX_KINDS}; got {index!r}")
    if approx_method not in ("hnsw", "ivf"):
        raise ValueError(f"approx_method must be 'hnsw' or 'ivf'; got {approx_method!r}")
    if index != "auto":
        return index  # type: ignore[return-value]
    return approx_method if n_database > approx_threshold else "flat"  # type: ignore[return-value]


def _build_index(
    kind: str,
    xb: np.ndarray,
    metric: str,
    *,
    nlist: int | None,
    nprobe: int | None,
    hnsw_m: int,
    ef_search: int | None,
    ef_construction: int,
    k: int,
    seed: int,
) -> Any:
    faiss = _faiss()
    n, d = xb.shape
    fmetric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    if kind == "flat":
        index = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
    elif kind == "hnsw":
        if hnsw_m < 2:
            raise ValueError(f"hnsw_m must be >= 2; got {hnsw_m}")
        index = faiss.IndexHNSWFlat(d, int(hnsw_m), fmetric)
        index.hnsw.efConstruction = int(ef_construction)
        index.hnsw.efSearch = int(ef_search if ef_search is not None else max(128, 4 * k))
    elif kind == "ivf":
        lists = int(nlist) if nlist is not None else max(1, min(int(4 * math.sqrt(n)), n // 39))
        if not 1 <= lists <= n:
            raise ValueError(f"nlist must be in [1, n_database={n}]; got {lists}")
        quantizer = faiss.IndexFlatIP(d) if metric == "cosine" else faiss.IndexFlatL2(d)
        index = faiss.IndexIVFFlat(quantizer, d, lists, fmetric)
        index.cp.seed = int(seed)
        index.train(xb)
        probe = int(nprobe) if nprobe is not None else max(1, math.ceil(lists / 4))
        index.nprobe = min(probe, lists)
    else:  # pragma: no cover - resolve_index_kind validates
        raise ValueError(f"unknown index kind {kind!r}")
    index.add(xb)
    return index


def _drop_self(dist: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove each row's self-match (row ``i`` finding index ``i``), or its last column when the index
    missed it (approximate search, or more than k+1 exact duplicates at distance 0)."""
    n, kk = idx.shape
    is_self = idx == np.arange(n)[:, None]
    pos = np.where(is_self.any(axis=1), is_self.argmax(axis=1), kk - 1)
    keep = np.ones_like(is_self)
    keep[np.arange(n), pos] = False
    return dist[keep].reshape(n, kk - 1), idx[keep].reshape(n, kk - 1)


def knn_search(
    database: Any,
    queries: Any | None = None,
    *,
    k: int = 10,
    metric: str = "l2",
    index: str = "auto",
    approx_threshold: int = DEFAULT_APPROX_THRESHOLD,
    approx_method: str = "hnsw",
    nlist: int | None = None,
    nprobe: int | None = None,
    hnsw_m: int = 32,
    ef_search: int | None = None,
    ef_construction: int = 80,
    seed: int = 0,
    threads: int | None = None,
) -> KNNResult:
    """The ``k`` nearest database rows of every query, with faiss.

    Args:
        database: (n, d) vectors (numpy or torch; converted to contiguous float32).
        queries: (m, d) query vectors, or None to query the database against itself; then each row's
            self-match is excluded (an exact duplicate of a row still counts as its neighbour).
        k: neighbours per query (``k <= n``, or ``k <= n - 1`` for a self-query).
        metric: ``"l2"`` (Euclidean) or ``"cosine"`` (inner product of L2-normalised vectors; distance
            ``1 - cos``).
        index: ``"flat"`` (exact), ``"hnsw"`` / ``"ivf"`` (approximate), or ``"auto"``: flat while
            ``n <= approx_threshold``, else ``approx_method``.
        approx_threshold: database size above which ``"auto"`` uses the approximate index.
        approx_method: the approximate index of ``"auto"``: ``"hnsw"`` (HNSW-Flat, no training) or ``"ivf"``
            (IVF-Flat, k-means trained on the database).
        nlist: IVF lists (default ``min(4 sqrt(n), n / 39)``).
        nprobe: IVF lists visited per query (default ``ceil(nlist / 4)``).
        hnsw_m: HNSW links per node.
        ef_search: HNSW search breadth (default ``max(128, 4 k)``).
        ef_construction: HNSW construction breadth.
        seed: the IVF k-means seed (HNSW uses faiss' fixed level seed).
        threads: faiss OpenMP threads for this call (None: faiss' current setting). With more than one
            thread an HNSW build may differ between runs.

    Returns:
        `KNNResult` ``(distances, indices)``: (m, k) float32 distances, nearest first, and int64 indices.

    Raises:
        ValueError: on non-2-D, empty, NaN or infinite inputs, mismatched dimensions, ``k`` out of range, an
            unknown metric or index, or zero vectors under the cosine metric.
        RuntimeError: when an approximate index finds fewer than ``k`` neighbours for some query (raise
            ``nprobe`` / ``ef_search`` or use ``index="flat"``).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    xb = as_matrix(database, "database")
    self_query = queries is None
    xq = xb if self_query else as_matrix(queries, "queries")
    if xq.shape[1] != xb.shape[1]:
        raise ValueError(f"queries have dimension {xq.shape[1]} but the database has {xb.shape[1]}")
    n = xb.shape[0]
    if not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be a positive integer; got {k!r}")
    kk = int(k) + 1 if self_query else int(k)
    if kk > n:
        limit = n - 1 if self_query else n
        raise ValueError(
            f"k={k} is larger than the {limit} candidate neighbours "
            f"({'self-query of ' if self_query else ''}{n} database rows)"
        )
    if metric == "cosine":
        xb = normalize_rows(xb, "database")
        xq = xb if self_query else normalize_rows(xq, "queries")
    kind = resolve_index_kind(index, n, approx_threshold, approx_method)
    with faiss_threads(threads):
        faiss_index = _build_index(
            kind, xb, metric, nlist=nlist, nprobe=nprobe, hnsw_m=hnsw_m, ef_search=ef_search,
            ef_construction=ef_construction, k=kk, seed=seed,
        )
        raw_dist, raw_idx = faiss_index.search(xq, kk)
    raw_idx = raw_idx.astype(np.int64, copy=False)
    if self_query:
        raw_dist, raw_idx = _drop_self(raw_dist, raw_idx)
    if (raw_idx < 0).any():
        missing = int((raw_idx < 0).any(axis=1).sum())
        raise RuntimeError(
            f"the {kind} index found fewer than k={k} neighbours for {missing} queries; raise nprobe / "
            "ef_search or use index='flat'"
        )
    if metric == "cosine":
        dist = 1.0 - raw_dist
    else:
        dist = np.sqrt(np.maximum(raw_dist, 0.0))
    log.debug(
        "knn_search: %s index, n=%d, m=%d, d=%d, k=%d, %s", kind, n, xq.shape[0], xb.shape[1], k, metric
    )
    return KNNResult(np.ascontiguousarray(dist, dtype=np.float32), np.ascontiguousarray(raw_idx))


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "l2") -> np.ndarray:
    """Dense (len(a), len(b)) float64 distances in the metric of `knn_search` (for small blocks).

    For ``cosine`` both inputs must already be L2-normalised (see `normalize_rows`).
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    a64, b64 = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        return 1.0 - a64 @ b64.T
    sq = (a64 * a64).sum(1)[:, None] + (b64 * b64).sum(1)[None, :] - 2.0 * (a64 @ b64.T)
    return np.sqrt(np.maximum(sq, 0.0))


__all__ = [
    "DEFAULT_APPROX_THRESHOLD", "INDEX_KINDS", "KNNResult", "METRICS", "as_matrix", "faiss_threads",
    "knn_search", "normalize_rows", "pairwise_distances", "resolve_index_kind",
]
