"""Measurements shared by study kinds: per-example values -> a row's value, n and 95% bootstrap interval."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np


def estimate(values: Any, seed: int, n_boot: int = 1000) -> dict[str, Any]:
    """Mean of per-example ``values`` with ``n`` and a 95% percentile bootstrap interval
    (`robustlab.metrics.classification.bootstrap_ci`, seeded).

    Non-finite values (a failed measurement such as a PESQ error, or an infinite SNR of an unperturbed
    example) are excluded from the mean and counted in ``n_failed``, so ``n + n_failed`` is always the number
    of examples measured; no finite value gives ``value = None``.
    """
    from ...metrics.classification import bootstrap_ci

    v = np.asarray(values, dtype=np.float64).reshape(-1)
    finite = np.isfinite(v)
    failed = int((~finite).sum())
    v = v[finite]
    if len(v) == 0:
        return {"value": None, "n": 0, "ci_low": None, "ci_high": None, "n_failed": failed}
    lo, hi = bootstrap_ci(v, n_boot=n_boot, level=0.95, seed=seed)
    return {"value": float(v.mean()), "n": int(len(v)), "ci_low": lo, "ci_high": hi, "n_failed": failed}


def estimate_geometric(values: Any, seed: int, n_boot: int = 1000) -> dict[str, Any]:
    """Geometric mean of positive per-example ``values`` (ratios, gains) with ``n`` and a 95% interval:
    `estimate` of ``log10(values)``, mapped back by ``10**``. Non-positive and non-finite values are counted
    in ``n_failed``."""
    v = np.asarray(values, dtype=np.float64).reshape(-1)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.where(v > 0, np.log10(np.where(v > 0, v, 1.0)), np.nan)
    out = estimate(logs, seed, n_boot)
    for key in ("value", "ci_low", "ci_high"):
        if out[key] is not None:
            out[key] = float(10.0 ** out[key])
    out["summary"] = "geometric mean"
    return out


def predict_correct(model: Any, batch: Mapping[str, Any]) -> np.ndarray:
    """Per-example correctness (float 0/1) of ``model`` on a (possibly adversarial) batch."""
    import torch

    from ...attacks.base import predict
    from ...metrics.classification import correct

    with torch.no_grad():
        logits = predict(model, batch)
    return correct(logits, batch["label"])


def concat(chunks: Iterable[np.ndarray]) -> np.ndarray:
    """Concatenate per-batch arrays (empty -> an empty float array)."""
    parts = [np.asarray(c, dtype=np.float64).reshape(-1) for c in chunks]
    return np.concatenate(parts) if parts else np.zeros(0)


def group_mean(rows: Iterable[Mapping[str, Any]], key: str, value: str = "value") -> dict[Any, float]:
    """Mean of ``value`` per ``key`` over rows with a numeric value."""
    acc: dict[Any, list[float]] = {}
    for r in rows:
        v = r.get(value)
        if isinstance(v, int | float) and not isinstance(v, bool):
            acc.setdefault(r.get(key), []).append(float(v))
    return {k: float(np.mean(v)) for k, v in acc.items()}


def clean_accuracy(ctx: Any, batch_size: int, n_boot: int) -> dict[str, Any]:
    """Clean accuracy of the cell's model on its test items: `estimate` of the per-item correctness."""
    model = ctx.model()
    ok = concat(predict_correct(model, b) for b in ctx.batches(batch_size))
    return estimate(ok, ctx.seed, n_boot)
