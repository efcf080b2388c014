"""Report layout of ``augment`` (registered with `robustlab.reports.layouts.LAYOUTS`): the augmentation table
(accuracy over seeds per real fraction and data mix), the paired gains, the Audio-Journey verdicts and the
accuracy-vs-generated-data figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, fmt_value_ci, joined, rows_of


def _mix_label(r: Mapping[str, Any]) -> str:
    if r.get("mix") == "real":
        return "real"
    if r.get("mix") == "gen":
        return f"generated only (x{r.get('multiplier'):g})"
    return f"real + {r.get('multiplier'):g}x generated"


def _order(r: Mapping[str, Any]) -> tuple:
    return ({"real": 0, "real+gen": 1, "gen": 2}.get(r.get("mix"), 3), r.get("multiplier") or 0.0)


@LAYOUTS.register("augment")
class AugmentLayout(ReportLayout):
    """Protocol and sections of ``augment`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        acc = rows_of(rows, "accuracy")
        if not acc:
            return []
        tr = acc[0].get("training") or {}
        return [
            {
                "method": f"fresh {acc[0].get('architecture')} (feature path) per data mix, Adam + "
                "cosine decay",
                "steps": ", ".join(str(s) for s in sorted({r.get("steps") for r in acc})),
                "fractions": ", ".join(f"{f:g}" for f in sorted({r.get("fraction") for r in acc})),
                "mixes": ", ".join(dict.fromkeys(_mix_label(r) for r in sorted(acc, key=_order))),
                "classifier epochs (first cell)": tr.get("epochs"),
                "optimiser": "Adam lr "
                + joined(r.get("lr") for r in acc)
                + ", batch "
                + joined(r.get("batch_size") for r in acc),
                "generator": f"{joined(r.get('model') for r in acc)}: DDIM "
                + joined(r.get("sampler_steps") for r in acc)
                + " steps, eta "
                + joined(r.get("eta") for r in acc)
                + ", guidance "
                + joined(r.get("guidance") for r in acc),
                "n (test items)": ", ".join(str(n) for n in sorted({r.get("n") for r in acc})),
                "seeds": ", ".join(str(s) for s in sorted({r.get("seed") for r in acc})),
            }
        ]

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        import pandas as pd

        over = rows_of(rows, "accuracy_over_seeds")
        gains = rows_of(rows, "gain_over_real")
        if not over:
            return []
        blocks: list[Any] = [
            "Accuracy on real test items of a classifier (the feature classifier's architecture, fresh "
            "weights) trained on a class-stratified share of the real train split, on that share plus "
            "generated features, or on generated features alone; mean over seeds with a 95% Student-t "
            "interval over seeds. Every mix of a seed shares the real items, the generated pool and the "
            "initialisation, and trains for the same number of steps. The diffusion model was trained on "
            "the WHOLE train split, so at reduced shares its samples carry information from real items the "
            "classifier does not see."
        ]
        fractions = sorted({r["fraction"] for r in over})
        mixes = list(dict.fromkeys(_mix_label(r) for r in sorted(over, key=_order)))
        by = {(r.get("model"), r["fraction"], _mix_label(r)): r for r in over}
        models = list(dict.fromkeys(r.get("model") for r in over))
        table = []
        for m in models:
            for f in fractions:
                real = by.get((m, f, "real"))
                table.append(
                    [
                        m,
                        f"{f:g}",
                        (real or {}).get("n_real"),
                        *[fmt_value_ci(by.get((m, f, mix))) for mix in mixes],
                        (real or {}).get("n_seeds"),
                    ]
                )
        blocks.append(
            Table(
                ["model", "real fraction", "real items", *mixes, "seeds"],
                table,
                "Test accuracy, mean over seeds [95% t-interval]",
            )
        )
        if gains:
            blocks.append(
                Table(
                    ["model", "real fraction", "mix", "gain over real [95% t-interval]", "seeds"],
                    [
                        [
                            r.get("model"),
                            f"{r['fraction']:g}",
                            _mix_label(r),
                            fmt_value_ci(r),
                            r.get("n_seeds"),
                        ]
                        for r in sorted(gains, key=lambda r: (r["fraction"], _order(r)))
                    ],
                    "Paired gain over training on the real items alone (same seed)",
                )
            )
            blocks += self._verdicts(over, gains)
        cons = rows_of(rows, "generated_class_consistency")
        if cons:
            vals = [r["value"] for r in cons if r.get("value") is not None]
            blocks.append(
                "The generator's quality bounds these verdicts: the zoo classifier recognises the generated "
                f"items the classifiers trained on as their class {sum(vals) / len(vals):.3g} of the time "
                f"(mean over {len(vals)} cells, range {min(vals):.3g}-{max(vals):.3g}; chance 1/K). A better "
                "generator may change them."
            )
        df = pd.DataFrame(
            [
                {
                    "generated per real item": 0.0 if r.get("mix") == "real" else r.get("multiplier"),
                    "value": r.get("value"),
                    "ci_low": r.get("ci_low"),
                    "ci_high": r.get("ci_high"),
                    "real fraction": f"{r['fraction']:g}",
                    "model": r.get("model"),
                }
                for r in over
                if r.get("mix") in ("real", "real+gen")
            ]
        )
        if len(df):
            blocks.append(
                figures.curves(
                    df,
                    x="generated per real item",
                    hue="real fraction",
                    facet="model",
                    name="augmentation",
                    title="Accuracy vs generated data added",
                    ylabel="test accuracy",
                )
            )
        return [Section("Augmentation with generated features", blocks, level=3)]

    @staticmethod
    def _verdicts(over: Sequence[Mapping[str, Any]], gains: Sequence[Mapping[str, Any]]) -> list[Any]:
        """The Audio-Journey pattern, confirmed or refuted from the intervals: (1) more generated data raises
        accuracy at every size, (2) generated only stays far below real."""
        lines = []
        mixed = [g for g in gains if g.get("mix") == "real+gen"]
        if mixed:
            up = [g for g in mixed if g.get("ci_low") is not None and g["ci_low"] > 0]
            down = [g for g in mixed if g.get("ci_high") is not None and g["ci_high"] < 0]
            fr = sorted({g["fraction"] for g in mixed})
            every = all(any(g in up for g in mixed if g["fraction"] == f) for f in fr)
            if every:
                v = (
                    "CONFIRMED: at every real fraction some amount of generated data raises accuracy "
                    "(interval > 0)."
                )
            elif down and not up:
                v = "REFUTED: adding generated data lowers accuracy (interval < 0) and never raises it."
            elif up:
                v = (
                    f"PARTLY: generated data raises accuracy at fractions "
                    f"{sorted({g['fraction'] for g in up})} only; elsewhere no significant gain."
                )
            else:
                v = "NOT CONFIRMED: no mix of real and generated data beats real alone beyond its interval."
            lines.append(f"**More generated data helps at every size** (Audio-Journey): {v}")
        only = [g for g in gains if g.get("mix") == "gen"]
        if only:
            below = [g for g in only if g.get("ci_high") is not None and g["ci_high"] < 0]
            v = (
                "CONFIRMED: generated-only training stays below real at every fraction."
                if len(below) == len(only)
                else f"NOT CONFIRMED at fractions {sorted({g['fraction'] for g in only if g not in below})}: "
                "generated-only is not significantly below real there."
            )
            lines.append(f"**Generated only stays below real** (Audio-Journey): {v}")
        return lines


__all__ = ["AugmentLayout"]
