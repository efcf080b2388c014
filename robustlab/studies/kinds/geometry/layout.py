"""Report layout of ``geometry`` (registered with `robustlab.reports.layouts.LAYOUTS`): density and
convexity per model and embedding, per-class convexity bars, robustness (eps*, noise, per class), and the
Spearman correlations across models (with density-vs-eps* scatter plots) and across classes."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ....metrics.correlation import with_q_values
from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, budget_order, fmt_value_ci
from ....reports.protocol import ProtocolEntries, fmt_eps_star


def _pick(rows: Sequence[Mapping[str, Any]], **match: Any) -> list[Mapping[str, Any]]:
    return [r for r in rows if all(r.get(k) == v for k, v in match.items())]


def _headline(rows: Sequence[Mapping[str, Any]], key: str) -> Any:
    """The headline k / tau of the correlations (from the derived rows' metric labels), else the middle
    one."""
    for r in rows:
        label = str(r.get("geometry_metric", ""))
        if f"@{key}=" in label:
            return float(label.split(f"@{key}=")[1].split(",")[0])
    values = sorted({float(r[key]) for r in rows if r.get(key) is not None})
    return values[len(values) // 2] if values else None


#: the row fields of a correlation table, after its group / model column (the norm goes after the first 4)
_CORR = (
    "embedding",
    "geometry_metric",
    "target",
    "target_modality",
    "value",
    "p_value",
    "q_value",
    "p_method",
    "n",
    "message",
)


@LAYOUTS.register("geometry")
class GeometryLayout(ReportLayout):
    """Protocol and sections of ``geometry`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        entries = ProtocolEntries()
        geo = _pick(rows, metric="same_class_fraction", scope="summary")
        ks = sorted({r.get("k") for r in geo if r.get("k") is not None})
        taus = sorted({r.get("tau") for r in rows if r.get("metric") == "li_convexity" and r.get("tau")})
        pairs = sorted({r.get("pairs") for r in _pick(rows, metric="li_convexity", scope="summary")} - {None})
        for r in geo:
            entries.add(
                {
                    "method": "geometry (faiss kNN density, Li and graph convexity)",
                    "split": r.get("split"),
                    "n": r.get("n"),
                    "k": ks,
                    "tau": taus,
                    "Li pairs per class (M)": pairs,
                    "seeds": r.get("seed"),
                }
            )
        for r in rows:
            if r.get("metric") == "eps_star":
                entries.add_eps_star(r)
            elif r.get("metric") == "class_robust_accuracy" and r.get("class") == 0:
                p = r.get("protocol") or {}
                entries.add(
                    {
                        "method": f"per-class {r.get('attack')}",
                        "modality": r.get("modality"),
                        "norm": r.get("norm"),
                        "eps": [r.get("eps")],
                        "steps": p.get("steps"),
                        "restarts": p.get("restarts"),
                        "n": r.get("subset_items"),
                        "other": "seeded test subset",
                        "seeds": r.get("seed"),
                    }
                )
            elif r.get("metric") == "accuracy" and r.get("perturbation"):
                entries.add_noise(r)
        return entries.entries

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        sections: list[Section] = []
        summary = [r for r in rows if r.get("scope") == "summary"]
        if summary:
            sections.append(self._geometry(rows, summary, figures))
        robustness = self._robustness(rows)
        if robustness is not None:
            sections.append(robustness)
        models_corr = _pick(rows, metric="spearman_models")
        if models_corr:
            sections.append(self._models_corr(models_corr, _pick(rows, metric="eps_star"), figures))
        class_corr = _pick(rows, metric="spearman_classes")
        if class_corr:
            sections.append(self._classes_corr(class_corr))
        per_class = self._per_class(rows)
        if per_class is not None:
            sections.append(per_class)
        return sections

    # ------------------------------------------------------------------------------------------- sections

    def _geometry(
        self, rows: Sequence[Mapping[str, Any]], summary: list[Mapping[str, Any]], figures: Any
    ) -> Section:
        import pandas as pd

        k = _headline(rows, "k")
        tau = _headline(rows, "tau")
        by: dict[tuple, dict[str, Mapping[str, Any]]] = {}
        for r in summary:
            if r.get("k") is not None and float(r["k"]) != k:
                continue
            if r.get("tau") is not None and float(r["tau"]) != tau:
                continue
            by.setdefault((r["model"], r.get("dataset"), r.get("embedding")), {})[r["metric"]] = r
        agreement = {r["model"]: r.get("value") for r in _pick(rows, metric="head_agreement")}
        table_rows = []
        for (model, dataset, emb), m in by.items():
            any_row = next(iter(m.values()))
            table_rows.append(
                [
                    model,
                    dataset,
                    emb,
                    any_row.get("n"),
                    any_row.get("dim"),
                    (m.get("knn_distance_rel") or {}).get("value"),
                    (m.get("same_class_fraction") or {}).get("value"),
                    (m.get("chance_fraction") or {}).get("value"),
                    (m.get("intra_inter_ratio") or {}).get("value"),
                    (m.get("graph_convexity") or {}).get("value"),
                    (m.get("li_convexity") or {}).get("value"),
                    (m.get("li_argmax") or {}).get("value"),
                    agreement.get(model) if emb == "fused" else None,
                    any_row.get("identical_to") or "",
                ]
            )
        blocks: list[Any] = [
            f"Per model and embedding (macro means over classes; k = {k:g}, tau = {tau:g}). kNN distance is "
            "divided by the embedding's mean pairwise distance (scale-free: lower = denser classes); "
            "same-class "
            "fraction = kNN label purity (chance = the class share); intra/inter < 1: classes more compact "
            "than their separation; graph convexity = share of same-class kNN-graph shortest paths staying "
            "in the class; Li convexity = share of same-class latent mixes the head keeps in the class with "
            "p >= tau (fused latent only; head agreement = how often the fused head alone reproduces the "
            "model's prediction).",
            Table(
                [
                    "model",
                    "dataset",
                    "embedding",
                    "n",
                    "dim",
                    f"kNN dist (rel) k={k:g}",
                    f"same-class k={k:g}",
                    "chance",
                    "intra/inter",
                    "graph convexity",
                    f"Li convexity tau={tau:g}",
                    "Li argmax",
                    "head agreement",
                    "same as",
                ],
                table_rows,
            ),
        ]
        per_class = pd.DataFrame(
            [
                r
                for r in rows
                if r.get("scope") == "class"
                and r.get("metric") in ("li_convexity", "graph_convexity")
                and (r.get("tau") is None or float(r["tau"]) == tau)
                and r.get("value") is not None
                and (r.get("metric") == "li_convexity" or not r.get("identical_to"))
            ]
        )
        if len(per_class):
            for (dataset, emb, metric), sub in per_class.groupby(
                ["dataset", "embedding", "metric"], sort=False
            ):
                label = "Li convexity" + (f" (p >= {tau:g})" if metric == "li_convexity" else "")
                if metric != "li_convexity":
                    label = "graph convexity"
                columns = "class_name" if sub["class_name"].astype(bool).all() else "class"
                blocks.append(
                    figures.heatmap(
                        sub.pivot_table(index="model", columns=columns, values="value", sort=False),
                        name=f"class_{metric}_{dataset}_{emb}",
                        title=f"Per-class {label}, {emb} embedding ({dataset})",
                        caption=f"{label} of the {emb} embedding per model (rows) and class (columns), "
                        f"{dataset}.",
                    )
                )
        return Section("Latent density and convexity", blocks, level=3)

    def _robustness(self, rows: Sequence[Mapping[str, Any]]) -> Section | None:
        eps = _pick(rows, metric="eps_star")
        clean = {r["model"]: r for r in _pick(rows, metric="clean_accuracy")}
        noise = [r for r in rows if r.get("metric") == "accuracy" and r.get("perturbation")]
        if not eps and not noise:
            return None
        targets = list(dict.fromkeys((r.get("modality"), r.get("norm")) for r in eps))
        eps_by = {(r["model"], r.get("modality"), r.get("norm")): r for r in eps}
        noise_by: dict[str, list[float]] = {}
        for r in noise:
            if r.get("value") is not None:
                noise_by.setdefault(r["model"], []).append(float(r["value"]))
        table_rows = []
        for model in dict.fromkeys(r["model"] for r in [*eps, *noise, *clean.values()]):
            vals = noise_by.get(model, [])
            table_rows.append(
                [
                    model,
                    fmt_value_ci(clean.get(model)),
                    *[fmt_eps_star(eps_by.get((model, m, n))) for m, n in targets],
                    sum(vals) / len(vals) if vals else None,
                    len(vals),
                ]
            )
        return Section(
            "Robustness of the models",
            [
                "Clean accuracy [95% CI], eps* (the weakest grid budget bringing accuracy to the "
                "deactivation level; SNR in dB: higher = weaker attack) and the mean accuracy over this "
                "model's noise-suite "
                "cells (the correlations use only the cells every model has).",
                Table(
                    [
                        "model",
                        "clean",
                        *[f"eps* {m} {n}" for m, n in targets],
                        "mean noise accuracy",
                        "noise cells",
                    ],
                    table_rows,
                ),
            ],
            level=3,
        )

    def _models_corr(
        self, corr: list[Mapping[str, Any]], eps_rows: list[Mapping[str, Any]], figures: Any
    ) -> Section:

        blocks: list[Any] = [
            "Spearman rank correlation across models between each geometry metric (macro mean over classes) "
            "and robustness: eps* oriented so that larger = more robust (SNR eps* negated; eps* not reached "
            "in the grid ranks above all reached values), and the mean noise-suite accuracy over the cells "
            "every model of the group has, in the embedding's modality (fused: all). p exact (every "
            "permutation) up to 9 models; q: Benjamini-Hochberg q-value over every row of the table. "
            "Groups: per dataset, and 'all' when the part holds several (rows to which at least two datasets "
            "contribute; pooled datasets differ in inputs, budgets and models, so a pooled correlation can "
            "reflect the datasets rather than the geometry: read the per-dataset groups first).",
            Table(
                [
                    "group",
                    "embedding",
                    "geometry metric",
                    "target",
                    "modality",
                    "norm",
                    "rho",
                    "p-value",
                    "q (BH)",
                    "p from",
                    "n",
                    "note",
                ],
                [[r.get(k) for k in ("group", *_CORR[:4], "norm", *_CORR[4:])] for r in with_q_values(corr)],
            ),
        ]
        for r in corr:
            if (
                str(r.get("geometry_metric", "")).startswith("same_class_fraction")
                and r.get("target") == "eps_star"
                and r.get("group") != "all"
                and len(r.get("points") or []) >= 2
            ):
                blocks.append(self._density_vs_eps(r, eps_rows, figures))
        return Section("Geometry vs robustness across models", blocks, level=3)

    def _density_vs_eps(
        self, corr: Mapping[str, Any], eps_rows: list[Mapping[str, Any]], figures: Any
    ) -> Any:
        """Scatter of one across-models correlation: same-class fraction vs eps* per model, an eps* beyond
        the grid drawn at twice its strongest budget (10 dB below it for SNR) with its own marker."""
        import pandas as pd

        mod, norm, group, emb = (corr.get(k) for k in ("target_modality", "norm", "group", "embedding"))
        eps = {r.get("model"): r for r in eps_rows if r.get("modality") == mod and r.get("norm") == norm}
        order = budget_order(str(norm))
        points = []
        for model, density in zip(corr["points"], corr["geometry"]):
            e = eps.get(model) or {}
            grid = [float(g) for g in e.get("grid") or []]
            if e.get("value") is not None:
                y, status = float(e["value"]), "reached"
            elif grid:
                strongest = float(order.strongest(grid))
                y = 2 * strongest if order.larger_is_stronger else strongest - 10.0
                status = "beyond the grid"
            else:
                continue
            name = re.sub(r"_[^_.@]+(@seed\d+)?$", lambda m: m.group(1) or "", str(model))
            points.append({"model": name, "density": density, "eps": y, "eps*": status})
        rho = "–" if corr.get("value") is None else format(corr["value"], ".2f")
        return figures.scatter(
            pd.DataFrame(points),
            x="density",
            y="eps",
            hue="model",
            style="eps*",
            logy=order.larger_is_stronger,
            name=f"density_vs_eps_{group}_{emb}_{mod}_{norm}",
            title=f"Same-class fraction vs eps* ({group}, {emb}; rho {rho})",
            caption=f"kNN same-class fraction of the {emb} embedding vs eps* ({mod} {norm}) per model of "
            f"{group} (Spearman rho {rho}); an eps* beyond the grid is drawn past its strongest budget.",
            xlabel=f"same-class kNN fraction ({emb} embedding)",
            ylabel=f"eps* {mod} {norm}",
        )

    def _classes_corr(self, corr: list[Mapping[str, Any]]) -> Section:
        summary: dict[tuple, list[float]] = {}
        for r in corr:
            if r.get("value") is not None:
                key = (
                    r.get("embedding"),
                    r.get("geometry_metric"),
                    r.get("target"),
                    r.get("target_modality"),
                )
                summary.setdefault(key, []).append(float(r["value"]))
        blocks: list[Any] = [
            "Spearman rank correlation across the classes of each model between the per-class geometry "
            "metric and the per-class robust accuracy under the per-class attack of the modality (the "
            "protocol table gives attack and budget) or the per-class mean noise-suite accuracy. The first "
            "table summarises the per-model correlations.",
            Table(
                [
                    "embedding",
                    "geometry metric",
                    "target",
                    "modality",
                    "models",
                    "mean rho",
                    "models with rho > 0",
                ],
                [
                    [e, g, t, m, len(v), sum(v) / len(v), sum(1 for x in v if x > 0)]
                    for (e, g, t, m), v in summary.items()
                ],
            ),
            Table(
                [
                    "model",
                    "embedding",
                    "geometry metric",
                    "target",
                    "modality",
                    "rho",
                    "p-value",
                    "q (BH)",
                    "p from",
                    "classes",
                    "note",
                ],
                [[r.get(k) for k in ("model", *_CORR)] for r in with_q_values(corr)],
            ),
        ]
        return Section("Geometry vs robustness across classes", blocks, level=3)

    def _per_class(self, rows: Sequence[Mapping[str, Any]]) -> Section | None:
        k, tau = _headline(rows, "k"), _headline(rows, "tau")
        geo: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            if r.get("scope") != "class" or r.get("embedding") != "fused":
                continue
            if r.get("k") is not None and float(r["k"]) != k:
                continue
            if r.get("tau") is not None and float(r["tau"]) != tau:
                continue
            geo.setdefault(
                (r["model"], r.get("class")), {"name": r.get("class_name"), "count": r.get("class_count")}
            )[r["metric"]] = r
        if not geo:
            return None
        robust: dict[tuple, dict[str, Any]] = {}
        noise: dict[tuple, list[float]] = {}
        for r in rows:
            if r.get("metric") == "class_robust_accuracy":
                robust.setdefault((r["model"], r.get("class")), {})[r.get("modality")] = r
            elif r.get("metric") == "class_noise_accuracy" and r.get("value") is not None:
                noise.setdefault((r["model"], r.get("class")), []).append(float(r["value"]))
        mods = sorted({m for d in robust.values() for m in d})
        table_rows = []
        for (model, cls), g in geo.items():
            nv = noise.get((model, cls), [])
            table_rows.append(
                [
                    model,
                    g.get("name") or cls,
                    g.get("count"),
                    (g.get("same_class_fraction") or {}).get("value"),
                    (g.get("li_convexity") or {}).get("value"),
                    (g.get("graph_convexity") or {}).get("value"),
                    *[fmt_value_ci(robust.get((model, cls), {}).get(m)) for m in mods],
                    sum(nv) / len(nv) if nv else None,
                ]
            )
        return Section(
            "Per class (fused embedding)",
            [
                f"Per class: density (same-class kNN fraction, k = {k:g}), Li convexity (tau = {tau:g}) "
                "and graph "
                "convexity of the fused latent, robust accuracy [95% CI] under the per-class attack of each "
                "modality, and the mean accuracy over the noise suite.",
                Table(
                    [
                        "model",
                        "class",
                        "count",
                        "same-class",
                        "Li convexity",
                        "graph convexity",
                        *[f"robust ({m})" for m in mods],
                        "noise accuracy",
                    ],
                    table_rows,
                ),
            ],
            level=3,
        )


__all__ = ["GeometryLayout"]
