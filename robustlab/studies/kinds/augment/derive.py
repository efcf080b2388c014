"""Run-level rows of ``augment``: accuracy of each (fraction, mix, multiplier) over the study's seeds, and the
paired gain over training on the real items alone (same seed: same real subset and initialisation).

Intervals are 95% Student-t intervals over seeds (none with a single seed). Only rows of one protocol are
combined: per group the same number of test items and optimiser steps, else `ProtocolMismatch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base import ProtocolMismatch, RowIndex, RunInfo
from .plan import Options


def seed_interval(values: Sequence[float]) -> tuple[float, float | None, float | None]:
    """Mean and 95% Student-t interval over seeds (no interval for fewer than two)."""
    from scipy.stats import t

    v = np.asarray(values, dtype=np.float64)
    m = float(v.mean())
    if len(v) < 2:
        return m, None, None
    half = float(t.ppf(0.975, len(v) - 1) * v.std(ddof=1) / np.sqrt(len(v)))
    return m, m - half, m + half


def _uniform(rows: Sequence[Mapping[str, Any]], key: str, where: str) -> Any:
    seen = {r.get(key) for r in rows}
    if len(seen) > 1:
        raise ProtocolMismatch(f"{where} mixes {key} values {sorted(seen, key=str)}")
    return next(iter(seen)) if seen else None


def summarize(options: Options, rows: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """``accuracy_over_seeds`` per (model, fraction, mix, multiplier) and ``gain_over_real`` per mixed one."""
    del options, run
    acc = [
        r
        for r in rows.this_run
        if r.get("part") == part and r.get("metric") == "accuracy" and isinstance(r.get("value"), int | float)
    ]
    groups: dict[tuple, list[Mapping[str, Any]]] = {}
    for r in acc:
        groups.setdefault((r.get("model"), r.get("fraction"), r.get("mix"), r.get("multiplier")), []).append(
            r
        )
    real = {(r.get("model"), r.get("fraction"), r.get("seed")): r for r in acc if r.get("mix") == "real"}
    out: list[dict[str, Any]] = []
    for (model, fraction, mix, mult), rs in groups.items():
        where = f"{model} fraction {fraction} {mix} x{mult}"
        n = _uniform(rs, "n", where)
        steps = _uniform(rs, "steps", where)
        mean, lo, hi = seed_interval([r["value"] for r in rs])
        ident = {
            "model": model,
            "fraction": fraction,
            "mix": mix,
            "multiplier": mult,
            "n": n,
            "steps": steps,
            "n_seeds": len(rs),
            "seeds": sorted(r.get("seed") for r in rs),
            "n_real": _uniform(rs, "n_real", where),
            "n_generated": _uniform(rs, "n_generated", where),
        }
        out.append({"metric": "accuracy_over_seeds", "value": mean, "ci_low": lo, "ci_high": hi, **ident})
        if mix == "real":
            continue
        pairs = [
            (r["value"], real[(model, fraction, r.get("seed"))]["value"])
            for r in rs
            if (model, fraction, r.get("seed")) in real
        ]
        if pairs:
            _uniform(
                [
                    *rs,
                    *(
                        real[(model, fraction, r.get("seed"))]
                        for r in rs
                        if (model, fraction, r.get("seed")) in real
                    ),
                ],
                "n",
                where + " vs real",
            )
            g_mean, g_lo, g_hi = seed_interval([a - b for a, b in pairs])
            out.append(
                {
                    "metric": "gain_over_real",
                    "value": g_mean,
                    "ci_low": g_lo,
                    "ci_high": g_hi,
                    **{**ident, "n_seeds": len(pairs)},
                }
            )
    return out


__all__ = ["seed_interval", "summarize"]
