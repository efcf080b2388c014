"""Report layout of ``attack_sweep`` (registered with `robustlab.reports.layouts.LAYOUTS`): the protocol
entries and the sections (clean accuracy, robust accuracy curves / heatmap / tables, perturbation size,
potency eps*) of a part's rows. Budget axes are ordered by the norm's `Threat` capabilities."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from ....reports.document import Section, Table
from ....reports.layouts import LAYOUTS, ReportLayout, budget_order, fmt_ci, value
from ....reports.protocol import ProtocolEntries

#: axis / caption text of a norm's budgets (display only; unknown norms show their name)
EPS_LABELS = {"linf": "L-inf eps, waveform", "l2": "L2 eps, waveform", "snr": "SNR budget, dB"}

#: protocol keys shown in their own columns (the rest go to "other")
_OWN_COLUMNS = {
    "attack",
    "threat",
    "steps",
    "step_size",
    "restarts",
    "random_start",
    "loss",
    "seed",
    "eot_transform",
    "eot_samples",
    "abs_step_size",
    "early_stop",
    "l1_sparsity",
}


def eps_label(norm: str) -> str:
    """Axis label of a norm's budgets."""
    return EPS_LABELS.get(norm, norm)


def grid_label(grid: Any) -> Any:
    """A short label for a long budget grid: ``lo … hi (N points)``; short grids as they are."""
    if not isinstance(grid, list | tuple) or len(grid) <= 6:
        return grid
    return f"{min(grid):.4g} … {max(grid):.4g} ({len(grid)} points)"


def eps_star_label(row: Mapping[str, Any]) -> Any:
    """eps* as printed: marked when it is the weakest budget of its grid (the true value may be weaker)."""
    v, grid = row.get("value"), row.get("grid")
    if v is None or not grid:
        return v
    threat = budget_order(str(row.get("norm")))
    if float(v) == float(threat.weakest(grid)):
        return f"{'≤' if threat.larger_is_stronger else '≥'} {v:.4g}"
    return v


def other_protocol(p: Mapping[str, Any]) -> str:
    """Protocol fields without a column of their own, as ``k=v`` text."""
    parts = [
        f"{k}={v}"
        for k, v in p.items()
        if k not in _OWN_COLUMNS and v is not None and not isinstance(v, dict | list)
    ]
    if p.get("eot_samples", 1) not in (1, None):
        parts.append(f"eot_samples={p['eot_samples']}")
    return ", ".join(parts)


def protocol_entry(row: Mapping[str, Any], **columns: Any) -> dict[str, Any]:
    """A protocol-table entry of an attack row: the method, ``columns`` (what the entry groups by), then
    the attack's settings from the row's ``protocol``; ``n`` and ``seeds`` start as sets that `add_to_entry`
    fills and `close_entries` turns into text."""
    p = row.get("protocol") or {}
    return {
        "method": row.get("attack"),
        **columns,
        "steps": p.get("steps"),
        "step size (x eps)": p.get("step_size"),
        "restarts": p.get("restarts"),
        "random start": p.get("random_start"),
        "loss": p.get("loss"),
        "other": other_protocol(p),
        "n": set(),
        "seeds": set(),
    }


def add_to_entry(entry: dict[str, Any], row: Mapping[str, Any]) -> None:
    """Record ``row``'s n and seed in a `protocol_entry`."""
    entry["n"].add(row.get("n"))
    entry["seeds"].add(row.get("seed"))


def close_entries(entries: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries with their collected n and seeds as sorted, comma-separated text (in place)."""
    for e in entries:
        e["n"] = ", ".join(str(n) for n in sorted(x for x in e["n"] if x is not None))
        e["seeds"] = ", ".join(str(s) for s in sorted(x for x in e["seeds"] if x is not None))
    return list(entries)


def check_entries(
    rows: Sequence[Mapping[str, Any]], columns: Callable[[Mapping[str, Any]], dict[str, Any]]
) -> list[dict[str, Any]]:
    """One protocol entry per attack and set of ``columns(row)`` of the sanity-check rows (``flag:*``
    metrics), with that check's n and seed."""
    seen: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if str(r.get("metric", "")).startswith("flag:"):
            cols = columns(r)
            seen[(r.get("attack"), repr(cols))] = {
                "method": f"sanity checks ({r.get('attack')})",
                **cols,
                "n": r.get("n"),
                "seeds": r.get("seed"),
            }
    return list(seen.values())


def _val_ci(r: Mapping[str, Any] | None) -> str:
    if r is None or r.get("value") is None:
        return "–"
    return f"{r['value']:.3g} {fmt_ci(r)}"


def clean_sections(rows: Sequence[Mapping[str, Any]]) -> list[Section]:
    """The "Clean accuracy" section (one row per ``clean_accuracy`` row: model, accuracy, CI, n), or none when
    there is no such row."""
    clean = [r for r in rows if r.get("metric") == "clean_accuracy"]
    if not clean:
        return []
    table = Table(["model", "accuracy", "95% CI", "n"], [[r["model"], r.get("value"), fmt_ci(r), r.get("n")]
                                                         for r in clean])
    return [Section("Clean accuracy", [table], level=3)]


@LAYOUTS.register("attack_sweep")
class AttackSweepLayout(ReportLayout):
    """Protocol and sections of ``attack_sweep`` rows."""

    def protocol(self, rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
        seen: dict[tuple, dict[str, Any]] = {}
        for r in rows:
            if r.get("metric") != "robust_accuracy":
                continue
            e = seen.setdefault(
                (r.get("attack"), r.get("norm")), protocol_entry(r, norm=r.get("norm"), eps=[])
            )
            if r.get("eps") not in e["eps"]:
                e["eps"].append(r.get("eps"))
            add_to_entry(e, r)
        for e in seen.values():
            e["eps"] = sorted(e["eps"])
        out = close_entries(list(seen.values()))
        for r in rows:
            if r.get("metric") == "eps_star":
                out.append(
                    {
                        "method": f"eps* ({r.get('attack')})",
                        "norm": r.get("norm"),
                        "eps": r.get("grid"),
                        "other": f"level {r.get('level')}",
                        "n": r.get("n"),
                        "seeds": r.get("seed"),
                    }
                )
        out += check_entries(rows, lambda r: {"norm": r.get("norm"), "eps": [r.get("eps")]})
        # one entry per (method, norm, eps grid): several models share a protocol
        return ProtocolEntries.unique(out)

    def sections(self, rows: Sequence[Mapping[str, Any]], figures: Any) -> list[Section]:
        sections = clean_sections(rows)
        robust = [r for r in rows if r.get("metric") == "robust_accuracy"]
        if robust:
            sections.append(self._robust(robust, figures))
        asr = [r for r in rows if r.get("metric") == "attack_success_rate"]
        pert = [r for r in rows if str(r.get("metric", "")).startswith("perturbation_")]
        if pert:
            sections.append(self._perturbations(pert, asr))
        pot = [r for r in rows if r.get("metric") == "eps_star"]
        if pot:
            sections.append(self._potency(pot, figures))
        return sections

    def _robust(self, robust: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        df = pd.DataFrame(robust)
        df["panel"] = df["attack"] + " · " + df["norm"]
        blocks: list[Any] = [
            "Robust accuracy (higher is more robust) against each attack and budget; shaded bands are 95% "
            "bootstrap intervals. SNR budgets are in dB: a lower SNR allows a larger perturbation."
        ]
        for norm, sub in df.groupby("norm", sort=False):
            lp = budget_order(str(norm)).larger_is_stronger
            blocks.append(
                figures.curves(
                    sub,
                    x="eps",
                    hue="model",
                    facet="panel",
                    name=f"robust_accuracy_{norm}",
                    title=f"Robust accuracy vs budget ({norm})",
                    xlabel=eps_label(str(norm)),
                    ylabel="robust accuracy",
                    logx=lp,
                    invert_x=not lp,
                )
            )
        heat = df.assign(cond=df["attack"] + " " + df["norm"] + " " + df["eps"].map(lambda e: f"{e:g}"))
        matrix = heat.pivot_table(index="model", columns="cond", values="value", sort=False)
        blocks.append(
            figures.heatmap(
                matrix, name="robust_accuracy_heatmap", title="Robust accuracy: model x (attack, norm, eps)"
            )
        )
        for (attack, norm), sub in df.groupby(["attack", "norm"], sort=False):
            eps_vals = budget_order(str(norm)).order(sub["eps"].unique())
            table_rows = []
            for model, msub in sub.groupby("model", sort=False):
                by_eps = {float(e): r for e, r in zip(msub["eps"], msub.to_dict("records"))}
                table_rows.append([model, *[_val_ci(by_eps.get(e)) for e in eps_vals], int(msub["n"].max())])
            blocks.append(
                Table(
                    ["model", *[f"{e:g}" for e in eps_vals], "n"],
                    table_rows,
                    f"Robust accuracy [95% CI], {attack}, {norm} ({eps_label(str(norm))})",
                )
            )
        return Section("Robust accuracy", blocks, level=3)

    def _perturbations(self, pert: list[Mapping[str, Any]], asr: list[Mapping[str, Any]]) -> Section:
        by: dict[tuple, dict[str, Mapping[str, Any]]] = {}
        for r in pert + asr:
            by.setdefault((r["model"], r["attack"], r["norm"], r["eps"]), {})[r["metric"]] = r
        table_rows = [
            [
                model,
                attack,
                norm,
                eps,
                _val_ci(m.get("attack_success_rate")),
                _val_ci(m.get("perturbation_snr_db")),
                value(m.get("perturbation_l2")),
                value(m.get("perturbation_linf")),
                (m.get("perturbation_snr_db") or {}).get("n_failed"),
            ]
            for (model, attack, norm, eps), m in by.items()
        ]
        return Section(
            "Size of the adversarial perturbations",
            [
                "Measured on the adversarial audio returned by each attack (mean over examples; SNR of clean "
                "vs perturbation in dB, higher = quieter perturbation). Success rate is over clean-correct "
                "examples. 'not measured': examples whose SNR is not finite (an unchanged clip), counted "
                "apart from n.",
                Table(
                    [
                        "model",
                        "attack",
                        "norm",
                        "eps",
                        "success rate",
                        "SNR dB",
                        "L2",
                        "L-inf",
                        "not measured",
                    ],
                    table_rows,
                ),
            ],
            level=3,
        )

    def _potency(self, pot: list[Mapping[str, Any]], figures: Any) -> Section:
        import pandas as pd

        blocks: list[Any] = [
            "eps*: the smallest budget of the grid at which the attack brings accuracy down to the "
            "deactivation level (chance unless set otherwise); '–' = not reached within the grid; "
            "'≤' (SNR: '≥') = already reached at the weakest budget of the grid, so eps* may be smaller."
        ]
        table_rows = [
            [
                r["model"],
                r.get("attack"),
                r.get("norm"),
                eps_star_label(r),
                r.get("deactivation_level"),
                grid_label(r.get("grid")),
                r.get("n"),
            ]
            for r in pot
        ]
        blocks.append(
            Table(["model", "attack", "norm", "eps*", "deactivation level", "grid", "n"], table_rows)
        )
        pdf = pd.DataFrame([r for r in pot if r.get("value") is not None])
        if len(pdf):
            for norm, sub in pdf.groupby("norm", sort=False):
                blocks.append(
                    figures.bars(
                        sub,
                        x="model",
                        y="value",
                        name=f"potency_{norm}",
                        title=f"Potency eps* ({norm}; lower = more vulnerable)",
                        ylabel=f"eps* ({eps_label(str(norm))})",
                    )
                )
        return Section("Potency (minimal budget)", blocks, level=3)


__all__ = ["AttackSweepLayout", "clean_sections", "eps_label", "eps_star_label", "grid_label"]
