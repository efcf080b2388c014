"""Report layout of ``defenses`` (registered with `robustlab.reports.layouts.LAYOUTS`): the verdict, the
ranked defenses table (clean, robust, eps*, noise, cost ratio, geometry before -> after, flags), figures
(robust accuracy vs training cost, worst-case robust accuracy per threat, geometry before/after), and the
detail tables (robust accuracy per attack, sanity flags, training)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, budget_order, fmt_value_ci
from ....reports.protocol import ProtocolEntries, fmt_eps_star


def _pick(rows: Sequence[Mapping[str, Any]], metric: str) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("metric") == metric]


def _threat(t: Mapping[str, Any]) -> str:
    return f"{t.get('modality')} {t.get('norm')} {t.get('eps'):.4g}"


def _before_after(summary: Mapping[str, Any], key: str) -> str:
    b = (summary.get("geometry_before") or {}).get(key)
    a = (summary.get("geometry_after") or {}).get(key)
    if a is None and b is None:
        return "–"
    fb = "–" if b is None else f"{b:.3g}"
    fa = "–" if a is None else f"{a:.3g}"
    return f"{fb} → {fa}"


def short_labels(models: Sequence[str]) -> dict[str, str]:
    """Figure labels of zoo ids ``<arch>.<recipe>_<dataset>[@seed<N>]``: ``<recipe>[@seed<N>]`` when every
    model shares the architecture and the dataset, else the ids themselves."""
    parts = {}
    for m in models:
        found = re.fullmatch(r"([^.]+)\.(.+)_([^_@]+)(@seed\d+)?", m)
        if found is None:
            return {x: x for x in models}
        parts[m] = found.groups()
    if len({(a, d) for a, _, d, _ in parts.values()}) != 1:
        return {x: x for x in models}
    return {m: f"{r}{seed or ''}" for m, (_, r, _, seed) in parts.items()}


def _headline(summary: Mapping[str, Any]) -> str:
    """The headline robust accuracy of a summary row, and the failed stronger-attack check's lower value
    where there is one (the number the verdict uses)."""
    text = fmt_value_ci(summary.get("headline"))
    head = (summary.get("headline") or {}).get("value")
    lower = (summary.get("headline_corrected") or {}).get("value")
    if lower is not None and lower != head:
        text += f" (stronger attack: {lower:.3g})"
    return text


def _ratio(v: Any) -> str:
    return "–" if v is None else f"{v:.2f}×"


@LAYOUTS.register("defenses")
class DefensesLayout(ReportLayout):
    """Protocol and sections of ``defenses`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        entries = ProtocolEntries()
        grids: dict[tuple, dict[str, Any]] = {}
        for r in _pick(rows, "robust_accuracy"):
            p = r.get("protocol") or {}
            e = grids.setdefault(
                (r.get("attack"), r.get("modality"), r.get("norm")),
                {
                    "method": r.get("attack"),
                    "modality": r.get("modality"),
                    "norm": r.get("norm"),
                    "eps": [],
                    "steps": p.get("steps"),
                    "step size (x eps)": p.get("step_size"),
                    "restarts": p.get("restarts"),
                    "random start": p.get("random_start"),
                    "loss": p.get("loss"),
                    "n": set(),
                    "seeds": set(),
                },
            )
            if r.get("eps") not in e["eps"]:
                e["eps"].append(r.get("eps"))
            e["n"].add(r.get("n"))
            e["seeds"].add(r.get("seed"))
        for e in grids.values():
            e["n"] = ", ".join(str(n) for n in sorted(x for x in e["n"] if x is not None))
            e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
            entries.add(e)
        for r in rows:
            m = str(r.get("metric", ""))
            if m == "eps_star":
                entries.add_eps_star(r)
            elif m.startswith("flag:"):
                entries.add(
                    {
                        "method": f"sanity checks ({r.get('attack')})",
                        "modality": r.get("modality"),
                        "norm": r.get("norm"),
                        "eps": [r.get("eps")],
                        "n": r.get("n"),
                        "seeds": r.get("seed"),
                    }
                )
            elif m == "accuracy" and r.get("perturbation"):
                entries.add_noise(r)
            elif m == "same_class_fraction" and r.get("scope") == "summary" and r.get("embedding") == "fused":
                entries.add(
                    {
                        "method": "geometry (density, convexity)",
                        "split": r.get("split"),
                        "n": r.get("n"),
                        "other": f"k={r.get('k')}",
                        "seeds": r.get("seed"),
                    }
                )
        training = _pick(rows, "training_seconds")
        if training:

            def values(key: str) -> str:
                return ", ".join(str(v) for v in sorted({r.get(key) for r in training} - {None}, key=str))

            entries.add(
                {
                    "method": "training cost (checkpoint cards)",
                    "n": len(training),
                    "seeds": values("train_seed"),
                    "other": f"epochs {values('epochs')}; device {values('device')}; torch threads "
                    f"{values('torch_threads')}",
                }
            )
        return entries.entries

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        sections: list[Section] = []
        verdicts = _pick(rows, "verdict")
        if verdicts:
            sections.append(Section("Verdict", [r.get("text") or "" for r in verdicts], level=3))
        summary = _pick(rows, "defense_summary")
        if summary:
            sections.append(self._ranked(summary, _pick(rows, "defense_rank"), figures))
        robust = _pick(rows, "robust_accuracy")
        if robust:
            sections.append(self._robust(robust))
        flags = [r for r in rows if str(r.get("metric", "")).startswith("flag:")]
        if flags:
            sections.append(self._flags(flags))
        training = _pick(rows, "training_seconds")
        if training:
            sections.append(self._training(training, summary))
        return sections

    def _ranked(
        self, summary: list[Mapping[str, Any]], ranks: list[Mapping[str, Any]], figures: Any
    ) -> Section:
        import pandas as pd

        rank = {m: r["rank"] for r in ranks for m in r.get("models") or []}
        order = sorted(summary, key=lambda s: (s.get("group"), rank.get(s["model"], 999), s["model"]))
        eps_keys = list(
            dict.fromkeys((e["modality"], e["norm"]) for s in summary for e in s.get("eps_star") or [])
        )
        geo_keys = list(dict.fromkeys(k for s in summary for k in (s.get("geometry_after") or {})))
        conv = next((k for k in geo_keys if k.startswith("li_convexity")), None)
        dens = next((k for k in geo_keys if k.startswith("same_class_fraction")), None)
        head = summary[0].get("headline") or {}
        table_rows = []
        for s in order:
            eps = {(e["modality"], e["norm"]): e for e in s.get("eps_star") or []}
            table_rows.append(
                [
                    rank.get(s["model"]),
                    s["model"],
                    s.get("defense"),
                    s.get("train_seed"),
                    fmt_value_ci(s.get("clean")),
                    _headline(s),
                    s.get("value"),
                    *[fmt_eps_star(eps.get(k)) for k in eps_keys],
                    s.get("noise_accuracy"),
                    _ratio(s.get("cost_ratio")),
                    _ratio(s.get("cost_ratio_in_run")),
                    _before_after(s, conv) if conv else "–",
                    _before_after(s, dens) if dens else "–",
                    "; ".join(s.get("flags") or []) or ("ok" if s.get("flags_checked") else "not checked"),
                ]
            )
        blocks: list[Any] = [
            "Ranked per architecture and dataset: flagged recipes (a failed sanity check on any of their "
            "seeds: gradient masking or a too-weak attack) after every unflagged one, then by the "
            "robustness score = the mean over the study threats of the lowest robust accuracy of the attacks "
            "(seed mean per recipe). "
            f"Headline = {_threat(head)}. Cost ratio = training wall seconds / the base's (both from the "
            "cards, so under the machine loads of two runs); in-run = seconds / (seconds - the defense's "
            "own timed overhead: attack steps of adversarial training, geometry passes of metric mixup; '–' "
            "where the overhead is not timed apart). Geometry of the fused latent, base → this model.",
            Table(
                [
                    "rank",
                    "model",
                    "defense",
                    "seed",
                    "clean",
                    "headline robust",
                    "score",
                    *[f"eps* {m} {n}" for m, n in eps_keys],
                    "noise acc",
                    "cost ratio",
                    "in-run",
                    f"Li convexity ({conv.split('@')[1] if conv else ''})",
                    f"same-class ({dens.split('@')[1] if dens else ''})",
                    "flags",
                ],
                table_rows,
            ),
        ]
        label = short_labels([s["model"] for s in summary])
        pts = pd.DataFrame(
            [
                {
                    "model": label[s["model"]] + (" (flagged)" if s.get("flags") else ""),
                    "cost": s.get("cost_ratio"),
                    "robust": (s.get("headline") or {}).get("value"),
                }
                for s in summary
            ]
        ).dropna()
        if len(pts) >= 2:
            blocks.append(
                figures.scatter(
                    pts,
                    x="cost",
                    y="robust",
                    name="robust_vs_cost",
                    title=f"Robust accuracy vs training cost ({_threat(head)})",
                    caption=f"Headline robust accuracy (lowest over the attacks, {_threat(head)}) vs "
                    "training wall time relative to the base (checkpoint cards); '(flagged)': a failed "
                    "sanity check, the robust accuracy may be overestimated.",
                    xlabel="training wall time / base's",
                    ylabel="robust accuracy (worst attack)",
                )
            )
        per_threat = pd.DataFrame(
            [
                {"model": label[s["model"]], "threat": _threat(t), "value": t.get("value")}
                for s in summary
                for t in s.get("threats") or []
                if t.get("value") is not None
            ]
        )
        if len(per_threat):
            matrix = per_threat.pivot_table(index="model", columns="threat", values="value", sort=False)
            blocks.append(
                figures.heatmap(
                    matrix,
                    name="worst_case_robust_accuracy",
                    title="Robust accuracy (lowest over the attacks): model x threat",
                )
            )
        geo = pd.DataFrame(
            [
                {"model": label[s["model"]], "metric": k, "value": v}
                for s in summary
                for k, v in (s.get("geometry_after") or {}).items()
                if v is not None and (k == conv or k == dens)
            ]
        )
        if len(geo):
            blocks.append(
                figures.heatmap(
                    geo.pivot_table(index="model", columns="metric", values="value", sort=False),
                    name="geometry_after",
                    title="Fused-latent geometry per model",
                    caption="Li convexity and kNN same-class fraction of the fused latent per model; the "
                    "base recipe's row is the 'before' of every defense.",
                    fmt=".3f",
                )
            )
        return Section("Defenses ranked", blocks, level=3)

    def _robust(self, robust: list[Mapping[str, Any]]) -> Section:
        cols: list[tuple] = []
        for r in robust:
            key = (r.get("attack"), r.get("modality"), r.get("norm"), r.get("eps"))
            if key not in cols:
                cols.append(key)
        orders = {n: budget_order(str(n)) for n in {c[2] for c in cols}}
        cols.sort(key=lambda c: (str(c[1]), str(c[2]), str(c[0]), orders[c[2]].order([c[3]])[0]))
        by = {
            (r["model"], r.get("attack"), r.get("modality"), r.get("norm"), r.get("eps")): r for r in robust
        }
        models = list(dict.fromkeys(r["model"] for r in robust))
        table_rows = [[m, *[fmt_value_ci(by.get((m, *c))) for c in cols]] for m in models]
        return Section(
            "Robust accuracy per attack",
            [
                "Robust accuracy [95% bootstrap CI] per attack, attacked modality, norm and budget.",
                Table(["model", *[f"{a} {mod} {n} {e:.4g}" for a, mod, n, e in cols]], table_rows),
            ],
            level=3,
        )

    def _flags(self, flags: list[Mapping[str, Any]]) -> Section:
        return Section(
            "Sanity checks",
            [
                "ARCHITECTURE §4 checks per model at the reference budget (1 ok, 0 failed, – not "
                "applicable).",
                Table(
                    ["model", "modality", "norm", "eps", "check", "ok", "message"],
                    [
                        [
                            r.get("model"),
                            r.get("modality"),
                            r.get("norm"),
                            r.get("eps"),
                            str(r.get("metric")).removeprefix("flag:"),
                            r.get("value"),
                            r.get("message"),
                        ]
                        for r in flags
                    ],
                ),
            ],
            level=3,
        )

    def _training(self, training: list[Mapping[str, Any]], summary: list[Mapping[str, Any]]) -> Section:
        cost = {s["model"]: s for s in summary}
        return Section(
            "Training cost (from the checkpoint cards)",
            [
                "Wall seconds of each training run as recorded on its card, per-epoch median, the defense's "
                "own "
                "timed overhead, and the torch threads it ran with.",
                Table(
                    [
                        "model",
                        "seed",
                        "switches",
                        "seconds",
                        "epochs",
                        "epoch median s",
                        "defense overhead s",
                        "threads",
                        "cost ratio",
                        "in-run",
                        "card test accuracy",
                    ],
                    [
                        [
                            r.get("model"),
                            r.get("train_seed"),
                            ", ".join(r.get("switches") or []) or "none",
                            r.get("value"),
                            r.get("epochs"),
                            r.get("epoch_median_seconds"),
                            r.get("defense_seconds"),
                            r.get("torch_threads"),
                            _ratio((cost.get(r.get("model")) or {}).get("cost_ratio")),
                            _ratio((cost.get(r.get("model")) or {}).get("cost_ratio_in_run")),
                            r.get("card_test_accuracy"),
                        ]
                        for r in training
                    ],
                ),
            ],
            level=3,
        )


__all__ = ["DefensesLayout"]
