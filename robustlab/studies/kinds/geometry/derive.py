"""Run-level rows of ``geometry``: Spearman rank correlations of density / convexity with robustness.

* **Across models** (``spearman_models``), per dataset and over all models when the part holds several
  datasets (group ``all``: only where at least two datasets contribute points, else it repeats a dataset's
  row): each headline geometry metric of an embedding (``knn_distance_rel`` and ``same_class_fraction``
  at ``headline_k``, ``intra_inter_ratio``, ``graph_convexity``, ``li_convexity`` at ``headline_tau``) against
  (a) eps* of the modality the embedding belongs to (the fused latent: of every attacked modality), oriented
  so that a larger value is a more robust model (SNR budgets are negated: a higher dB is a weaker attack), an
  eps* not reached within the grid ranked above every reached one; and (b) the mean noise-suite accuracy over
  the (perturbation, level) pairs every model has, restricted to the embedding's modality (fused: all).
* **Across classes** (``spearman_classes``), per model: the per-class values of the same metrics against the
  per-class robust accuracy of the `ClassAttack` cell of the embedding's modality (the fused latent: every
  attacked modality) and the per-class mean accuracy over the noise suite (`ClassNoise` cells).

Rank correlations and p-values come from `robustlab.metrics.correlation.spearman`: exact (every
permutation) for n <= 9 points, else the t approximation.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import numpy as np

from ....metrics.correlation import spearman
from ..base import RowIndex, RunInfo
from ..noise_sweep.derive import common_mean
from .plan import Options

# ----------------------------------------------------------------------------------------------- inputs


def headline_metrics(options: Options) -> list[tuple[str, dict[str, Any]]]:
    """The geometry metrics that are correlated: (metric, fields that select it)."""
    return [
        ("knn_distance_rel", {"k": options.headline_k}),
        ("same_class_fraction", {"k": options.headline_k}),
        ("intra_inter_ratio", {}),
        ("graph_convexity", {}),
        ("li_convexity", {"tau": options.headline_tau}),
    ]


def metric_label(metric: str, sel: Mapping[str, Any]) -> str:
    """``same_class_fraction@k=10`` style label of a geometry metric."""
    extra = ",".join(f"{k}={v:g}" for k, v in sel.items())
    return f"{metric}@{extra}" if extra else metric


def _num(v: Any) -> bool:
    return isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(float(v))


def _matches(r: Mapping[str, Any], sel: Mapping[str, Any]) -> bool:
    return all(r.get(k) is not None and float(r.get(k)) == float(v) for k, v in sel.items())


def geometry_values(
    rows: Sequence[Mapping[str, Any]], metric: str, sel: Mapping[str, Any], scope: str = "summary"
) -> dict[tuple, float]:
    """(model, embedding[, class]) -> value of one geometry metric."""
    out: dict[tuple, float] = {}
    for r in rows:
        if r.get("metric") != metric or r.get("scope") != scope or not _num(r.get("value")):
            continue
        if not _matches(r, sel):
            continue
        key = (
            (r["model"], r.get("embedding"))
            if scope == "summary"
            else (r["model"], r.get("embedding"), r.get("class"))
        )
        out[key] = float(r["value"])
    return out


def oriented_eps_star(row: Mapping[str, Any]) -> float | None:
    """eps* oriented so that larger = more robust: radii as they are, dB budgets negated (ask the norm's
    `Threat`); not reached within the grid -> beyond the strongest grid budget (ranks above every reached
    value)."""
    from ....reports.layouts import budget_order

    threat = budget_order(str(row.get("norm")))
    sign = 1.0 if threat.larger_is_stronger else -1.0
    v = row.get("value")
    grid = [float(g) for g in row.get("grid") or []]
    if _num(v):
        return sign * float(v)
    if not grid:
        return None
    strongest = float(threat.strongest(grid))
    return sign * strongest + abs(strongest) + 1.0  # beyond every grid budget, in the robust direction


def embedding_modalities(embedding: str | None, modalities: Sequence[str]) -> list[str]:
    """The attacked modalities an embedding is compared with: its own, or all for the fused latent."""
    if embedding in modalities:
        return [str(embedding)]
    return list(modalities) if embedding == "fused" else []


def _every_model_has(noise: Sequence[Mapping[str, Any]], modality: str, models: Iterable[str]) -> bool:
    """Whether each of ``models`` has a noise row of ``modality`` (so the common cells include it)."""
    have = {r["model"] for r in noise if r.get("modality") == modality}
    wanted = set(models)
    return bool(wanted) and wanted <= have


def _pooled(xs: Mapping[Any, float], ys: Mapping[Any, float], dataset_of: Mapping[str, str]) -> bool:
    """Whether the points both ``xs`` and ``ys`` have come from at least two datasets."""
    return len({dataset_of.get(str(k)) for k in xs if k in ys}) >= 2


def _corr_row(xs: dict[Any, float], ys: dict[Any, float], base: dict[str, Any]) -> dict[str, Any]:
    keys = [k for k in xs if k in ys]
    row: dict[str, Any] = {
        **base,
        "n": len(keys),
        "points": [str(k) for k in keys],
        "geometry": [xs[k] for k in keys],
        "robustness": [ys[k] for k in keys],
    }
    res = spearman([xs[k] for k in keys], [ys[k] for k in keys])
    row.update(value=res.value, p_value=res.p_value, p_method=res.method, message=res.message)
    return row


# ----------------------------------------------------------------------------------------------- derive


def across_models(options: Options, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``spearman_models`` rows (see the module doc)."""
    datasets: dict[str, list[str]] = {}
    for r in rows:
        datasets.setdefault(str(r.get("dataset")), [])
        if r["model"] not in datasets[str(r.get("dataset"))]:
            datasets[str(r.get("dataset"))].append(r["model"])
    groups = dict(datasets)
    if len(datasets) > 1:
        groups["all"] = [m for ms in datasets.values() for m in ms]
    dataset_of = {m: d for d, ms in datasets.items() for m in ms}
    eps_rows = [r for r in rows if r.get("metric") == "eps_star"]
    noise_rows = [r for r in rows if r.get("metric") == "accuracy" and r.get("perturbation")]
    targets: list[tuple[str, Mapping[str, Any], Any]] = []
    for modality, norm in dict.fromkeys((r.get("modality"), r.get("norm")) for r in eps_rows):
        vals = {}
        for r in eps_rows:
            if r.get("modality") == modality and r.get("norm") == norm:
                v = oriented_eps_star(r)
                if v is not None:
                    vals[r["model"]] = v
        targets.append(("eps_star", {"target_modality": modality, "norm": norm}, vals))
    out: list[dict[str, Any]] = []
    embeddings = list(
        dict.fromkeys(r.get("embedding") for r in rows if r.get("scope") == "summary" and r.get("embedding"))
    )
    attacked = list(dict.fromkeys(r.get("modality") for r in eps_rows))
    for group, models in groups.items():
        for emb in embeddings:
            noise_mods = [emb] if emb in ("audio", "visual") else ["audio", "visual"]
            noise = [r for r in noise_rows if r["model"] in models and r.get("modality") in noise_mods]
            noise_score = common_mean(noise, ("perturbation", "level"), models)
            noise_mods = [m for m in noise_mods if _every_model_has(noise, m, noise_score)]
            for metric, sel in headline_metrics(options):
                geo = {
                    m: v
                    for (m, e), v in geometry_values(rows, metric, sel).items()
                    if e == emb and m in models
                }
                if not geo:
                    continue
                base = {
                    "metric": "spearman_models",
                    "group": group,
                    "embedding": emb,
                    "geometry_metric": metric_label(metric, sel),
                }
                for target, fields, vals in targets:
                    if fields["target_modality"] not in embedding_modalities(emb, attacked):
                        continue
                    ys = {m: v for m, v in vals.items() if m in models}
                    if not ys:  # no model of the group reads this modality
                        continue
                    if group == "all" and not _pooled(geo, ys, dataset_of):  # = a dataset's own row
                        continue
                    out.append(_corr_row(geo, ys, {**base, "target": target, **fields}))
                if noise_score and (group != "all" or _pooled(geo, noise_score, dataset_of)):
                    out.append(
                        _corr_row(
                            geo,
                            noise_score,
                            {**base, "target": "noise_accuracy", "target_modality": "+".join(noise_mods)},
                        )
                    )
    return out


def across_classes(options: Options, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """``spearman_classes`` rows (see the module doc)."""
    robust: dict[tuple, dict[int, float]] = {}
    attacks: dict[tuple, Mapping[str, Any]] = {}
    for r in rows:
        if r.get("metric") == "class_robust_accuracy" and _num(r.get("value")):
            key = (r["model"], r.get("modality"))
            robust.setdefault(key, {})[int(r["class"])] = float(r["value"])
            attacks[key] = r
    noise: dict[tuple, dict[int, list[float]]] = {}
    for r in rows:
        if r.get("metric") == "class_noise_accuracy" and _num(r.get("value")):
            noise.setdefault((r["model"], r.get("modality")), {}).setdefault(int(r["class"]), []).append(
                float(r["value"])
            )
    out: list[dict[str, Any]] = []
    models = list(dict.fromkeys(r["model"] for r in rows))
    for model in models:
        attacked = [m for (mm, m) in robust if mm == model]
        embeddings = list(
            dict.fromkeys(
                r.get("embedding") for r in rows if r["model"] == model and r.get("scope") == "class"
            )
        )
        for emb in embeddings:
            for metric, sel in headline_metrics(options):
                geo = {
                    c: v
                    for (m, e, c), v in geometry_values(rows, metric, sel, "class").items()
                    if m == model and e == emb
                }
                if not geo:
                    continue
                base = {
                    "metric": "spearman_classes",
                    "model": model,
                    "embedding": emb,
                    "geometry_metric": metric_label(metric, sel),
                }
                for mod in embedding_modalities(emb, attacked):
                    a = attacks[(model, mod)]
                    out.append(
                        _corr_row(
                            geo,
                            robust[(model, mod)],
                            {
                                **base,
                                "target": "class_robust_accuracy",
                                "target_modality": mod,
                                "attack": a.get("attack"),
                                "norm": a.get("norm"),
                                "eps": a.get("eps"),
                            },
                        )
                    )
                mods = [emb] if emb in ("audio", "visual") else ["audio", "visual"]
                mods = [m for m in mods if (model, m) in noise]
                merged: dict[int, list[float]] = {}
                for mod in mods:
                    for c, vs in noise.get((model, mod), {}).items():
                        merged.setdefault(c, []).extend(vs)
                if merged:
                    ys = {c: float(np.mean(v)) for c, v in merged.items()}
                    out.append(
                        _corr_row(
                            geo,
                            ys,
                            {**base, "target": "class_noise_accuracy", "target_modality": "+".join(mods)},
                        )
                    )
    return out


def correlations(options: Options, index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """The part's ``spearman_models`` and ``spearman_classes`` rows (this run's rows of the part only)."""
    if not options.correlate or not index.sources:
        return []
    rows = [r for r in index.select(index.sources[0], part=part) if r.get("cell") != "derived"]
    if not rows:
        return []
    return across_models(options, rows) + across_classes(options, rows)


__all__ = [
    "across_classes",
    "across_models",
    "correlations",
    "embedding_modalities",
    "geometry_values",
    "headline_metrics",
    "metric_label",
    "oriented_eps_star",
]
