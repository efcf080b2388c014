"""All geometry metrics of one model on one dataset split, as one JSON-able result.

`model_geometry` extracts the model's embeddings (per modality and fused; batched, eval mode, no grad) and
computes, for every embedding key, the kNN density (`class_density`) and graph convexity (`graph_convexity`),
and for the fused latent Li's convexity through the model's own head (``model.classify_fused``). It is pure:
nothing is cached or written (the study runner caches cells).

Example:
    >>> import robustlab.zoo as zoo
    >>> result = model_geometry(zoo.load("fusion_late.base_synthav"),
    ...                         zoo.dataset_for("fusion_late.base_synthav", "test"))
    >>> result.to_dict()["embeddings"]["fused"]["li_convexity"]["summary"]["convexity"]["0.5"]
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from .convexity import (
    DEFAULT_TAUS,
    GraphConvexityResult,
    LiConvexityResult,
    apply_head,
    graph_convexity,
    li_convexity,
)
from .density import DEFAULT_KS, DensityResult, class_density
from .embeddings import eval_mode, extract_embeddings, model_device
from .knn import DEFAULT_APPROX_THRESHOLD, METRICS

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class GeometryConfig:
    """Parameters of `model_geometry` (all JSON-able; part of a study cell's identity).

    Attributes:
        keys: embedding keys to measure (None: every key the model's ``embed`` returns).
        metric: ``"l2"`` or ``"cosine"`` for every distance.
        ks: kNN density neighbourhood sizes.
        taus: Li convexity probability thresholds.
        pairs_per_class: Li convexity mixes per class (``M``).
        graph_k: neighbours per node of the kNN graph.
        graph_pairs_per_class: same-class pairs per class for graph convexity (all of them below).
        max_points: members / non-members per class for the intra / inter distance means.
        max_items: examples used (a seeded uniform subsample; None: the whole split).
        batch_size: examples per forward pass.
        seed: seed of every sample (examples, pairs, lambdas).
        index: faiss index (``"auto"``, ``"flat"``, ``"hnsw"``, ``"ivf"``).
        approx_threshold: size above which ``"auto"`` uses an approximate index.
        threads: faiss threads (None: faiss' setting).
        check_head: also run the full model to report its accuracy and whether ``classify_fused`` on the
            fused latent reproduces its predictions (``head_agreement``).
    """

    keys: tuple[str, ...] | None = None
    metric: str = "l2"
    ks: tuple[int, ...] = DEFAULT_KS
    taus: tuple[float, ...] = DEFAULT_TAUS
    pairs_per_class: int = 200
    graph_k: int = 10
    graph_pairs_per_class: int = 500
    max_points: int = 2000
    max_items: int | None = None
    batch_size: int = 64
    seed: int = 0
    index: str = "auto"
    approx_threshold: int = DEFAULT_APPROX_THRESHOLD
    threads: int | None = None
    check_head: bool = True

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}; got {self.metric!r}")
        for name in ("ks", "taus") + (("keys",) if self.keys is not None else ()):
            object.__setattr__(self, name, tuple(getattr(self, name)))

    def knn_options(self) -> dict[str, Any]:
        """The `knn_search` options of this config."""
        return {"index": self.index, "approx_threshold": self.approx_threshold, "threads": self.threads}

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        d = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in d.items()}


@dataclass(frozen=True)
class EmbeddingGeometry:
    """The metrics of one embedding space.

    Attributes:
        key: ``"audio"``, ``"visual"`` or ``"fused"``.
        dim: embedding dimension.
        density: `DensityResult`.
        graph_convexity: `GraphConvexityResult`.
        li_convexity: `LiConvexityResult` (fused latent of a model with ``classify_fused`` only).
    """

    key: str
    dim: int
    density: DensityResult
    graph_convexity: GraphConvexityResult
    li_convexity: LiConvexityResult | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict."""
        return {
            "dim": self.dim,
            "density": self.density.to_dict(),
            "graph_convexity": self.graph_convexity.to_dict(),
            "li_convexity": self.li_convexity.to_dict() if self.li_convexity is not None else None,
        }


@dataclass(frozen=True)
class GeometryResult:
    """Geometry of one model on one split.

    Attributes:
        config: the `GeometryConfig` used.
        n: examples measured.
        num_classes: classes of the model.
        label_names: class names.
        embeddings: key -> `EmbeddingGeometry`.
        info: model class, dataset name / split / fingerprint, ``accuracy`` and ``head_agreement`` (with
            ``check_head``: the fraction of examples where ``classify_fused(embed()["fused"])`` and the full
            model agree on the top class; below 1 for MIL-pooling audio heads, whose fused head sees the
            time-averaged embedding as a one-frame clip), ``identical_embeddings`` (keys measured once because
            they equal an earlier key), ``li_convexity_skipped`` (why, when the model has no fused head),
            ``seconds``.
    """

    config: GeometryConfig
    n: int
    num_classes: int
    label_names: tuple[str, ...]
    embeddings: dict[str, EmbeddingGeometry]
    info: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, dict[str, Any]]:
        """Key -> headline numbers (density and convexity summaries), for tables."""
        out: dict[str, dict[str, Any]] = {}
        for key, geo in self.embeddings.items():
            row: dict[str, Any] = {
                "knn_distance": geo.density.summary["knn_distance"],
                "same_class_fraction": geo.density.summary["same_class_fraction"],
                "intra_inter_ratio": geo.density.summary["intra_inter_ratio"],
                "graph_convexity": geo.graph_convexity.summary["convexity"],
            }
            if geo.li_convexity is not None:
                row["li_convexity"] = geo.li_convexity.summary["convexity"]
                row["li_argmax"] = geo.li_convexity.summary["argmax"]
            out[key] = row
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-able dict (``json.dumps(..., allow_nan=False)`` succeeds)."""
        return {
            "config": self.config.to_dict(),
            "n": self.n,
            "num_classes": self.num_classes,
            "label_names": list(self.label_names),
            "info": dict(self.info),
            "summary": self.summary(),
            "embeddings": {k: v.to_dict() for k, v in self.embeddings.items()},
        }


def _data_info(data: Any) -> dict[str, Any]:
    spec = getattr(data, "spec", None)
    if spec is None:
        return {}
    keys = ("name", "split", "fingerprint")
    return {k: getattr(spec, k) for k in keys if getattr(spec, k, None) is not None}


def model_geometry(
    model: nn.Module, data: Any, config: GeometryConfig | None = None, **overrides: Any
) -> GeometryResult:
    """Density and graph convexity (every embedding key) and Li convexity (fused latent) of a model.

    Args:
        model: a `robustlab.models.base.ZooModel` (its mode is restored afterwards).
        data: a dataset split (items follow the batch contract) or a batch dict with ``label``.
        config: a `GeometryConfig` (default: the defaults).
        **overrides: fields replacing those of ``config`` (e.g. ``max_items=64``).

    Returns:
        A `GeometryResult`; ``result.to_dict()`` is JSON-able.
    """
    cfg = dataclasses.replace(config or GeometryConfig(), **overrides)
    t0 = time.perf_counter()
    spec = getattr(model, "spec", None)
    num_classes = int(spec.num_classes) if spec is not None else None
    names = tuple(getattr(spec, "label_names", ()) or ())
    if not names:
        names = tuple(getattr(getattr(data, "spec", None), "label_names", ()) or ())
    emb = extract_embeddings(
        model, data, keys=cfg.keys, batch_size=cfg.batch_size, max_items=cfg.max_items, seed=cfg.seed,
        with_logits=cfg.check_head,
    )
    info: dict[str, Any] = {"model": type(model).__name__, "data": _data_info(data)}
    if num_classes is None:
        num_classes = int(emb.logits.shape[1]) if emb.logits is not None else int(emb.labels.max()) + 1
    multilabel = emb.labels.ndim == 2
    if emb.logits is not None and not multilabel:
        info["accuracy"] = float((emb.logits.argmax(1) == emb.labels).mean())
    knn_opts = cfg.knn_options()
    results: dict[str, EmbeddingGeometry] = {}
    for key, vectors in emb.vectors.items():
        same = next((k for k in results if np.array_equal(emb.vectors[k], vectors)), None)
        if same is not None:  # e.g. an audio-only model: "fused" is the "audio" embedding
            results[key] = dataclasses.replace(results[same], key=key)
            info.setdefault("identical_embeddings", {})[key] = same
            continue
        density = class_density(
            vectors, emb.labels, ks=cfg.ks, metric=cfg.metric, num_classes=num_classes, class_names=names,
            max_points=cfg.max_points, seed=cfg.seed, knn_options=knn_opts,
        )
        graph = graph_convexity(
            vectors, emb.labels, k=min(cfg.graph_k, len(emb) - 1), metric=cfg.metric,
            max_pairs_per_class=cfg.graph_pairs_per_class, seed=cfg.seed, num_classes=num_classes,
            class_names=names, knn_options=knn_opts,
        )
        results[key] = EmbeddingGeometry(key, int(vectors.shape[1]), density, graph)
    fused = emb.vectors.get("fused")
    if fused is not None:
        li = _fused_li_convexity(model, fused, emb, cfg, num_classes, names, info)
        if li is not None:
            results["fused"] = dataclasses.replace(results["fused"], li_convexity=li)
    elif cfg.keys is None or "fused" in cfg.keys:
        info["li_convexity_skipped"] = "the model's embed() gives no 'fused' latent"
    info["seconds"] = round(time.perf_counter() - t0, 3)
    return GeometryResult(
        config=cfg, n=len(emb), num_classes=num_classes, label_names=names, embeddings=results, info=info
    )


def _fused_li_convexity(
    model: nn.Module,
    fused: np.ndarray,
    emb: Any,
    cfg: GeometryConfig,
    num_classes: int,
    names: tuple[str, ...],
    info: dict[str, Any],
) -> LiConvexityResult | None:
    head = getattr(model, "classify_fused", None)
    if head is None:
        info["li_convexity_skipped"] = f"{type(model).__name__} has no classify_fused"
        return None
    device = model_device(model)
    with eval_mode(model), torch.no_grad():
        try:
            head_logits = apply_head(head, fused, batch_size=max(cfg.batch_size, 256), device=device)
        except NotImplementedError as err:
            info["li_convexity_skipped"] = str(err)
            return None
        if emb.logits is not None:
            info["head_agreement"] = float((head_logits.argmax(1) == emb.logits.argmax(1)).mean())
            info["head_max_abs_logit_diff"] = float(np.abs(head_logits - emb.logits).max())
        return li_convexity(
            fused, emb.labels, head, pairs_per_class=cfg.pairs_per_class, taus=cfg.taus, seed=cfg.seed,
            num_classes=num_classes, class_names=names, batch_size=max(cfg.batch_size, 256), device=device,
        )


def zoo_geometry(
    model_id: str, split: str = "test", config: GeometryConfig | None = None, **overrides: Any
) -> GeometryResult:
    """`model_geometry` of a stored zoo model on ``split`` of its recipe's dataset (never trains: a model
    that is not in the store raises FileNotFoundError)."""
    from .. import zoo

    model = zoo.load(model_id)
    result = model_geometry(model, zoo.dataset_for(model_id, split), config, **overrides)
    return dataclasses.replace(result, info={"model_id": model_id, **result.info})


__all__ = ["EmbeddingGeometry", "GeometryConfig", "GeometryResult", "model_geometry", "zoo_geometry"]
