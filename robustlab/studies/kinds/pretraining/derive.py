"""Run-level rows of ``pretraining``: the fine-tuning runs aggregated over training seeds.

From this run's rows of the part (the `RowIndex` the runner hands over):

* ``finetune_accuracy_mean`` per (model, init, fraction, epoch): mean over seeds with a 95% t-interval over
  seeds (the bands of the fine-tuning curves), ``n`` = seeds;
* ``finetune_gain`` per (model, fraction, epoch): pre-trained minus scratch, paired by training seed (same
  label subset and head initialisation), mean and 95% t-interval over the pairs;
* ``<metric>_mean`` for the evaluations of the selected models (``finetuned_clean_accuracy``,
  ``finetuned_robust_accuracy`` per norm and budget, ``finetuned_eps_star`` per norm) per (model, init,
  fraction), and ``<metric>_gain`` paired as above.

Rows of one part come from one run, so they share a protocol; rows of several tiers never meet here.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..base import RowIndex, RunInfo

#: evaluation metrics of the fine-tuned models aggregated over seeds
FINAL_METRICS = ("finetuned_clean_accuracy", "finetuned_robust_accuracy", "finetuned_eps_star")


def seed_interval(values: Sequence[float]) -> dict[str, Any]:
    """Mean of per-seed values with a 95% Student-t interval over seeds (None for a single seed)."""
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"value": None, "n": 0, "ci_low": None, "ci_high": None, "min": None, "max": None}
    out = {"value": float(v.mean()), "n": int(v.size), "min": float(v.min()), "max": float(v.max()),
           "sd": float(v.std(ddof=1)) if v.size > 1 else None}
    if v.size > 1:
        from scipy.stats import t

        half = float(t.ppf(0.975, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
        out.update(ci_low=out["value"] - half, ci_high=out["value"] + half)
    else:
        out.update(ci_low=None, ci_high=None)
    return out


def _key(r: Mapping[str, Any], fields: Sequence[str]) -> tuple:
    return tuple(r.get(f) for f in fields)


def _aggregate(
    rows: Sequence[Mapping[str, Any]], metric: str, fields: tuple[str, ...]
) -> list[dict[str, Any]]:
    """Mean over ``train_seed`` per ``fields``, and the pre-trained minus scratch gain paired by seed."""
    groups: dict[tuple, dict[int, float]] = {}
    for r in rows:
        if r.get("metric") == metric and isinstance(r.get("value"), int | float):
            key = _key(r, ("model", "init", "fraction", *fields))
            groups.setdefault(key, {})[r.get("train_seed")] = float(r["value"])
    out = []
    for key, by_seed in groups.items():
        model, init, fraction, *rest = key
        out.append({"model": model, "init": init, "fraction": fraction, **dict(zip(fields, rest)),
                    "metric": f"{metric}_mean", "seeds": sorted(by_seed),
                    **seed_interval(list(by_seed.values()))})
    for key, by_seed in groups.items():
        model, init, fraction, *rest = key
        base = groups.get((model, "scratch", fraction, *rest))
        if init != "pretrained" or not base:
            continue
        paired = sorted(set(by_seed) & set(base))
        diffs = [by_seed[s] - base[s] for s in paired]
        out.append({"model": model, "fraction": fraction, **dict(zip(fields, rest)),
                    "metric": f"{metric}_gain", "seeds": paired, **seed_interval(diffs)})
    return out


def aggregate(index: RowIndex, part: str, run: RunInfo) -> list[dict[str, Any]]:
    """The derived rows of part ``part`` (module docstring)."""
    rows = index.select(index.sources[0], part=part) if index.sources else []
    out = _aggregate(rows, "finetune_accuracy", ("epoch", "split"))
    out += _aggregate(rows, "finetuned_clean_accuracy", ())
    out += _aggregate(rows, "finetuned_robust_accuracy", ("attack", "norm", "eps"))
    out += _aggregate(rows, "finetuned_eps_star", ("attack", "norm"))
    return [{**r, "tier": run.tier} for r in out]


__all__ = ["FINAL_METRICS", "aggregate", "seed_interval"]
