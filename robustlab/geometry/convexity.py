"""Convexity of classes in a latent space: Li's interpolation convexity and graph convexity.

**Li's convexity** (ICASSP 2022; thesis chapter 11) asks whether the classifier keeps a class on the segment
between two of its points. For class ``c`` draw ``M`` uniformly random pairs of distinct members
``(z_i, z_j)`` and ``lambda ~ U(0, 1)``, classify ``z = lambda z_i + (1 - lambda) z_j`` with the head alone
and report:

- ``convexity[tau]``: the fraction of mixes whose probability of ``c`` is ``>= tau`` (softmax for single-label
  heads, sigmoid for multi-label ones);
- ``argmax``: the fraction of mixes whose top class is ``c``;
- ``endpoint_*``: the same criteria on the members themselves (lambda in {0, 1}), the reference the mixes are
  compared with.

**Graph convexity** measures the same property without a classifier, on the kNN graph of the points (an
undirected graph, each point linked to its ``k`` nearest neighbours, edge weight = distance): for same-class
pairs ``(s, t)`` it finds a shortest path (Dijkstra) and counts how often every node on it belongs to the
class (``convexity``), and the mean share of the path's interior nodes inside the class (``node_fraction``; a
direct edge counts 1). Pairs in different connected components are counted as ``unreachable`` and left out.
All pairs are used up to ``max_pairs_per_class``, a seeded uniform sample of pairs above it.

Example:
    >>> li = li_convexity(fused, labels, model.classify_fused, pairs_per_class=200, seed=0)
    >>> li.summary["convexity"]["0.5"]
    >>> graph = graph_convexity(fused, labels, k=10)
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from scipy.sparse.csgraph import dijkstra
from torch import Tensor

from .density import _mean_or_none, _num, membership
from .knn import METRICS, as_matrix, knn_search

log = logging.getLogger(__name__)

DEFAULT_TAUS: tuple[float, ...] = (0.1, 0.5)
_NO_PRED = -9999  # scipy's predecessor value for "no predecessor"


def _key(tau: float) -> str:
    return f"{tau:g}"


# --------------------------------------------------------------------------------------------- Li convexity
@dataclass(frozen=True)
class ClassLiConvexity:
    """Li's convexity of one class.

    Attributes:
        label: class index.
        name: class name ("" when unknown).
        count: members of the class.
        pairs: mixes drawn (0 when the class has fewer than two members; the rates are then None).
        convexity: ``tau`` -> fraction of mixes with ``p_c >= tau``.
        argmax: fraction of mixes classified as ``c``.
        endpoint_convexity: ``tau`` -> fraction of members with ``p_c >= tau``.
        endpoint_argmax: fraction of members classified as ``c`` (the head's recall on this set).
    """

    label: int
    name: str
    count: int
    pairs: int
    convexity: dict[float, float | None]
    argmax: float | None
    endpoint_convexity: dict[float, float | None]
    endpoint_argmax: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``tau`` keys as strings, e.g. ``"0.5"``)."""
        return {
            "label": self.label,
            "name": self.name,
            "count": self.count,
            "pairs": self.pairs,
            "convexity": {_key(t): _num(v) for t, v in self.convexity.items()},
            "argmax": _num(self.argmax),
            "endpoint_convexity": {_key(t): _num(v) for t, v in self.endpoint_convexity.items()},
            "endpoint_argmax": _num(self.endpoint_argmax),
        }


@dataclass(frozen=True)
class LiConvexityResult:
    """Li's convexity per class and its macro summary (mean over classes with pairs).

    Attributes:
        taus: the probability thresholds.
        pairs_per_class: ``M``.
        probabilities: ``"softmax"`` or ``"sigmoid"``.
        per_class: one `ClassLiConvexity` per class with members.
        summary: macro means (``convexity``, ``argmax``, ``endpoint_convexity``, ``endpoint_argmax``) and the
            number of classes averaged.
        settings: ``seed`` and the other parameters.
    """

    taus: tuple[float, ...]
    pairs_per_class: int
    probabilities: str
    per_class: tuple[ClassLiConvexity, ...]
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "taus": list(self.taus),
            "pairs_per_class": self.pairs_per_class,
            "probabilities": self.probabilities,
            "summary": self.summary,
            "per_class": [c.to_dict() for c in self.per_class],
            "settings": dict(self.settings),
        }


def apply_head(
    head: Callable[[Tensor], Tensor], z: np.ndarray, *, batch_size: int, device: torch.device | str | None
) -> np.ndarray:
    """Logits of ``head`` on the rows of ``z`` (batched, no grad) as a float64 array.

    Raises:
        ValueError: when the head does not return (B, K) logits for a (B, D) batch.
    """
    out = []
    with torch.no_grad():
        for s in range(0, z.shape[0], batch_size):
            chunk = torch.from_numpy(z[s : s + batch_size])
            if device is not None:
                chunk = chunk.to(device)
            logits = head(chunk)
            if not isinstance(logits, Tensor) or logits.dim() != 2 or logits.shape[0] != chunk.shape[0]:
                got = tuple(logits.shape) if isinstance(logits, Tensor) else type(logits).__name__
                raise ValueError(
                    f"head must map (B, D) latents to (B, K) logits; got {got} for B={len(chunk)}"
                )
            out.append(logits.detach().double().cpu().numpy())
    return np.concatenate(out, 0)


def _probabilities(logits: np.ndarray, kind: str) -> np.ndarray:
    if kind == "sigmoid":
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def li_convexity(
    latents: Any,
    labels: Any,
    head: Callable[[Tensor], Tensor],
    *,
    pairs_per_class: int = 100,
    taus: Sequence[float] = DEFAULT_TAUS,
    seed: int = 0,
    probabilities: str = "auto",
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
) -> LiConvexityResult:
    """Li's convexity of every class: mixes of same-class latents, classified by ``head`` alone.

    Args:
        latents: (n, D) latents in the head's input space (e.g. ``model.embed(x)["fused"]``).
        labels: (n,) class indices or (n, K) multi-hot labels.
        head: latents (B, D) float32 -> logits (B, K), e.g. ``model.classify_fused`` of a model in eval mode,
            or any callable (tests use a linear map).
        pairs_per_class: ``M``, the mixes drawn per class.
        taus: probability thresholds in (0, 1).
        seed: seed of the pairs and the lambdas (a numpy Generator; classes drawn in index order).
        probabilities: ``"softmax"``, ``"sigmoid"`` or ``"auto"`` (sigmoid for multi-hot labels).
        num_classes: number of classes (default from the labels).
        class_names: optional names, indexed by class.
        batch_size: latents per head call.
        device: where the latents are sent before the head (default: CPU tensors).

    Returns:
        A `LiConvexityResult`.

    Raises:
        ValueError: on bad shapes, NaNs, taus outside (0, 1), ``pairs_per_class < 1``, an unknown
            ``probabilities``, or a head whose output is not (B, K) with K covering the classes.
    """
    z = as_matrix(latents, "latents")
    member = membership(labels, num_classes)
    n = z.shape[0]
    if member.shape[0] != n:
        raise ValueError(f"got {member.shape[0]} labels for {n} latents")
    taus_t = tuple(float(t) for t in taus)
    if not taus_t or any(not 0.0 < t < 1.0 for t in taus_t):
        raise ValueError(f"taus must be probabilities in (0, 1); got {tuple(taus)}")
    if pairs_per_class < 1:
        raise ValueError(f"pairs_per_class must be >= 1; got {pairs_per_class}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    multilabel = np.asarray(labels.detach().cpu() if hasattr(labels, "detach") else labels).ndim == 2
    kind = ("sigmoid" if multilabel else "softmax") if probabilities == "auto" else probabilities
    if kind not in ("softmax", "sigmoid"):
        raise ValueError(f"probabilities must be 'auto', 'softmax' or 'sigmoid'; got {probabilities!r}")
    rng = np.random.default_rng(seed)
    names = list(class_names or [])

    # draw every class's pairs first, then classify all mixes in a few large batches
    mixes, mix_class, drawn = [], [], {}
    for c in range(member.shape[1]):
        rows = np.flatnonzero(member[:, c])
        if rows.size < 2:
            drawn[c] = 0
            continue
        i = rng.integers(rows.size, size=pairs_per_class)
        j = rng.integers(rows.size - 1, size=pairs_per_class)
        j = j + (j >= i)  # uniform over ordered pairs of distinct members
        lam = rng.random(pairs_per_class).astype(np.float32)[:, None]
        mixes.append(lam * z[rows[i]] + (1.0 - lam) * z[rows[j]])
        mix_class.append(np.full(pairs_per_class, c))
        drawn[c] = pairs_per_class
    endpoint_logits = apply_head(head, z, batch_size=batch_size, device=device)
    if endpoint_logits.shape[1] < member.shape[1]:
        raise ValueError(f"head gives {endpoint_logits.shape[1]} logits for {member.shape[1]} classes")
    endpoint_p = _probabilities(endpoint_logits, kind)
    endpoint_top = endpoint_logits.argmax(axis=1)
    mix_c = np.zeros(0, dtype=np.int64)
    mix_pc = np.zeros(0)
    mix_hit = np.zeros(0, dtype=bool)
    if mixes:
        mix_z = np.ascontiguousarray(np.concatenate(mixes, 0), dtype=np.float32)
        mix_c = np.concatenate(mix_class, 0)
        mix_logits = apply_head(head, mix_z, batch_size=batch_size, device=device)
        mix_pc = _probabilities(mix_logits, kind)[np.arange(mix_c.size), mix_c]
        mix_hit = mix_logits.argmax(axis=1) == mix_c
    per_class = []
    for c in range(member.shape[1]):
        rows = np.flatnonzero(member[:, c])
        if rows.size == 0:
            continue
        conv: dict[float, float | None] = {t: None for t in taus_t}
        top: float | None = None
        if drawn[c]:
            sel = mix_c == c
            conv = {t: float((mix_pc[sel] >= t).mean()) for t in taus_t}
            top = float(mix_hit[sel].mean())
        per_class.append(
            ClassLiConvexity(
                label=c,
                name=names[c] if c < len(names) else "",
                count=int(rows.size),
                pairs=drawn[c],
                convexity=conv,
                argmax=top,
                endpoint_convexity={t: float((endpoint_p[rows, c] >= t).mean()) for t in taus_t},
                endpoint_argmax=float((endpoint_top[rows] == c).mean()),
            )
        )
    scored = [c for c in per_class if c.pairs]
    summary = {
        "classes": len(scored),
        "convexity": {_key(t): _mean_or_none([c.convexity[t] for c in scored]) for t in taus_t},
        "argmax": _mean_or_none([c.argmax for c in scored]),
        "endpoint_convexity": {
            _key(t): _mean_or_none([c.endpoint_convexity[t] for c in scored]) for t in taus_t
        },
        "endpoint_argmax": _mean_or_none([c.endpoint_argmax for c in scored]),
    }
    return LiConvexityResult(
        taus=taus_t,
        pairs_per_class=int(pairs_per_class),
        probabilities=kind,
        per_class=tuple(per_class),
        summary=summary,
        settings={"seed": int(seed)},
    )


# ------------------------------------------------------------------------------------------ graph convexity
@dataclass(frozen=True)
class ClassGraphConvexity:
    """Graph convexity of one class.

    Attributes:
        label: class index.
        name: class name ("" when unknown).
        count: members of the class.
        pairs: same-class pairs examined (all of them, or the sample).
        exhaustive: True when ``pairs`` are all the class's pairs.
        reachable: pairs connected in the graph.
        convexity: fraction of reachable pairs whose shortest path stays inside the class.
        node_fraction: mean share of interior path nodes inside the class (direct edges count 1).
        mean_hops: mean number of edges on the shortest paths.
    """

    label: int
    name: str
    count: int
    pairs: int
    exhaustive: bool
    reachable: int
    convexity: float | None
    node_fraction: float | None
    mean_hops: float | None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "label": self.label,
            "name": self.name,
            "count": self.count,
            "pairs": self.pairs,
            "exhaustive": self.exhaustive,
            "reachable": self.reachable,
            "convexity": _num(self.convexity),
            "node_fraction": _num(self.node_fraction),
            "mean_hops": _num(self.mean_hops),
        }


@dataclass(frozen=True)
class GraphConvexityResult:
    """Graph convexity per class and summary (macro means over classes with reachable pairs; ``micro``:
    pooled over all examined pairs).

    Attributes:
        per_class: one `ClassGraphConvexity` per class with members.
        summary: ``classes``, ``convexity``, ``convexity_micro``, ``node_fraction``, ``unreachable_fraction``.
        settings: the graph (``k``, ``metric``, ``weighted``), ``max_pairs_per_class`` and ``seed``.
    """

    per_class: tuple[ClassGraphConvexity, ...]
    summary: dict[str, Any]
    settings: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "summary": self.summary,
            "per_class": [c.to_dict() for c in self.per_class],
            "settings": dict(self.settings),
        }


def knn_graph(
    embeddings: Any,
    *,
    k: int = 10,
    metric: str = "l2",
    weighted: bool = True,
    knn_options: Mapping[str, Any] | None = None,
) -> sp.csr_matrix:
    """The undirected kNN graph: ``i`` and ``j`` are linked when either is among the other's ``k`` nearest
    neighbours (`knn_search`, self excluded).

    Args:
        embeddings: (n, d) vectors.
        k: neighbours per point.
        metric: ``"l2"`` or ``"cosine"``.
        weighted: edge weight = distance (floored at 1e-12 so that duplicates stay linked); else 1.
        knn_options: extra arguments of `knn_search`.

    Returns:
        A symmetric (n, n) float64 CSR adjacency matrix.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {METRICS}; got {metric!r}")
    x = as_matrix(embeddings, "embeddings")
    n = x.shape[0]
    dist, idx = knn_search(x, k=k, metric=metric, **dict(knn_options or {}))
    w = np.maximum(dist.astype(np.float64), 1e-12).ravel() if weighted else np.ones(idx.size)
    rows = np.repeat(np.arange(n), idx.shape[1])
    a = sp.csr_matrix((w, (rows, idx.ravel())), shape=(n, n))
    return a.maximum(a.T).tocsr()


def _pairs_for_class(
    rows: np.ndarray, max_pairs: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, bool]:
    n_c = rows.size
    total = n_c * (n_c - 1) // 2
    if total <= max_pairs:
        a, b = np.triu_indices(n_c, k=1)
        return rows[a], rows[b], True
    i = rng.integers(n_c, size=max_pairs)
    j = rng.integers(n_c - 1, size=max_pairs)
    j = j + (j >= i)
    return rows[i], rows[j], False


def graph_convexity_on_graph(
    graph: Any,
    labels: Any,
    *,
    max_pairs_per_class: int = 500,
    seed: int = 0,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    unweighted: bool = False,
    source_block: int = 256,
) -> GraphConvexityResult:
    """Graph convexity of every class on a given undirected graph.

    Args:
        graph: (n, n) adjacency (scipy sparse or dense array; nonzero entries are edges, values are weights).
        labels: (n,) class indices or (n, K) multi-hot labels.
        max_pairs_per_class: all same-class pairs up to this many, a seeded uniform sample above it.
        seed: seed of the pair sample.
        num_classes: number of classes (default from the labels).
        class_names: optional names, indexed by class.
        unweighted: shortest paths by hop count instead of weight.
        source_block: Dijkstra sources solved at once (bounds memory at ``source_block x n``).

    Returns:
        A `GraphConvexityResult`.

    Raises:
        ValueError: on a non-square graph, a label count that differs from the node count, or
            ``max_pairs_per_class < 1``.
    """
    g = sp.csr_matrix(graph, dtype=np.float64)
    if g.shape[0] != g.shape[1]:
        raise ValueError(f"graph must be a square (n, n) adjacency; got shape {g.shape}")
    member = membership(labels, num_classes)
    n = g.shape[0]
    if member.shape[0] != n:
        raise ValueError(f"got {member.shape[0]} labels for a graph of {n} nodes")
    if max_pairs_per_class < 1:
        raise ValueError(f"max_pairs_per_class must be >= 1; got {max_pairs_per_class}")
    rng = np.random.default_rng(seed)
    names = list(class_names or [])
    per_class = []
    pooled_inside = pooled_reachable = pooled_pairs = 0
    for c in range(member.shape[1]):
        rows = np.flatnonzero(member[:, c])
        if rows.size == 0:
            continue
        if rows.size < 2:
            per_class.append(
                ClassGraphConvexity(c, names[c] if c < len(names) else "", 1, 0, True, 0, None, None, None)
            )
            continue
        src, dst, exhaustive = _pairs_for_class(rows, max_pairs_per_class, rng)
        inside = reachable = 0
        node_fracs: list[float] = []
        hops: list[int] = []
        sources = np.unique(src)
        for s0 in range(0, sources.size, source_block):
            block = sources[s0 : s0 + source_block]
            _, pred = dijkstra(
                g, directed=False, indices=block, return_predecessors=True, unweighted=unweighted
            )
            where = {int(s): r for r, s in enumerate(block)}
            in_block = np.isin(src, block)
            for s, t in zip(src[in_block], dst[in_block], strict=True):
                p = pred[where[int(s)]]
                if p[t] == _NO_PRED:
                    continue  # different connected components
                reachable += 1
                interior = []
                node = int(p[t])
                while node != s:
                    interior.append(node)
                    node = int(p[node])
                in_class = member[interior, c] if interior else np.ones(0, dtype=bool)
                inside += bool(in_class.all())
                node_fracs.append(float(in_class.mean()) if interior else 1.0)
                hops.append(len(interior) + 1)
        pooled_inside += inside
        pooled_reachable += reachable
        pooled_pairs += src.size
        per_class.append(
            ClassGraphConvexity(
                label=c,
                name=names[c] if c < len(names) else "",
                count=int(rows.size),
                pairs=int(src.size),
                exhaustive=exhaustive,
                reachable=reachable,
                convexity=inside / reachable if reachable else None,
                node_fraction=float(np.mean(node_fracs)) if node_fracs else None,
                mean_hops=float(np.mean(hops)) if hops else None,
            )
        )
    summary = {
        "classes": sum(1 for c in per_class if c.reachable),
        "convexity": _mean_or_none([c.convexity for c in per_class]),
        "convexity_micro": pooled_inside / pooled_reachable if pooled_reachable else None,
        "node_fraction": _mean_or_none([c.node_fraction for c in per_class]),
        "unreachable_fraction": (pooled_pairs - pooled_reachable) / pooled_pairs if pooled_pairs else None,
    }
    return GraphConvexityResult(
        per_class=tuple(per_class),
        summary=summary,
        settings={
            "max_pairs_per_class": int(max_pairs_per_class), "seed": int(seed), "unweighted": bool(unweighted)
        },
    )


def graph_convexity(
    embeddings: Any,
    labels: Any,
    *,
    k: int = 10,
    metric: str = "l2",
    weighted: bool = True,
    max_pairs_per_class: int = 500,
    seed: int = 0,
    num_classes: int | None = None,
    class_names: Sequence[str] | None = None,
    knn_options: Mapping[str, Any] | None = None,
) -> GraphConvexityResult:
    """Graph convexity of every class on the kNN graph of ``embeddings`` (see the module docstring).

    Args:
        embeddings: (n, d) vectors.
        labels: (n,) class indices or (n, K) multi-hot labels.
        k: neighbours per point in the graph.
        metric: ``"l2"`` or ``"cosine"``.
        weighted: shortest paths by summed distance (True) or by hop count.
        max_pairs_per_class: all same-class pairs up to this many, a seeded uniform sample above it.
        seed: seed of the pair sample.
        num_classes: number of classes (default from the labels).
        class_names: optional names, indexed by class.
        knn_options: extra arguments of `knn_search`.

    Returns:
        A `GraphConvexityResult` (``settings`` records ``k``, ``metric`` and ``weighted``).
    """
    graph = knn_graph(embeddings, k=k, metric=metric, weighted=weighted, knn_options=knn_options)
    result = graph_convexity_on_graph(
        graph,
        labels,
        max_pairs_per_class=max_pairs_per_class,
        seed=seed,
        num_classes=num_classes,
        class_names=class_names,
        unweighted=not weighted,
    )
    settings = {**result.settings, "k": int(k), "metric": metric, "weighted": bool(weighted)}
    return GraphConvexityResult(result.per_class, result.summary, settings)


__all__ = [
    "DEFAULT_TAUS", "ClassGraphConvexity", "ClassLiConvexity", "GraphConvexityResult", "LiConvexityResult",
    "apply_head", "graph_convexity", "graph_convexity_on_graph", "knn_graph", "li_convexity",
]
