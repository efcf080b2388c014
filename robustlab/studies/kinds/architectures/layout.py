"""Report layout of ``architectures`` (registered with `robustlab.reports.layouts.LAYOUTS`): CNNs vs
transformers side by side under occlusion, noise, universal perturbations and PGD, with the
output-distribution change (KL) that goes with each accuracy drop, and the chapter's claims checked against
this run."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, fmt_value_ci

#: the metrics of a perturbed condition
ACCURACY = ("accuracy", "robust_accuracy")

PAPER = (
    "The chapter (arXiv 2205.03268, AudioSet) found the transformer degrading least under occlusion and "
    "feature-space noise, every model collapsing under fine periodic occlusion but recovering when the gaps "
    "were removed (concat), and the accuracy changes explained by the change of the output distribution."
)


def _condition(r: Mapping[str, Any]) -> str:
    """A short column name: ``feat_occlude_periodic 6``, ``white_noise 10``, ``universal 0.004``."""
    return f"{r.get('perturbation')} {float(r.get('level')):g}"


def _perturbed(rows: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    return [r for r in rows if r.get("metric") in ACCURACY and r.get("group")]


def _family(rows: Sequence[Mapping[str, Any]]) -> dict[str, str]:
    return {r["model"]: r.get("family", "?") for r in rows if r.get("metric") == "clean_accuracy"}


def _harsh_order(r: Mapping[str, Any]) -> float:
    """Sort key: milder first (SNR levels descend, severities and budgets ascend)."""
    return -float(r["level"]) if r.get("level_kind") == "snr_db" else float(r["level"])


@LAYOUTS.register("architectures")
class ArchitecturesLayout(ReportLayout):
    """Protocol and sections of ``architectures`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}
        for r in _perturbed(rows):
            p = r.get("protocol") or {}
            key = (r.get("group"), r.get("perturbation"))
            e = seen.setdefault(
                key,
                {
                    "method": r.get("perturbation"),
                    "group": r.get("group"),
                    "domain": r.get("domain"),
                    "levels": [],
                    "steps": p.get("steps", p.get("epochs")),
                    "step size": p.get("step_size"),
                    "restarts": p.get("restarts"),
                    "other": ", ".join(
                        f"{k}={v}"
                        for k, v in p.items()
                        if k in ("method", "loss", "random_start", "early_stop") and v is not None
                    )
                    + (f", fitted on {r.get('fit_items')} training items" if r.get("fit_items") else ""),
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
            e["n"] = ", ".join(str(v) for v in sorted(x for x in e["n"] if x is not None))
            e["seeds"] = ", ".join(str(v) for v in sorted(x for x in e["seeds"] if x is not None))
            out.append(e)
        flags = {
            (r.get("attack"), r.get("norm"), r.get("eps")): r
            for r in rows
            if str(r.get("metric", "")).startswith("flag:")
        }
        for (a, _norm, e), r in flags.items():
            out.append(
                {
                    "method": f"sanity checks ({a})",
                    "group": "attack",
                    "domain": "input",
                    "levels": [e],
                    "n": r.get("n"),
                    "seeds": r.get("seed"),
                }
            )
        return out

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        pert = _perturbed(rows)
        clean = {r["model"]: r for r in rows if r.get("metric") == "clean_accuracy"}
        if not pert and not clean:
            return []
        kl = {(r["model"], _condition(r)): r for r in rows if r.get("metric") == "output_kl"}
        return [
            self._side_by_side(pert, clean, kl),
            self._families(pert, clean, kl),
            self._per_protocol(pert, clean, kl, figures),
            self._explained(pert, kl, _family(rows), figures),
        ]

    # ------------------------------------------------------------------ sections
    def _side_by_side(self, pert: list, clean: Mapping[str, Any], kl: Mapping[tuple, Any]) -> Section:
        fam = {m: r.get("family", "?") for m, r in clean.items()}
        models = sorted(clean or {r["model"] for r in pert}, key=lambda m: (fam.get(m, "?"), m))
        conds = list(
            dict.fromkeys(
                _condition(r)
                for r in sorted(
                    pert,
                    key=lambda r: (
                        ("occlusion", "noise", "universal", "attack").index(r.get("group"))
                        if r.get("group") in ("occlusion", "noise", "universal", "attack")
                        else 9,
                        r.get("perturbation"),
                        _harsh_order(r),
                    ),
                )
            )
        )
        acc = {(r["model"], _condition(r)): r for r in pert}
        head = ["model", "family", "parameters", "clean", *conds]
        acc_rows = [
            [
                m,
                fam.get(m),
                (clean.get(m) or {}).get("parameters"),
                fmt_value_ci(clean.get(m)),
                *[fmt_value_ci(acc.get((m, c))) for c in conds],
            ]
            for m in models
        ]
        kl_rows = [[m, fam.get(m), *[(kl.get((m, c)) or {}).get("value") for c in conds]] for m in models]
        return Section(
            "Side by side: accuracy and output-distribution change",
            [
                PAPER,
                "Accuracy [95% bootstrap interval] per condition (perturbation and level: severity for "
                "occlusions, SNR in dB for noises, budget for universal perturbations and PGD). "
                "Feature-domain conditions (`feat_*`) act on the front-end output (masked frames filled with "
                "the clip's minimum); the others on the waveform. PGD and universal accuracies are upper "
                "bounds (only as strong as the attack).",
                Table(head, acc_rows, "Accuracy [95% CI]"),
                Table(["model", "family", *conds], kl_rows, "Mean KL(p_clean || p_perturbed), nats"),
            ],
            level=3,
        )

    def _families(self, pert: list, clean: Mapping[str, Any], kl: Mapping[tuple, Any]) -> Section:
        fam = {m: r.get("family", "?") for m, r in clean.items()}
        groups: dict[tuple[str, str], dict[str, list[float]]] = {}
        for r in pert:
            m = r["model"]
            if r.get("value") is None or (clean.get(m) or {}).get("value") is None:
                continue
            key = (self._protocol_name(r), fam.get(m, "?"))
            g = groups.setdefault(key, {"drop": [], "kl": []})
            g["drop"].append(clean[m]["value"] - r["value"])
            k = (kl.get((m, _condition(r))) or {}).get("value")
            if k is not None:
                g["kl"].append(k)
        protocols = list(dict.fromkeys(p for p, _ in groups))
        families = sorted({f for _, f in groups})
        table_rows = []
        for p in protocols:
            row: list[Any] = [p]
            for f in families:
                g = groups.get((p, f))
                row += [
                    float(np.mean(g["drop"])) if g else None,
                    float(np.mean(g["kl"])) if g and g["kl"] else None,
                ]
            table_rows.append(row)
        head = ["protocol"] + [f"{f} {what}" for f in families for what in ("accuracy drop", "KL")]
        n_models = {f: sum(1 for m in fam if fam[m] == f) for f in families}
        verdicts = self._verdicts(groups, families, pert, clean)
        return Section(
            "CNNs vs transformers",
            [
                "Mean over the models of each family and over the levels of each protocol: accuracy drop "
                "from clean (higher = less robust) and output KL. Models per family: "
                + ", ".join(f"{f} {n}" for f, n in n_models.items())
                + ".",
                Table(head, table_rows),
                "Against the chapter's claims:\n\n" + "\n".join(f"- {v}" for v in verdicts),
            ],
            level=3,
        )

    def _per_protocol(
        self, pert: list, clean: Mapping[str, Any], kl: Mapping[tuple, Any], figures: Any
    ) -> Section:
        import pandas as pd

        df = pd.DataFrame(pert)
        fam = {m: r.get("family", "?") for m, r in clean.items()}
        df["family"] = df["model"].map(lambda m: fam.get(m, "?"))
        df["kl"] = [(kl.get((m, _condition(r))) or {}).get("value") for m, r in zip(df["model"], pert)]
        blocks: list[Any] = [
            "Accuracy per protocol and level; shaded bands are 95% bootstrap intervals; line style = family."
        ]
        for group, sub in df.groupby("group", sort=False):
            snr = (sub["level_kind"] == "snr_db").all()
            blocks.append(
                figures.curves(
                    sub,
                    x="level",
                    hue="model",
                    style="family",
                    facet="perturbation",
                    name=f"architectures_{group}",
                    title=f"Accuracy under {group}",
                    xlabel="SNR (dB)" if snr else "level (severity or budget)",
                    ylabel="accuracy",
                    invert_x=bool(snr),
                    logx=group in ("universal", "attack"),
                )
            )
            for pname, psub in sub.groupby("perturbation", sort=False):
                levels = sorted(dict.fromkeys(psub["level"]), key=lambda v: -v if snr else v)
                table_rows = []
                for model, msub in psub.groupby("model", sort=False):
                    by = {lv: r for lv, r in zip(msub["level"], msub.to_dict("records"))}
                    table_rows.append(
                        [
                            model,
                            fam.get(model),
                            fmt_value_ci(clean.get(model)),
                            *[_acc_kl(by.get(lv)) for lv in levels],
                            int(msub["n"].max()),
                        ]
                    )
                desc = (
                    psub["description"].dropna().iloc[-1]
                    if "description" in psub and psub["description"].notna().any()
                    else ""
                )
                blocks.append(
                    Table(
                        ["model", "family", "clean", *[f"{lv:g}" for lv in levels], "n"],
                        table_rows,
                        f"{pname}: accuracy [95% CI] / KL per level"
                        + (f" (harshest: {desc})" if desc else ""),
                    )
                )
        return Section("Per protocol", blocks, level=3)

    def _explained(
        self, pert: list, kl: Mapping[tuple, Any], fam: Mapping[str, str], figures: Any
    ) -> Section:
        import pandas as pd
        from scipy.stats import spearmanr

        pts = []
        for r in pert:
            k = (kl.get((r["model"], _condition(r))) or {}).get("value")
            if r.get("value") is not None and k is not None:
                pts.append(
                    {
                        "model": r["model"],
                        "family": fam.get(r["model"], "?"),
                        "accuracy": r["value"],
                        "kl": k,
                        "group": r.get("group"),
                    }
                )
        blocks: list[Any] = [
            "Does the change of the output distribution explain the accuracy? Each point is one model under "
            "one condition; Spearman's rho between KL and accuracy (negative = more KL, less accuracy)."
        ]
        if len(pts) >= 3:
            df = pd.DataFrame(pts)
            table_rows = []
            for name, sub in [("all", df), *list(df.groupby("family", sort=True))]:
                if len(sub) >= 3 and sub["kl"].nunique() > 1 and sub["accuracy"].nunique() > 1:
                    res = spearmanr(sub["kl"], sub["accuracy"])
                    table_rows.append([name, len(sub), float(res.statistic), float(res.pvalue)])
                else:
                    table_rows.append([name, len(sub), None, None])
            blocks.append(
                Table(
                    ["models", "points", "Spearman rho (KL vs accuracy)", "p (t approximation)"], table_rows
                )
            )
            df["log10 KL"] = np.log10(df["kl"].clip(lower=1e-6))
            blocks.append(
                figures.scatter(
                    df,
                    x="log10 KL",
                    y="accuracy",
                    label="family",
                    name="architectures_kl_vs_accuracy",
                    title="Accuracy vs output KL (every model x condition)",
                    xlabel="log10 KL(p_clean || p_perturbed)",
                    ylabel="accuracy",
                )
            )
        return Section("Output-distribution change", blocks, level=3)

    # ------------------------------------------------------------------ helpers
    @staticmethod
    def _protocol_name(r: Mapping[str, Any]) -> str:
        return str(r.get("perturbation"))

    def _verdicts(
        self, groups: Mapping[tuple, Any], families: list[str], pert: list, clean: Mapping[str, Any]
    ) -> list[str]:
        out = []
        if {"CNN", "transformer"} <= set(families):
            for label, names in (
                ("occlusion", [p for p, _ in groups if "occlude" in p]),
                ("feature-space noise", [p for p, _ in groups if p == "feat_gaussian_noise"]),
                ("waveform noise", [p for p, _ in groups if p == "white_noise"]),
            ):
                names = list(dict.fromkeys(names))
                if not names:
                    continue
                drop = {
                    f: float(
                        np.mean(
                            [d for p in names for d in (groups.get((p, f)) or {}).get("drop", [])] or [np.nan]
                        )
                    )
                    for f in ("CNN", "transformer")
                }
                if any(np.isnan(v) for v in drop.values()):
                    continue
                least = min(drop, key=drop.get)
                agree = (least == "transformer") if label != "waveform noise" else None
                tail = (
                    ""
                    if agree is None
                    else (" -- as in the chapter" if agree else " -- the chapter found the opposite")
                )
                out.append(
                    f"{label}: mean accuracy drop CNN {drop['CNN']:.3f}, "
                    f"transformer {drop['transformer']:.3f}; "
                    f"{least}s degrade least{tail}"
                )
        else:
            out.append(
                f"only one family in this run ({', '.join(families) or 'none'}): "
                "no CNN vs transformer verdict"
            )
        fine = [r for r in pert if r.get("perturbation") == "feat_occlude_periodic"]
        cat = {
            (r["model"], r["level"]): r
            for r in pert
            if r.get("perturbation") == "feat_occlude_periodic_concat"
        }
        if fine:
            top = max(r["level"] for r in fine)
            parts = []
            for r in sorted((r for r in fine if r["level"] == top), key=lambda r: r["model"]):
                c = cat.get((r["model"], top))
                base = (clean.get(r["model"]) or {}).get("value")
                parts.append(
                    f"{r['model']} {_v(base)} -> {_v(r.get('value'))} "
                    f"(gaps removed: {_v((c or {}).get('value'))})"
                )
            out.append(
                f"finest periodic feature occlusion (severity {top:g}): clean -> masked (concat): "
                + "; ".join(parts)
            )
        return out


def _v(x: Any) -> str:
    return "–" if x is None else f"{x:.3f}"


def _acc_kl(r: Mapping[str, Any] | None) -> str:
    if r is None:
        return "–"
    k = r.get("kl")
    return fmt_value_ci(r) + ("" if k is None or k != k else f" / {k:.3g}")


__all__ = ["ArchitecturesLayout"]
