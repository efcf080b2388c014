"""Report layout of ``fusion`` (registered with `robustlab.reports.layouts.LAYOUTS`): the protocol entries and
the sections (clean accuracy, verdicts, Theorem 1 with its scatter, eps* with intervals, robust-accuracy
curves per attacked modality, noise per modality, missing modality) of a part's rows."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, budget_order, fmt_ci, fmt_value_ci
from ..attack_sweep.layout import (
    add_to_entry,
    check_entries,
    close_entries,
    eps_label,
    protocol_entry,
)
from ..noise_sweep.layout import NoiseSweepLayout

#: flip examples listed per (fused model, modality)
MAX_FLIPS = 10


def _triple(v: Sequence[Any] | None, digits: str = ".3g") -> str:
    """``value [lo, hi]`` of a ``[value, lo, hi, ...]`` list (``≥`` / ``≤`` marks censored ratios)."""
    if not v or v[0] is None:
        return "–"
    text = f"{v[0]:{digits}}"
    if len(v) > 2 and v[1] is not None and v[2] is not None:
        text += f" [{v[1]:{digits}}, {v[2]:{digits}}]"
    if len(v) > 3 and v[3] is True:
        text += " (censored)"
    return text


def _at(v: Sequence[Any] | None) -> str:
    """``value [lo, hi] @ budget`` of a ``[value, lo, hi, n, budget]`` list."""
    if not v or v[0] is None:
        return "–"
    budget = v[4] if len(v) > 4 else None
    at = "" if budget is None else (f" @ {budget:.4g}" if isinstance(budget, int | float) else f" @ {budget}")
    return _triple(v[:3]) + at


def _without_text(v: Sequence[Any] | None) -> str:
    """``value [lo, hi] (fill)`` of a ``[value, lo, hi, n, fill]`` list."""
    if not v or v[0] is None:
        return "–"
    return f"{_triple(v[:3])} ({v[4]})"


def _bound(b: float | None) -> str:
    return "beyond the grid" if b is None else f"{b:.3g}"


def _eps_text(r: Mapping[str, Any]) -> str:
    """eps* per example with its interval; values beyond the budget grid are said so."""
    return f"{_bound(r.get('value'))} [{_bound(r.get('ci_low'))}, {_bound(r.get('ci_high'))}]"


def _level(level: Any) -> str:
    return "chance" if level == "chance" else f"{float(level):.0%} of clean"


def _attacked(modality: Any, norm: Any) -> str:
    return f"both {norm} (paired)" if modality == "both" else f"{modality} {norm}"


def roles(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    """Model -> ``audio-only`` / ``visual-only`` / ``fusion`` from the modalities its rows attack."""
    seen: dict[str, set[str]] = {}
    for r in rows:
        if r.get("modality") in ("audio", "visual", "both") and r.get("cell") != "derived":
            seen.setdefault(str(r.get("model")), set()).add(str(r["modality"]))
    out = {}
    for model, mods in seen.items():
        out[model] = "fusion" if len(mods) > 1 else f"{next(iter(mods))}-only"
    return out


@LAYOUTS.register("fusion")
class FusionLayout(ReportLayout):
    """Protocol and sections of ``fusion`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "robust_accuracy":
                continue
            e = seen.setdefault(
                (r.get("attack"), r.get("modality"), r.get("norm")),
                protocol_entry(r, attacked=_attacked(r.get("modality"), r.get("norm")), budgets=[]),
            )
            joint = r.get("modality") == "both"
            b = f"{r.get('eps_audio'):g}/{r.get('eps_visual'):.4g}" if joint else f"{r.get('eps'):.4g}"
            if b not in e["budgets"]:
                e["budgets"].append(b)
            add_to_entry(e, r)
        for e in seen.values():
            e["budgets"] = ", ".join(e["budgets"])
        out = close_entries(list(seen.values()))
        mins: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "min_budget":
                continue
            sc = r.get("scales") or [0]
            ref = r.get("ref")
            ref_s = "/".join(f"{v:.4g}" for v in ref.values()) if isinstance(ref, Mapping) else f"{ref:.4g}"
            mins.setdefault(
                (r.get("attack"), r.get("modality"), r.get("norm")),
                {
                    **protocol_entry(
                        r,
                        attacked=_attacked(r.get("modality"), r.get("norm")),
                        budgets=f"{ref_s} x {min(sc):.4g} … {max(sc):.4g} ({len(sc)} geometric points)",
                    ),
                    "method": f"minimal budget per example: bisection with {r.get('attack')}",
                    "other": f"rounds {r.get('rounds')}",
                    "n": r.get("n"),
                    "seeds": r.get("seed"),
                },
            )
        out += list(mins.values())
        pots: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") == "eps_star" and r.get("cell") != "derived":
                e = pots.setdefault(
                    (r.get("attack"), r.get("modality"), r.get("norm")),
                    {
                        "method": f"eps* grid search ({r.get('attack')}, robustlab.attacks.potency)",
                        "attacked": _attacked(r.get("modality"), r.get("norm")),
                        "budgets": ", ".join(f"{g:.4g}" for g in r.get("grid") or []),
                        "other": set(),
                        "n": r.get("n"),
                        "seeds": r.get("seed"),
                    },
                )
                e["other"].add(_level(r.get("level")))
        for e in pots.values():
            e["other"] = "levels: " + ", ".join(sorted(e["other"]))
            out.append(e)
        out += NoiseSweepLayout().protocol(rows)
        miss = {(r.get("modality"), r.get("fill")): r for r in rows if r.get("metric") == "missing_accuracy"}
        for (mod, fill), r in miss.items():
            out.append(
                {
                    "method": f"missing modality ({fill})",
                    "attacked": mod,
                    "n": r.get("n"),
                    "seeds": r.get("seed"),
                }
            )
        out += check_entries(
            rows,
            lambda r: {"attacked": f"{r.get('modality')} {r.get('norm')}", "budgets": f"{r.get('eps'):.4g}"},
        )
        return out

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        role = roles(rows)
        out: list[Section] = []
        clean = [r for r in rows if r.get("metric") == "clean_accuracy"]
        if clean:
            out.append(
                Section(
                    "Clean accuracy",
                    [
                        Table(
                            ["dataset", "model", "role", "accuracy", "95% CI", "n"],
                            [
                                [
                                    r.get("dataset"),
                                    r["model"],
                                    role.get(r["model"], "–"),
                                    r.get("value"),
                                    fmt_ci(r),
                                    r.get("n"),
                                ]
                                for r in clean
                            ],
                        )
                    ],
                    level=3,
                )
            )
        verdicts = [r for r in rows if r.get("metric") == "verdict"]
        if verdicts:
            out.append(self._verdicts(verdicts, rows))
        theorem = [r for r in rows if r.get("metric") == "theorem1_fraction"]
        if theorem:
            out.append(self._theorem(theorem, figures))
        eps = [r for r in rows if r.get("metric") == "eps_star_ci"]
        grid = [r for r in rows if r.get("metric") == "eps_star"]
        if eps or grid:
            out.append(self._potency(eps, grid, figures))
        robust = [r for r in rows if r.get("metric") == "robust_accuracy"]
        if robust:
            out.append(self._robust(robust, figures))
        noise = [r for r in rows if r.get("metric") == "accuracy"]
        if noise:
            for s in NoiseSweepLayout().sections(noise + clean, figures):
                out.append(Section(f"{s.title} (per modality)", s.blocks, level=3))
        miss = [r for r in rows if r.get("metric") == "missing_accuracy"]
        if miss:
            by_clean = {r["model"]: r for r in clean}
            drops = {
                (r["model"], r.get("modality"), r.get("fill")): r
                for r in rows
                if r.get("metric") == "missing_drop"
            }
            out.append(
                Section(
                    "Missing modality",
                    [
                        "Accuracy of each fused model when one modality is absent: replaced by zeros "
                        "(silence, a black image) or by the mean of training items; the drop from clean "
                        "accuracy is paired (the same examples; 95% bootstrap interval). The unimodal model "
                        "of the remaining modality is the reference a system would fall back to.",
                        Table(
                            [
                                "dataset",
                                "model",
                                "missing",
                                "fill",
                                "accuracy [95% CI]",
                                "clean",
                                "drop [95% CI]",
                                "n",
                            ],
                            [
                                [
                                    r.get("dataset"),
                                    r["model"],
                                    r.get("modality"),
                                    r.get("fill"),
                                    fmt_value_ci(r),
                                    fmt_value_ci(by_clean.get(r["model"])),
                                    fmt_value_ci(drops.get((r["model"], r.get("modality"), r.get("fill")))),
                                    r.get("n"),
                                ]
                                for r in miss
                            ],
                        ),
                    ],
                    level=3,
                )
            )
        return out

    # ------------------------------------------------------------------------------------------ sections

    def _verdicts(self, verdicts: list[Mapping[str, Any]], rows: Sequence[Mapping[str, Any]]) -> Section:
        blocks: list[Any] = [
            "Is each fusion more robust than its best unimodal model? For an attack on one modality the "
            "comparison is the unimodal model of that modality (the only one the attack reaches); for the "
            "joint attack, the unimodal model with the larger eps* when attacked on its own modality at the "
            "same multiple of its reference budget. Evidence: eps*(fusion) / eps*(unimodal) at each "
            "deactivation level from per-example minimal budgets, with paired 95% bootstrap intervals "
            "(censored: an eps* beyond the budget grid, so the ratio is a bound); the Theorem 1 fraction "
            "(examples where the fusion breaks at a strictly smaller budget); robust accuracy at the "
            "swept budget closest to the reference budget (the joint attack's partner: attacked on its own "
            "modality). Verdict: **more robust** when every ratio interval lies above 1, **less "
            "robust** when every one lies below 1, else **no difference shown**. The untouched model is the "
            "unimodal model of the other modality, which a single-modality attack does not reach. 'Fusion "
            "without the attacked modality': its accuracy with that modality removed (the fill that leaves "
            "it most accurate); when removing the modality does not lower the accuracy (paired 95% "
            "interval of the drop above 0, for every fill) the fusion is not shown to use it at all, and "
            "robustness to attacks on it is no merit of fusion.",
        ]
        levels = list(dict.fromkeys(lv for r in verdicts for lv in (r.get("ratios") or {})))
        datasets = list(dict.fromkeys(str(r.get("dataset") or _dataset(rows, r["model"])) for r in verdicts))
        for ds in datasets:
            sub = [r for r in verdicts if str(r.get("dataset") or _dataset(rows, r["model"])) == ds]
            table_rows = []
            for r in sub:
                ratios = r.get("ratios") or {}
                table_rows.append(
                    [
                        r["model"],
                        r.get("modality"),
                        r.get("partner"),
                        *[_triple(ratios.get(lv)) for lv in levels],
                        _triple(r.get("theorem1"))
                        + (f" (n={r['theorem1'][3]})" if r.get("theorem1") else ""),
                        _at(r.get("robust_fused")),
                        _at(r.get("robust_partner")),
                        f"{r.get('untouched') or '–'}: {_triple(r.get('clean_untouched'))}"
                        if r.get("untouched")
                        else "–",
                        _without_text(r.get("without_attacked")),
                        f"**{r.get('value')}**"
                        + (
                            f" (not shown to use {r.get('modality')})"
                            if r.get("uses_attacked") is False
                            else ""
                        ),
                    ]
                )
            blocks.append(
                Table(
                    [
                        "fusion",
                        "attacked",
                        "compared with",
                        *[f"eps* ratio, {_level(lv if lv == 'chance' else float(lv))} [CI]" for lv in levels],
                        "Theorem 1: fusion breaks first [CI]",
                        "robust acc. fusion @ budget",
                        "robust acc. compared @ budget",
                        "untouched model: clean acc.",
                        "fusion without the attacked modality",
                        "verdict",
                    ],
                    table_rows,
                    f"Verdicts on {ds}",
                )
            )
        return Section("Verdicts: fusion vs unimodal", blocks, level=3)

    def _theorem(self, theorem: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "Theorem 1 measured: over the test examples that both the fused model and the unimodal model of "
            "the attacked modality classify correctly, the per-example minimal budget of an attack on that "
            "modality alone (bisection on a geometric grid, the same method and grid for both models). "
            "'fusion breaks first': the fraction of examples whose fused model is fooled at a strictly "
            "smaller grid budget (95% bootstrap interval); ties: the same grid budget; median ratio: "
            "fused / unimodal minimal budget. A flip inside the unimodal radius is an example where the "
            "fused prediction flips at a budget at which the attack could not fool the unimodal model."
        ]
        table_rows = [
            [
                r.get("dataset"),
                r["model"],
                r.get("modality"),
                r.get("unimodal"),
                fmt_value_ci(r),
                r.get("ties"),
                r.get("larger"),
                r.get("n"),
                r.get("median_ratio"),
                len(r.get("flips") or []),
                r.get("message"),
            ]
            for r in theorem
        ]
        blocks.append(
            Table(
                [
                    "dataset",
                    "fusion",
                    "attacked",
                    "unimodal",
                    "fusion breaks first [95% CI]",
                    "ties",
                    "fusion breaks later",
                    "n (both correct)",
                    "median budget ratio",
                    "flips",
                    "note",
                ],
                table_rows,
            )
        )
        pts = []
        for r in theorem:
            beyond = r.get("beyond")
            for u, f in r.get("points") or []:
                pts.append(
                    {
                        "unimodal": beyond if u is None else u,
                        "fused": beyond if f is None else f,
                        "fusion": r["model"],
                        "panel": f"{r.get('dataset')} · {r.get('modality')} {r.get('norm')}",
                        "never fooled": "yes" if u is None or f is None else "no",
                    }
                )
        if pts:
            blocks.append(
                figures.paired_scatter(
                    pd.DataFrame(pts),
                    x="unimodal",
                    y="fused",
                    hue="fusion",
                    style="never fooled",
                    facet="panel",
                    name="theorem1_scatter",
                    title="Per-example minimal budget: fused vs unimodal model",
                    caption="Each point is a test example both models classify correctly; below the diagonal "
                    "the fused model breaks at a smaller budget. Budgets lie on a geometric grid; points are "
                    "jittered by up to ±12 % so that examples with the same pair of budgets stay visible. "
                    "Examples never fooled within the grid sit one grid step beyond it (crosses).",
                    xlabel="minimal budget, unimodal model",
                    ylabel="minimal budget, fused model",
                    jitter=0.12,
                )
            )
        flips = []
        for r in theorem:
            for fl in (r.get("flips") or [])[:MAX_FLIPS]:
                flips.append(
                    [
                        r.get("dataset"),
                        r["model"],
                        r.get("modality"),
                        fl.get("item"),
                        fl.get("label"),
                        fl.get("eps_fused"),
                        fl.get("eps_unimodal"),
                        fl.get("pred_fused_adv"),
                    ]
                )
        if flips:
            blocks.append(
                Table(
                    [
                        "dataset",
                        "fusion",
                        "attacked",
                        "test item",
                        "label",
                        "fused flips at",
                        "unimodal holds below",
                        "fused prediction",
                    ],
                    flips,
                    "Perturbations inside the unimodal radius that flip the fused prediction (first "
                    f"{MAX_FLIPS} "
                    "per fused model and modality; 'unimodal holds below': its minimal budget, – = never "
                    "fooled within the grid)",
                )
            )
        return Section("Theorem 1: per-example minimal budgets, fused vs unimodal", blocks, level=3)

    def _potency(self, eps: list[Mapping[str, Any]], grid: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "eps* (potency to deactivate): the weakest budget at which accuracy falls to the deactivation "
            "level (chance, or a fraction of clean accuracy). 'per example' is read off the per-example "
            "minimal budgets (bisection, with a 95% bootstrap interval over examples; joint attacks in "
            "multiples of the reference budget pair)"
            + (
                "; 'grid search' is robustlab's eps* search on the sweep grid (no interval; '–' = not "
                "reached within the grid)."
                if grid
                else "."
            )
        ]
        gmap = {(r["model"], r.get("modality"), str(r.get("level"))): r for r in grid}
        table_rows = []
        for r in eps:
            g = gmap.pop((r["model"], r.get("modality"), str(r.get("level"))), None)
            val = _eps_text(r)
            if r.get("budgets"):
                val += " = " + "/".join(f"{v:.3g}" for v in r["budgets"].values() if v is not None)
            table_rows.append(
                [
                    r.get("dataset"),
                    r["model"],
                    _attacked(r.get("modality"), r.get("norm")),
                    _level(r.get("level")),
                    r.get("unit"),
                    val,
                    None if g is None else g.get("value"),
                    r.get("n"),
                ]
            )
        for (model, mod, _), g in gmap.items():
            table_rows.append(
                [
                    g.get("dataset"),
                    model,
                    _attacked(mod, g.get("norm")),
                    _level(g.get("level")),
                    "eps",
                    "–",
                    g.get("value"),
                    g.get("n"),
                ]
            )
        header = ["dataset", "model", "attacked", "level", "unit", "eps* per example [95% CI]"]
        header += ["eps* grid search", "n"]
        if not grid:  # the study ran no grid search: no column of dashes
            header, table_rows = header[:6] + header[7:], [row[:6] + row[7:] for row in table_rows]
        blocks.append(Table(header, table_rows))
        df = pd.DataFrame([r for r in eps if r.get("value") is not None and r.get("modality") != "both"])
        if len(df):
            df["level "] = df["level"].map(_level)
            for (ds, mod), sub in df.groupby(["dataset", "modality"], sort=False):
                unit = "waveform" if mod == "audio" else "pixels in [0, 1]"
                title = f"eps* of an attack on the {mod}, {ds} (lower = easier to deactivate)"
                blocks.append(
                    figures.bars(
                        sub,
                        x="model",
                        y="value",
                        hue="level ",
                        name=f"eps_star_{ds}_{mod}",
                        title=title,
                        caption=f"{title}; a model without a bar is not deactivated within the budget grid.",
                        ylabel=f"eps* ({sub['norm'].iloc[0]}, {unit})",
                        log=True,
                    )
                )
        return Section("Potency eps* per model and modality", blocks, level=3)

    def _robust(self, robust: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        df = pd.DataFrame(robust)
        joint = df["modality"] == "both"
        if joint.any():
            df.loc[joint, "eps"] = df.loc[joint, "eps_audio"]
        df["family"] = [_attacked(m, n) for m, n in zip(df["modality"], df["norm"])]
        blocks: list[Any] = [
            "Robust accuracy against attacks on the audio only, the visual only and both jointly (paired "
            "budgets: the x axis gives the audio budget, the table both); shaded bands are 95% bootstrap "
            "intervals. A model that does not read the attacked modality is not attacked."
        ]
        for family, sub in df.groupby("family", sort=False):
            norm, mod = str(sub["norm"].iloc[0]), str(sub["modality"].iloc[0])
            lp = budget_order(norm).larger_is_stronger
            xlabel = (
                "audio L-inf eps (paired with the visual eps of the table)"
                if mod == "both"
                else (f"{eps_label(norm)}" if mod == "audio" else f"{norm} eps, pixels in [0, 1]")
            )
            blocks.append(
                figures.curves(
                    sub,
                    x="eps",
                    hue="model",
                    facet="dataset",
                    name=f"robust_{family}",
                    title=f"Robust accuracy, attack on {family}",
                    xlabel=xlabel,
                    ylabel="robust accuracy",
                    logx=lp,
                    invert_x=not lp,
                    legend_outside=True,
                )
            )
            for ds, dsub in sub.groupby("dataset", sort=False):
                keys = list(
                    dict.fromkeys(
                        (float(a), float(v)) if mod == "both" else (float(e), None)
                        for a, v, e in zip(
                            dsub.get("eps_audio", dsub["eps"]),
                            dsub.get("eps_visual", dsub["eps"]),
                            dsub["eps"],
                        )
                    )
                )
                if mod != "both":
                    keys = [(e, None) for e in budget_order(norm).order(k[0] for k in keys)]
                table_rows = []
                for model, msub in dsub.groupby("model", sort=False):
                    by = {}
                    for rec in msub.to_dict("records"):
                        key = (
                            (float(rec["eps_audio"]), float(rec["eps_visual"]))
                            if mod == "both"
                            else (float(rec["eps"]), None)
                        )
                        by[key] = rec
                    table_rows.append([model, *[fmt_value_ci(by.get(k)) for k in keys], int(msub["n"].max())])
                cols = [f"{a:g}/{v:.3g}" if v is not None else f"{a:.4g}" for a, v in keys]
                blocks.append(
                    Table(
                        ["model", *cols, "n"],
                        table_rows,
                        f"Robust accuracy [95% CI], {ds}, attack on {family}",
                    )
                )
        return Section("Robust accuracy per attacked modality", blocks, level=3)


def _dataset(rows: Sequence[Mapping[str, Any]], model: str) -> str:
    return next((str(r.get("dataset")) for r in rows if r.get("model") == model and r.get("dataset")), "")


__all__ = ["FusionLayout", "roles"]
