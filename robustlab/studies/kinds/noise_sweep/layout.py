"""Report layout of ``noise_sweep`` (registered with `robustlab.reports.layouts.LAYOUTS`): accuracy curves,
heatmap and tables per perturbation, and the adversarial-vs-noise rank correlation."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, fmt_value_ci


@LAYOUTS.register("noise_sweep")
class NoiseSweepLayout(ReportLayout):
    """Protocol and sections of ``noise_sweep`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[str, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "accuracy":
                continue
            e = seen.setdefault(
                r["perturbation"],
                {
                    "method": r["perturbation"],
                    "modality": r.get("modality"),
                    "levels": [],
                    "level kind": r.get("level_kind"),
                    "n": set(),
                    "seeds": set(),
                },
            )
            if r.get("level") not in e["levels"]:
                e["levels"].append(r.get("level"))
            e["n"].add(r.get("n"))
            e["seeds"].add(r.get("seed"))
        out = []
        for e in seen.values():
            e["n"] = ", ".join(str(n) for n in sorted(x for x in e["n"] if x is not None))
            e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
            out.append(e)
        return out

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        sections: list[Section] = []
        acc = [r for r in rows if r.get("metric") == "accuracy"]
        clean = {r["model"]: r for r in rows if r.get("metric") == "clean_accuracy"}
        if acc:
            sections.append(self._accuracy(acc, clean, figures))
        corr = [r for r in rows if r.get("metric") == "spearman_rho"]
        if corr:
            sections.append(self._correlation(corr, figures))
        return sections

    def _accuracy(self, acc: list[Mapping[str, Any]], clean: Mapping[str, Any], figures: Any) -> Section:
        import pandas as pd

        df = pd.DataFrame(acc)
        blocks: list[Any] = [
            "Accuracy under each perturbation and level; shaded bands are 95% bootstrap intervals. SNR "
            "levels in dB (lower = louder noise); severities 1-5 (higher = harsher)."
        ]
        for kind_name, sub in df.groupby("level_kind", sort=False):
            snr = kind_name == "snr_db"
            blocks.append(
                figures.curves(
                    sub,
                    x="level",
                    hue="model",
                    facet="perturbation",
                    name=f"noise_{kind_name}",
                    title="Accuracy vs noise SNR" if snr else "Accuracy vs corruption severity",
                    xlabel="SNR (dB)" if snr else "severity",
                    ylabel="accuracy",
                    invert_x=snr,
                )
            )
        heat = df.assign(cond=df["perturbation"] + " " + df["level"].map(lambda v: f"{v:g}"))
        matrix = heat.pivot_table(index="model", columns="cond", values="value", sort=False)
        blocks.append(
            figures.heatmap(matrix, name="noise_heatmap", title="Accuracy: model x (perturbation, level)")
        )
        for pert, sub in df.groupby("perturbation", sort=False):
            levels = list(dict.fromkeys(sub["level"]))
            table_rows = []
            for model, msub in sub.groupby("model", sort=False):
                by = {lv: r for lv, r in zip(msub["level"], msub.to_dict("records"))}
                table_rows.append(
                    [
                        model,
                        fmt_value_ci(clean.get(model)),
                        *[fmt_value_ci(by.get(lv)) for lv in levels],
                        int(msub["n"].max()),
                    ]
                )
            desc = sub["level_kind"].iloc[0]
            blocks.append(
                Table(
                    ["model", "clean", *[f"{lv:g}" for lv in levels], "n"],
                    table_rows,
                    f"Accuracy [95% CI], {pert} ({'SNR dB' if desc == 'snr_db' else 'severity'})",
                )
            )
        return Section("Accuracy under noise and corruptions", blocks, level=3)

    def _correlation(self, corr: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "Spearman rank correlation across models between adversarial robustness (mean robust accuracy "
            "over the budget grid of each attack and norm) and noise robustness (mean accuracy over this "
            "sweep's perturbations and levels). Only rows of one protocol (tier, steps, n, seeds, "
            "checkpoint) are combined."
        ]
        blocks.append(
            Table(
                ["attack", "norm", "rho", "p-value", "p from", "models", "source", "note"],
                [
                    [
                        r.get("attack"),
                        r.get("norm"),
                        r.get("value"),
                        r.get("p_value"),
                        r.get("p_method"),
                        r.get("n"),
                        r.get("source"),
                        r.get("message"),
                    ]
                    for r in corr
                ],
            )
        )
        for r in corr:
            if r.get("models") and len(r["models"]) >= 2:
                pts = pd.DataFrame(
                    {"model": r["models"], "adversarial": r["adversarial"], "noise": r["noise"]}
                )
                blocks.append(
                    figures.scatter(
                        pts,
                        x="adversarial",
                        y="noise",
                        name=f"correlation_{r.get('attack')}_{r.get('norm')}",
                        title=f"Noise vs adversarial robustness ({r.get('attack')} {r.get('norm')})",
                        xlabel="mean robust accuracy",
                        ylabel="mean noise accuracy",
                    )
                )
        return Section("Adversarial vs noise robustness", blocks, level=3)


__all__ = ["NoiseSweepLayout"]
