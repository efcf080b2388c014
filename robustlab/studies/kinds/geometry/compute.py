"""Cell computations of ``geometry``: one function per condition type, registered in `CELLS`.

Clean accuracy and eps* are attack_sweep's computations, noise accuracy is noise_sweep's (registered here
for this kind's conditions of the same types); geometry and the per-class accuracies are this kind's own.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from ...cells import CellContext
from ..attack_sweep import compute as attack_compute
from ..attack_sweep.plan import Potency
from ..base import CellComputations, Clean
from ..measure import concat, estimate, predict_correct
from ..noise_sweep import compute as noise_compute
from ..noise_sweep.plan import Noise
from .plan import ClassAttack, ClassNoise, GeometryCell

#: condition type -> computation
CELLS = CellComputations("geometry")
CELLS.computes(Clean)(attack_compute.clean)
CELLS.computes(Potency)(attack_compute.potency)
CELLS.computes(Noise)(noise_compute.noise)


def geometry_config(c: GeometryCell) -> Any:
    """The `robustlab.geometry.GeometryConfig` of a condition (the split subset is drawn by the context)."""
    from ....geometry import GeometryConfig

    return GeometryConfig(
        keys=tuple(c.keys) or None,
        metric=c.metric,
        ks=tuple(c.ks),
        taus=tuple(c.taus),
        pairs_per_class=c.pairs_per_class,
        graph_k=c.graph_k,
        graph_pairs_per_class=c.graph_pairs_per_class,
        max_points=c.max_points,
        max_items=None,
        batch_size=c.batch_size,
        seed=c.sample_seed,
        index=c.index,
        approx_threshold=c.approx_threshold,
        check_head=True,
    )


def _ratio(a: Any, b: Any) -> float | None:
    if a is None or b is None or not b:
        return None
    return float(a) / float(b)


def geometry_rows(result: Any, split: str) -> list[dict[str, Any]]:
    """Rows of a `robustlab.geometry.GeometryResult`: per embedding, summary rows (``scope = "summary"``) and
    per-class rows (``scope = "class"``, with ``class`` and ``class_name``).

    Metrics: ``knn_distance`` and ``knn_distance_rel`` (divided by the embedding's mean pairwise distance, so
    that models compare), ``same_class_fraction`` (with ``k``), ``chance_fraction``, ``intra_inter_ratio``,
    ``graph_convexity``, ``graph_node_fraction``, and on the fused latent ``li_convexity`` (with ``tau``),
    ``li_argmax``, ``li_endpoint_argmax``; and once ``head_agreement`` / ``geometry_accuracy``.
    """
    info = result.info
    rows: list[dict[str, Any]] = []
    common = {"split": split, "n": result.n}
    for key, geo in result.embeddings.items():
        dens, graph, li = geo.density, geo.graph_convexity, geo.li_convexity
        base = {
            **common,
            "embedding": key,
            "dim": geo.dim,
            "identical_to": (info.get("identical_embeddings") or {}).get(key),
        }
        scale = dens.summary.get("mean_pairwise_distance")

        def put(metric: str, value: Any, scope: str = "summary", _base: dict = base, **extra: Any) -> None:
            rows.append({**_base, "scope": scope, "metric": metric, "value": value, **extra})

        for k in dens.ks:
            put("knn_distance", dens.summary["knn_distance"].get(str(k)), k=k)
            put("knn_distance_rel", _ratio(dens.summary["knn_distance"].get(str(k)), scale), k=k)
            put("same_class_fraction", dens.summary["same_class_fraction"].get(str(k)), k=k)
        put("chance_fraction", dens.summary.get("chance_fraction"))
        put("intra_inter_ratio", dens.summary.get("intra_inter_ratio"))
        put("graph_convexity", graph.summary.get("convexity"))
        put("graph_node_fraction", graph.summary.get("node_fraction"))
        for c in dens.per_class:
            cls = {"class": c.label, "class_name": c.name, "class_count": c.count}
            for k in dens.ks:
                put("knn_distance", c.knn_distance.get(k), "class", k=k, **cls)
                put("knn_distance_rel", _ratio(c.knn_distance.get(k), scale), "class", k=k, **cls)
                put("same_class_fraction", c.same_class_fraction.get(k), "class", k=k, **cls)
            put("chance_fraction", c.chance_fraction, "class", **cls)
            put("intra_inter_ratio", c.intra_inter_ratio, "class", **cls)
        for c in graph.per_class:
            cls = {"class": c.label, "class_name": c.name, "class_count": c.count}
            put("graph_convexity", c.convexity, "class", pairs=c.reachable, **cls)
            put("graph_node_fraction", c.node_fraction, "class", pairs=c.reachable, **cls)
        if li is not None:
            for tau in li.taus:
                put(
                    "li_convexity", li.summary["convexity"].get(f"{tau:g}"), tau=tau, pairs=li.pairs_per_class
                )
            put("li_argmax", li.summary.get("argmax"))
            put("li_endpoint_argmax", li.summary.get("endpoint_argmax"))
            for c in li.per_class:
                cls = {"class": c.label, "class_name": c.name, "class_count": c.count, "pairs": c.pairs}
                for tau in li.taus:
                    put("li_convexity", c.convexity.get(tau), "class", tau=tau, **cls)
                put("li_argmax", c.argmax, "class", **cls)
    extra = {k: info[k] for k in ("li_convexity_skipped", "head_max_abs_logit_diff") if k in info}
    rows.append(
        {
            **common,
            "embedding": "fused",
            "scope": "info",
            "metric": "head_agreement",
            "value": info.get("head_agreement"),
            **extra,
        }
    )
    rows.append(
        {
            **common,
            "embedding": None,
            "scope": "info",
            "metric": "geometry_accuracy",
            "value": info.get("accuracy"),
        }
    )
    return rows


@CELLS.computes(GeometryCell)
def geometry(c: GeometryCell, ctx: CellContext) -> list[dict[str, Any]]:
    """Density and convexity of every embedding (`robustlab.geometry.model_geometry`) on ``max_items``
    seeded items of the split, as rows (see `geometry_rows`)."""
    import torch

    from ....geometry import model_geometry

    model = ctx.model()
    items = ctx.split_items(c.split, c.max_items or None, seed=c.sample_seed)
    cfg = geometry_config(c)
    result = model_geometry(model, items, cfg, threads=max(1, torch.get_num_threads()))
    return geometry_rows(result, c.split)


# ----------------------------------------------------------------------------------------------- per class


def class_names(model: Any) -> tuple[str, ...]:
    """Class names of a model's spec ("" when it has none)."""
    return tuple(getattr(getattr(model, "spec", None), "label_names", ()) or ())


def per_class_rows(
    ok: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    names: tuple[str, ...],
    seed: int,
    n_boot: int,
    base: Mapping[str, Any],
    metric: str,
) -> list[dict[str, Any]]:
    """One ``metric`` row per class: `estimate` of the per-example values ``ok`` of the class's members
    (class indices, or multi-hot labels: every class an example is tagged with)."""
    from ....geometry import membership

    member = membership(labels, num_classes)
    out = []
    for cls in range(member.shape[1]):
        rows = member[:, cls]
        out.append(
            {
                **base,
                "metric": metric,
                "class": cls,
                "class_name": names[cls] if cls < len(names) else "",
                **estimate(ok[rows], seed, n_boot),
            }
        )
    return out


def _class_batches(c: ClassAttack | ClassNoise, ctx: CellContext) -> Any:
    """The batches of a per-class cell: ``c.items`` test items drawn with ``c.sample_seed`` (all when 0)."""
    return ctx.split_batches("test", c.batch_size, c.items or None, seed=c.sample_seed)


@CELLS.computes(ClassAttack)
def class_attack(c: ClassAttack, ctx: CellContext) -> list[dict[str, Any]]:
    """Per-class clean and robust accuracy (``class_clean_accuracy``, ``class_robust_accuracy``) under one
    attack and budget on the condition's seeded test subset, with n and 95% bootstrap intervals per class."""
    atk_mod = attack_compute._attacks()
    model = ctx.model()
    threat = atk_mod.Threat(c.norm, c.eps, c.modality)
    attack = atk_mod.create(c.attack, model, threat, seed=ctx.seed, **c.kwargs)
    clean_ok, adv_ok, labels = [], [], []
    for batch in _class_batches(c, ctx):
        clean_ok.append(predict_correct(model, batch))
        adv_ok.append(predict_correct(model, attack(batch)))
        labels.append(batch["label"].cpu().numpy())
    lab = np.concatenate(labels, 0)
    k = int(model.spec.num_classes)
    names = class_names(model)
    ident = {
        "attack": c.attack,
        "norm": c.norm,
        "eps": c.eps,
        "modality": c.modality,
        "threat": threat.label,
        "protocol": attack.protocol(),
        "subset_items": int(len(lab)),
    }
    return [
        *per_class_rows(concat(clean_ok), lab, k, names, ctx.seed, c.n_boot, ident, "class_clean_accuracy"),
        *per_class_rows(concat(adv_ok), lab, k, names, ctx.seed, c.n_boot, ident, "class_robust_accuracy"),
    ]


@CELLS.computes(ClassNoise)
def class_noise(c: ClassNoise, ctx: CellContext) -> list[dict[str, Any]]:
    """Per-class accuracy (``class_noise_accuracy``) under one perturbation at each level on the condition's
    seeded test subset; the draws are seeded as in noise_sweep (cell seed + batch index)."""
    from .... import perturbations as rp

    model = ctx.model()
    pert = rp.create(c.perturbation, **c.options)
    k = int(model.spec.num_classes)
    names = class_names(model)
    out: list[dict[str, Any]] = []
    for level in c.levels:
        oks, labels = [], []
        for i, batch in enumerate(_class_batches(c, ctx)):
            noisy = pert(batch, level, sample_rate=ctx.sample_rate, seed=(ctx.seed + i) & 0x7FFFFFFF)
            oks.append(predict_correct(model, noisy))
            labels.append(batch["label"].cpu().numpy())
        ident = {
            "perturbation": c.perturbation,
            "modality": c.modality,
            "level_kind": c.level_kind,
            "level": float(level),
            "subset_items": int(sum(len(x) for x in labels)),
        }
        out += per_class_rows(
            concat(oks),
            np.concatenate(labels, 0),
            k,
            names,
            ctx.seed,
            c.n_boot,
            ident,
            "class_noise_accuracy",
        )
    return out


__all__ = ["CELLS", "class_attack", "class_noise", "geometry", "geometry_config", "geometry_rows"]
