"""Put runs side by side: a joined table (one value column per run) and overlaid curves, as ``compare.md`` and
a self-contained ``compare.html`` with ``figures/`` in an output folder (printed by the CLI).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from .. import paths
from ..atomic import write_text_atomic
from .document import Section, Table
from .figures import FigureWriter
from .layouts import budget_order
from .render import render_documents
from .results import RunFiles, load_run

#: metrics compared across runs (others are left to each run's own report)
COMPARED = (
    "clean_accuracy",
    "robust_accuracy",
    "accuracy",
    "eps_star",
    "spearman_rho",
    "perturbation_snr_db",
)
#: row fields that are not part of a measurement's condition
NOT_CONDITION = {
    "study",
    "part",
    "cell",
    "seed",
    "tier",
    "dataset",
    "value",
    "n",
    "ci_low",
    "ci_high",
    "protocol",
    "curve",
    "evidence",
    "message",
    "models",
    "adversarial",
    "noise",
    "description",
    "grid",
    "deactivation_level",
    "p_value",
    "source",
    "threat",
    "metric",
    "kind",
    "model",
    "level_kind",
}


def _condition(row: Mapping[str, Any]) -> str:
    parts = [
        f"{k}={row[k]:g}" if isinstance(row[k], float) else f"{k}={row[k]}"
        for k in sorted(row)
        if k not in NOT_CONDITION and not isinstance(row[k], dict | list)
    ]
    return " ".join(parts)


def _cell(row: Mapping[str, Any] | None) -> str:
    if row is None or row.get("value") is None:
        return "–"
    lo, hi = row.get("ci_low"), row.get("ci_high")
    ci = "" if lo is None or hi is None else f" [{lo:.3g}, {hi:.3g}]"
    return f"{row['value']:.4g}{ci}"


def joined_table(runs: Sequence[RunFiles], labels: Sequence[str]) -> Table:
    """One row per (kind, model, condition, metric), one value column per run."""
    keys: dict[tuple, dict[int, Mapping[str, Any]]] = {}
    for i, run in enumerate(runs):
        for r in run.rows:
            if r.get("metric") not in COMPARED:
                continue
            key = (r.get("kind"), r.get("model") or "(all)", r.get("metric"), _condition(r))
            keys.setdefault(key, {}).setdefault(i, r)
    rows = [[k[0], k[1], k[2], k[3], *[_cell(v.get(i)) for i in range(len(runs))]] for k, v in keys.items()]
    return Table(
        ["kind", "model", "metric", "condition", *labels],
        rows,
        "Values [95% CI] per run; '–' = not measured in that run",
    )


def compare_runs(run_dirs: Sequence[str | os.PathLike], out: str | os.PathLike | None = None) -> Path:
    """Compare run folders; returns the output folder.

    Raises:
        FileNotFoundError: a folder is not a finished run.
        ValueError: fewer than two runs.
    """
    if len(run_dirs) < 2:
        raise ValueError(f"compare needs at least two run folders, got {len(run_dirs)}")
    runs = [load_run(d) for d in run_dirs]
    labels = []
    for r in runs:
        label = f"{r.name}/{r.run_id}"
        while label in labels:
            label += "'"
        labels.append(label)
    if out is None:
        digest = hashlib.sha256("\n".join(str(Path(d).resolve()) for d in run_dirs).encode()).hexdigest()[:8]
        out = paths.reports_root() / "compare" / f"{datetime.now().strftime('%Y%m%d-%H%M%S')}-{digest}"
    folder = Path(out)
    folder.mkdir(parents=True, exist_ok=True)
    figures = FigureWriter(folder / "figures")
    for old in figures.folder.glob("*.png"):
        old.unlink()

    sections = [
        Section(
            "Runs",
            [
                Table(
                    ["run", "folder", "tier", "limit", "seeds", "cells done / total", "executor"],
                    [
                        [
                            lab,
                            str(r.path),
                            r.summary.get("tier"),
                            r.summary.get("limit") or "all",
                            r.summary.get("seeds"),
                            f"{r.summary.get('cells_done', '?')}/{r.summary.get('cells_total', '?')}",
                            r.summary.get("executor"),
                        ]
                        for lab, r in zip(labels, runs)
                    ],
                )
            ],
        )
    ]
    import pandas as pd

    robust = [
        {**row, "run": lab}
        for lab, r in zip(labels, runs)
        for row in r.rows
        if row.get("metric") == "robust_accuracy"
    ]
    curves: list[Any] = []
    if robust:
        df = pd.DataFrame(robust)
        df["panel"] = df["attack"] + " · " + df["norm"]
        for norm, sub in df.groupby("norm", sort=False):
            lp = budget_order(str(norm)).larger_is_stronger
            curves.append(
                figures.curves(
                    sub,
                    x="eps",
                    hue="model",
                    style="run",
                    facet="panel",
                    name=f"compare_robust_{norm}",
                    title=f"Robust accuracy ({norm}) by run",
                    xlabel="eps",
                    ylabel="robust accuracy",
                    logx=lp,
                    invert_x=not lp,
                )
            )
    noise = [
        {**row, "run": lab}
        for lab, r in zip(labels, runs)
        for row in r.rows
        if row.get("metric") == "accuracy" and "level" in row
    ]
    if noise:
        df = pd.DataFrame(noise)
        for kind_name, sub in df.groupby("level_kind", sort=False):
            curves.append(
                figures.curves(
                    sub,
                    x="level",
                    hue="model",
                    style="run",
                    facet="perturbation",
                    name=f"compare_noise_{kind_name}",
                    title="Accuracy under noise by run",
                    xlabel="SNR (dB)" if kind_name == "snr_db" else "severity",
                    ylabel="accuracy",
                    invert_x=kind_name == "snr_db",
                )
            )
    if curves:
        sections.append(
            Section("Curves", ["Solid and dashed lines are the runs (style), colours the models.", *curves])
        )
    sections.append(Section("Joined results", [joined_table(runs, labels)]))
    md, html = render_documents(
        sections,
        title="robustlab comparison: " + " vs ".join(labels),
        subtitle=f"{len(runs)} runs",
        figdir=figures.folder,
        folder=str(folder),
        footer=f"Rendered by robustlab from the results files of: {', '.join(str(r.path) for r in runs)}.",
    )
    write_text_atomic(folder / "compare.md", md)
    write_text_atomic(folder / "compare.html", html)
    return folder


__all__ = ["compare_runs", "joined_table"]
