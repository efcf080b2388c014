"""Report layout of ``sharpness`` (registered with `robustlab.reports.layouts.LAYOUTS`): the protocol of every
measure, the per-model table, per-modality input measures, sharpness at every radius, the Hessian spectrum,
the rank-correlation table with a scatter of each measure against eps*, and the landscapes (1-D weight-space
curves of every model on one plot, a 2-D contour per model, the input-space loss along the adversarial
direction)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....metrics.correlation import with_q_values
from ....reports.document import Figure, Section, Table
from ....reports.figures import safe_name
from ....reports.layouts import LAYOUTS, ReportLayout, fmt_value_ci

#: how the Hessian estimators get their products (robustlab.sharpness.LossObjective.reusing_graphs)
_HVPS = "double-backward HVPs, gradient graphs kept between products"

#: protocol text of each cell metric: (method, HVP / estimator)
_METHODS = {
    "lambda_max": "top Hessian eigenvalues",
    "hessian_trace": "Hessian trace (Hutchinson, Rademacher probes)",
    "hessian_density": "Hessian spectral density (stochastic Lanczos quadrature)",
    "epsilon_sharpness": "epsilon-sharpness (Keskar et al. 2017)",
    "adaptive_sharpness": "adaptive sharpness (Kwon et al. 2021)",
    "landscape_1d": "1-D loss landscape (filter-normalised, Li et al. 2018)",
    "landscape_2d": "2-D loss landscape (filter-normalised, Li et al. 2018)",
    "input_gradient_norm": "input-gradient norm",
    "input_curvature": "input curvature |dominant input-Hessian eigenvalue|",
    "local_linearity": "local linearity (Qin et al. 2019)",
    "input_landscape": "input loss along the adversarial direction",
    "train_accuracy": "train accuracy (generalisation gap)",
    "clean_accuracy": "test accuracy",
    "eps_star": "eps* (potency)",
    "accuracy": "noise accuracy",
}


def measure_label(row: Mapping[str, Any]) -> str:
    """The name of the measure a row holds (a column of the per-model table, a row of the correlations)."""
    m = row.get("metric")
    mod = f" [{row['modality']}]" if row.get("modality") else ""
    if m == "lambda_max":
        return "lambda_max"
    if m == "hessian_trace":
        return "Hessian trace"
    if m == "hessian_density":
        return "lambda_max (Lanczos)"
    if m == "epsilon_sharpness":
        return f"eps-sharpness {row.get('norm')} {row.get('radius'):g}"
    if m == "adaptive_sharpness":
        if row.get("case") == "average":
            return f"adaptive average {row.get('radius'):g}"
        return f"adaptive {row.get('norm')} {row.get('radius'):g}"
    if m == "input_gradient_norm":
        return f"input gradient {row.get('norm')}{mod}"
    if m == "input_curvature":
        return f"input curvature{mod}"
    if m == "local_linearity":
        return f"local linearity {row.get('norm')} {row.get('eps'):g}{mod}"
    if m == "landscape_1d":
        return "landscape 1-D rise"
    if m == "landscape_2d":
        return "landscape 2-D rise"
    if m == "input_landscape":
        return f"adversarial rise {row.get('norm')} {row.get('eps'):g}{mod}"
    return str(m)


def _join(values: Any) -> str | None:
    vals = sorted({v for v in values if v is not None}, key=lambda v: (str(type(v)), v))
    return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in vals) or None


def _first(rows: Sequence[Mapping[str, Any]], **match: Any) -> Mapping[str, Any] | None:
    for r in rows:
        if all(r.get(k) == v for k, v in match.items()):
            return r
    return None


def _pm(row: Mapping[str, Any] | None) -> str:
    if row is None or row.get("value") is None:
        return "–"
    se = row.get("stderr")
    return f"{row['value']:.4g} ± {se:.2g}" if se is not None else f"{row['value']:.4g}"


def _eps(row: Mapping[str, Any] | None) -> Any:
    if row is None:
        return None
    if row.get("censored"):
        grid = row.get("grid") or []
        return f"> grid ({max(grid):g})" if grid else "> grid"
    if row.get("at_weakest") and row.get("value") is not None:
        return f"≤ {row['value']:.4g}"
    return row.get("value")


def _claim(figures: Any, base: str) -> str:
    """A file name under the figures folder no other figure of the report has (recorded as written)."""
    base = safe_name(base)
    name, k = f"{base}.png", 2
    while name in figures.written:
        name, k = f"{base}-{k}.png", k + 1
    figures.folder.mkdir(parents=True, exist_ok=True)
    figures.written.append(name)
    return name


def _save(figures: Any, fig: Any, base: str, caption: str, tight: bool = True) -> Figure:
    """Save a matplotlib figure drawn here into the figures folder (as `FigureWriter` does) and close it."""
    import matplotlib.pyplot as plt

    name = _claim(figures, base)
    extra = {"bbox_inches": "tight"} if tight else {}
    fig.savefig(figures.folder / name, dpi=figures.dpi, metadata={"Software": None}, **extra)
    plt.close(fig)
    return Figure(name, caption)


@LAYOUTS.register("sharpness")
class SharpnessLayout(ReportLayout):
    """Protocol and sections of ``sharpness`` rows."""

    # -- protocol --------------------------------------------------------------------------------------
    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            metric = r.get("metric")
            if metric not in _METHODS or r.get("cell") == "derived":
                continue
            if metric == "accuracy" and r.get("perturbation") in (None, "none"):
                continue
            key: tuple = (metric, r.get("case"), r.get("norm"), r.get("modality"), r.get("perturbation"))
            e = seen.setdefault(
                key,
                {
                    "method": _METHODS[metric]
                    + (
                        f" ({r.get('case')}, {r.get('norm')})"
                        if metric in ("adaptive_sharpness", "epsilon_sharpness")
                        else ""
                    )
                    + (f" {r.get('perturbation')}" if metric == "accuracy" else ""),
                    "split": r.get("split") or ("test" if metric in ("eps_star", "accuracy") else None),
                    "modality": r.get("modality"),
                    "n": set(),
                    "train seed": set(),
                    "iterations": set(),
                    "radii": set(),
                    "HVP / estimator": None,
                    "seeds": set(),
                },
            )
            e["n"].add(r.get("n"))
            e["seeds"].add(r.get("seed"))
            e["train seed"].add(r.get("train_seed"))
            if metric == "lambda_max":
                e["iterations"].add(
                    f"{r.get('iters')} (tol {r.get('tol'):g}), top-{len(r.get('values') or [])}"
                )
                e["HVP / estimator"] = f"{r.get('method')} iteration, {_HVPS}"
            elif metric == "hessian_trace":
                e["iterations"].add(f"{r.get('samples')} probes")
                e["HVP / estimator"] = f"Hutchinson, {_HVPS}"
            elif metric == "hessian_density":
                e["iterations"].add(f"{r.get('runs')} x {r.get('iters')} Lanczos steps")
                e["HVP / estimator"] = f"Lanczos, {_HVPS}"
            elif metric in ("epsilon_sharpness", "adaptive_sharpness"):
                e["radii"].add(r.get("radius"))
                what = "draws" if r.get("case") == "average" else "ascent steps"
                e["iterations"].add(f"{r.get('steps')} {what}" + (f", m={r['m']}" if r.get("m") else ""))
                e["HVP / estimator"] = (
                    "Gaussian samples" if r.get("case") == "average" else "projected gradient ascent"
                ) + (f", eta {r.get('eta'):g}" if metric == "adaptive_sharpness" else "")
            elif metric in ("landscape_1d", "landscape_2d"):
                e["radii"].add(f"alpha {r.get('span')}")
                e["iterations"].add(f"{len(r.get('alphas') or [])} points per axis")
            elif metric == "input_curvature":
                e["iterations"].add(f"{r.get('iters')} power iterations")
                e["HVP / estimator"] = "input HVPs (double backward)"
            elif metric == "local_linearity":
                e["radii"].add(f"{r.get('norm')} {r.get('eps'):g}")
                e["iterations"].add(f"{r.get('steps')} ascent steps")
            elif metric == "input_gradient_norm":
                e["radii"].add(f"norm {r.get('norm')}")
            elif metric == "input_landscape":
                e["radii"].add(f"{r.get('norm')} {r.get('eps'):g} x t")
                e["iterations"].add(f"{len(r.get('ts') or [])} points")
            elif metric == "eps_star":
                e["radii"].add(
                    f"{r.get('norm')} grid {min(r.get('grid') or [0]):g} … "
                    f"{max(r.get('grid') or [0]):g} ({len(r.get('grid') or [])} points)"
                )
                e["HVP / estimator"] = f"{r.get('attack')}, level {r.get('level')}"
            elif metric == "accuracy":
                e["radii"].add(r.get("level"))
        out = []
        for e in seen.values():
            for k in ("n", "train seed", "iterations", "radii", "seeds"):
                e[k] = _join(e[k])
            out.append(e)
        return out

    # -- sections ----------------------------------------------------------------------------------------
    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        models = list(dict.fromkeys(str(r["model"]) for r in rows if r.get("model") is not None))
        if not models:
            return []
        sections = [self._per_model(rows, models)]
        inputs = [
            r
            for r in rows
            if r.get("metric")
            in ("input_gradient_norm", "input_curvature", "local_linearity", "input_landscape")
        ]
        if inputs:
            sections.append(self._inputs(inputs, models))
        sharp = [r for r in rows if r.get("metric") in ("epsilon_sharpness", "adaptive_sharpness")]
        if sharp:
            sections.append(self._sharpness(sharp))
        hess = [r for r in rows if r.get("metric") in ("lambda_max", "hessian_trace", "hessian_density")]
        if hess:
            sections.append(self._hessian(hess, figures))
        corr = [r for r in rows if r.get("metric") == "rank_correlation"]
        if corr:
            skipped = [r for r in rows if r.get("metric") == "correlation_skipped"]
            sections.append(self._correlations(corr, skipped, figures))
        lands = [r for r in rows if r.get("metric") in ("landscape_1d", "landscape_2d", "input_landscape")]
        if lands:
            sections.append(self._landscapes(lands, figures))
        errors = [r for r in rows if r.get("metric") == "derive_error"]
        if errors:
            sections.append(Section("Derivation errors", [str(r.get("message")) for r in errors], level=3))
        return sections

    def _per_model(self, rows: Sequence[Mapping[str, Any]], models: list[str]) -> Section:
        eps_rows = [r for r in rows if r.get("metric") == "eps_star_used"]
        eps_mod = eps_rows[0].get("modality") if eps_rows else "audio"
        # the first radius of each weight-sharpness measure, and the eps* modality of the input measures
        sharp_cols: list[str] = []
        for r in rows:
            if r.get("metric") in ("epsilon_sharpness", "adaptive_sharpness"):
                label = measure_label(r)
                prefix = label.rsplit(" ", 1)[0]
                if not any(c.rsplit(" ", 1)[0] == prefix for c in sharp_cols):
                    sharp_cols.append(label)
        input_cols = []
        for metric in ("input_gradient_norm", "input_curvature", "local_linearity"):
            r = _first(rows, metric=metric, modality=eps_mod)
            if r is not None:
                input_cols.append(measure_label(r))
        cols = [
            "model",
            "dataset",
            "lambda_max",
            "trace ± SE",
            *sharp_cols,
            *input_cols,
            "eps*",
            "mean noise acc.",
            "clean acc.",
            "train acc.",
            "gap",
        ]
        table = []
        for m in models:
            mr = [r for r in rows if r.get("model") == m]
            by_label = {measure_label(r): r for r in mr if r.get("cell") != "derived"}
            dataset = next((r.get("dataset") for r in mr if r.get("dataset")), None)
            gap = _first(mr, metric="generalisation_gap")
            table.append(
                [
                    m,
                    dataset,
                    (_first(mr, metric="lambda_max") or {}).get("value"),
                    _pm(_first(mr, metric="hessian_trace")),
                    *[(by_label.get(c) or {}).get("value") for c in sharp_cols],
                    *[(by_label.get(c) or {}).get("value") for c in input_cols],
                    _eps(_first(mr, metric="eps_star_used")),
                    (_first(mr, metric="mean_noise_accuracy") or {}).get("value"),
                    fmt_value_ci(_first(mr, metric="clean_accuracy")),
                    fmt_value_ci(_first(mr, metric="train_accuracy")),
                    None if gap is None else gap.get("value"),
                ]
            )
        eps_src = _join(r.get("source") for r in eps_rows)
        noise_src = _join(r.get("source") for r in rows if r.get("metric") == "mean_noise_accuracy")
        notes = [
            "One row per model. Weight-space measures are on the seeded train subset (the training loss), "
            "input-space measures and accuracies on the test items. lambda_max: dominant eigenvalue of the "
            "training-loss Hessian; trace: Hutchinson estimate ± its standard error; sharpness columns at "
            "the first radius of each measure (every radius below); input measures on the "
            f"{eps_mod} input; eps*: the smallest budget at which the attack brings accuracy to the "
            "deactivation level ('> grid': not reached within it; '≤': reached at the weakest budget "
            "already); mean noise accuracy: over the "
            "(perturbation, level) conditions every model has; gap = train accuracy − test accuracy.",
        ]
        if eps_src or noise_src:
            notes.append(f"eps* from: {eps_src or '–'}; noise accuracy from: {noise_src or '–'}.")
        return Section("Sharpness per model", [*notes, Table(cols, table)], level=3)

    def _inputs(self, rows: Sequence[Mapping[str, Any]], models: list[str]) -> Section:
        table = []
        for m in models:
            mods = list(dict.fromkeys(r.get("modality") for r in rows if r.get("model") == m))
            for mod in mods:
                mr = [r for r in rows if r.get("model") == m and r.get("modality") == mod]
                land = _first(mr, metric="input_landscape")
                table.append(
                    [
                        m,
                        mod,
                        fmt_value_ci(_first(mr, metric="input_gradient_norm")),
                        fmt_value_ci(_first(mr, metric="input_curvature")),
                        fmt_value_ci(_first(mr, metric="local_linearity")),
                        None if land is None else land.get("value"),
                        max((r.get("n") or 0) for r in mr),
                    ]
                )
        g = _first(rows, metric="input_gradient_norm") or {}
        ll = [r for r in rows if r.get("metric") == "local_linearity"]
        eps = ", ".join(sorted({f"{r.get('modality')} {r.get('eps'):g}" for r in ll}))
        return Section(
            "Input-space measures per modality",
            [
                f"Per test example and modality (the other modality left clean), in raw input units; "
                f"mean [95% CI]. Gradient: {g.get('norm', '–')} norm of the loss gradient; curvature: "
                f"|dominant eigenvalue| of the input Hessian; local linearity: max |l(x+d) − l(x) − d·∇l| "
                f"over the ball ({eps}); adversarial rise: mean loss one eps-step along the first-order "
                "adversarial direction minus the clean loss.",
                Table(
                    [
                        "model",
                        "modality",
                        "input gradient",
                        "input curvature",
                        "local linearity",
                        "adversarial rise",
                        "n",
                    ],
                    table,
                ),
            ],
            level=3,
        )

    def _sharpness(self, rows: Sequence[Mapping[str, Any]]) -> Section:
        table = [
            [
                r.get("model"),
                r.get("measure"),
                r.get("case"),
                r.get("norm"),
                r.get("radius"),
                fmt_value_ci(r) if r.get("ci_low") is not None else r.get("value"),
                r.get("loss"),
                r.get("perturbed_loss"),
                r.get("steps"),
                r.get("m"),
                r.get("n"),
            ]
            for r in rows
        ]
        return Section(
            "Weight-space sharpness at every radius",
            [
                "Epsilon-sharpness: (max L(w+d) − L(w)) / (1 + L(w)) over |d_i| ≤ eps (|w_i| + 1); "
                "adaptive sharpness: max L(w+d) − L(w) over ||d / |w|||_p ≤ rho (worst case), or the mean "
                "over d = rho |w| N(0, I) (average case, ±1.96 SE). Losses are means over the train subset.",
                Table(
                    [
                        "model",
                        "measure",
                        "case",
                        "norm",
                        "radius",
                        "value",
                        "loss",
                        "perturbed loss",
                        "steps / draws",
                        "m",
                        "n",
                    ],
                    table,
                ),
            ],
            level=3,
        )

    def _hessian(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = []
        top = [r for r in rows if r.get("metric") == "lambda_max"]
        if top:
            blocks.append(
                Table(
                    ["model", "eigenvalues", "method", "converged", "HVPs", "parameters", "n"],
                    [
                        [
                            r.get("model"),
                            r.get("values"),
                            r.get("method"),
                            r.get("converged"),
                            r.get("hvps"),
                            r.get("n_params"),
                            r.get("n"),
                        ]
                        for r in top
                    ],
                    "Top Hessian eigenvalues of the training loss (power iteration: largest |lambda| first)",
                )
            )
        tr = [r for r in rows if r.get("metric") == "hessian_trace"]
        if tr:
            blocks.append(
                Table(
                    ["model", "trace", "SE", "95% CI", "probes", "parameters", "n"],
                    [
                        [
                            r.get("model"),
                            r.get("value"),
                            r.get("stderr"),
                            fmt_value_ci(r),
                            r.get("samples"),
                            r.get("n_params"),
                            r.get("n"),
                        ]
                        for r in tr
                    ],
                    "Hutchinson trace of the training-loss Hessian",
                )
            )
        dens = [r for r in rows if r.get("metric") == "hessian_density" and r.get("grid")]
        if dens:
            frames = [
                pd.DataFrame({"eigenvalue": r["grid"], "density": r["density"], "model": r["model"]})
                for r in dens
            ]
            blocks.append(
                figures.curves(
                    pd.concat(frames),
                    x="eigenvalue",
                    y="density",
                    hue="model",
                    facet="model",
                    ci=None,
                    ylim=None,
                    name="hessian_density",
                    title="Hessian eigenvalue density (SLQ)",
                    xlabel="eigenvalue",
                    ylabel="density",
                )
            )
        return Section("Hessian of the training loss", blocks, level=3)

    def _correlations(
        self, rows: Sequence[Mapping[str, Any]], skipped: Sequence[Mapping[str, Any]], figures: Any
    ) -> Section:
        rows = with_q_values(rows)
        table = [
            [
                r.get("group"),
                r.get("measure"),
                r.get("target"),
                r.get("n"),
                r.get("value"),
                r.get("p_value"),
                r.get("q_value"),
                r.get("p_method"),
                r.get("kendall_tau"),
                r.get("kendall_p"),
                r.get("message")
                or (f"eps* censored: {', '.join(r['censored'])}" if r.get("censored") else ""),
            ]
            for r in rows
        ]
        blocks: list[Any] = [
            "Rank correlation across models of each measure with eps* (higher = more robust to the attack), "
            "the mean noise accuracy and the generalisation gap. rho: Spearman; tau: Kendall tau-b; "
            "p-values two-sided, exact (every pairing of the models enumerated) for few models, asymptotic "
            "otherwise (column 'p from'); q: Benjamini-Hochberg q-value of rho's p over every row of this "
            "table (the table runs many tests, so some p < 0.05 are expected by chance: read q). Group 'all' "
            "pools every model of the part (across datasets); a dataset's own group appears when it has >= 3 "
            "models. An undefined coefficient (n < 3, a constant column) is '–' with the reason.",
            Table(
                ["group", "measure", "target", "n", "rho", "p", "q (BH)", "p from", "tau", "p (tau)", "note"],
                table,
            ),
            *[f"Not correlated in group '{r.get('group')}': {r.get('message')}." for r in skipped],
        ]
        scatter = [
            r
            for r in rows
            if r.get("target") == "eps_star" and r.get("group") == "all" and len(r.get("models") or []) >= 2
        ]
        if scatter:
            blocks.append(self._scatter_grid(scatter, figures))
        return Section("Correlations with robustness and generalisation", blocks, level=3)

    def _landscapes(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "Weight space: training loss at w + alpha d (1-D) and w + alpha d1 + beta d2 (2-D) for "
            "filter-normalised random directions (Li et al. 2018; biases and norm layers fixed). Input "
            "space: mean test loss at x + t eps d for the first-order adversarial direction d and a random "
            "one."
        ]
        one = [r for r in rows if r.get("metric") == "landscape_1d" and r.get("alphas")]
        if one:
            df = pd.concat(
                [pd.DataFrame({"alpha": r["alphas"], "loss": r["losses"], "model": r["model"]}) for r in one]
            )
            blocks.append(
                figures.curves(
                    df,
                    x="alpha",
                    y="loss",
                    hue="model",
                    ci=None,
                    ylim=None,
                    name="landscape_1d",
                    title="1-D loss landscape (train subset)",
                    xlabel="alpha (filter-normalised direction)",
                    ylabel="loss",
                )
            )
        for r in rows:
            if r.get("metric") == "landscape_2d" and r.get("losses"):
                fig = self._contour(r, figures)
                if fig is not None:
                    blocks.append(fig)
        inp = [r for r in rows if r.get("metric") == "input_landscape" and r.get("ts")]
        if inp:
            frames = []
            for r in inp:
                for direction in ("adversarial", "random"):
                    frames.append(
                        pd.DataFrame(
                            {
                                "t": r["ts"],
                                "loss": r[direction],
                                "model": r["model"],
                                "direction": direction,
                                "panel": f"{r.get('modality')} ({r.get('norm')} {r.get('eps'):g})",
                            }
                        )
                    )
            blocks.append(
                figures.curves(
                    pd.concat(frames),
                    x="t",
                    y="loss",
                    hue="model",
                    style="direction",
                    facet="panel",
                    ci=None,
                    ylim=None,
                    name="input_landscape",
                    title="Test loss along the adversarial direction",
                    xlabel="t (steps of eps)",
                    ylabel="mean loss",
                )
            )
        return Section("Loss landscapes", blocks, level=3)

    def _scatter_grid(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> Figure:
        """One panel per measure: eps* against the measure, every model labelled, rho in the title."""
        import matplotlib.pyplot as plt

        ncols = min(4, len(rows))
        nrows = -(-len(rows) // ncols)
        fig, axes = plt.subplots(nrows, ncols, figsize=(3.6 * ncols, 3.1 * nrows + 0.4), squeeze=False)
        for ax, r in zip(axes.flat, rows):
            censored = set(r.get("censored") or [])
            for m, x, y in zip(r["models"], r["x"], r["y"]):
                hollow = m in censored  # eps* beyond the grid: drawn at its ranking value, hollow
                ax.scatter(
                    [x],
                    [y],
                    s=28,
                    marker="^" if hollow else "o",
                    facecolors="none" if hollow else "tab:blue",
                    edgecolors="tab:blue",
                )
                ax.annotate(
                    str(m) + (" (> grid)" if hollow else ""),
                    (x, y),
                    fontsize=6,
                    xytext=(3, 3),
                    textcoords="offset points",
                )
            for values, setter in ((r["y"], ax.set_yscale), (r["x"], ax.set_xscale)):
                vs = [v for v in values if v is not None]
                if vs and min(vs) > 0 and max(vs) / min(vs) > 20:
                    setter("log")
            rho = "–" if r.get("value") is None else f"{r['value']:.2f}"
            p = "" if r.get("p_value") is None else f", p {r['p_value']:.2g}"
            ax.set_title(f"{r.get('measure')}\nrho {rho}{p}, n {r.get('n')}", fontsize=8)
            ax.tick_params(labelsize=7)
            ax.set_ylabel("eps*", fontsize=8)
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(rows) :]:
            ax.set_visible(False)
        fig.subplots_adjust(left=0.06, right=0.98, bottom=0.06, top=0.92, wspace=0.35, hspace=0.6)
        return _save(figures, fig, "scatter_eps_star", "eps* against each measure (all models)", tight=False)

    def _contour(self, row: Mapping[str, Any], figures: Any) -> Figure | None:
        """A 2-D landscape drawn by `robustlab.sharpness.plot_landscape` into the figures folder."""
        import numpy as np

        from ....sharpness.landscape import Landscape2D, plot_landscape

        land = Landscape2D(
            alphas=np.asarray(row["alphas"], dtype=float),
            betas=np.asarray(row["betas"], dtype=float),
            losses=np.asarray(row["losses"], dtype=float),
            accuracies=np.asarray(row["accuracies"], dtype=float),
            origin_loss=float(row.get("origin_loss") or 0.0),
            direction=str(row.get("direction")),
            n_examples=int(row.get("n") or 0),
            n_params=int(row.get("n_params") or 0),
            seed=0,
            seconds=0.0,
        )
        name = _claim(figures, f"landscape_2d_{row.get('model')}_seed{row.get('seed')}")
        plot_landscape(land, figures.folder / name, title=f"{row.get('model')} (train subset)")
        return Figure(name, f"2-D loss landscape of {row.get('model')}")


__all__ = ["SharpnessLayout", "measure_label"]
