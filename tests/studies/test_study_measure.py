"""`robustlab.studies.kinds.measure.estimate`: failed measurements are counted, never silently dropped."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustlab.studies.kinds.measure import estimate


def test_estimate_counts_non_finite_measurements() -> None:
    # e.g. PESQ raising on two clips (NaN) and an unchanged clip (SNR +inf) among 6 measured examples
    values = [1.0, 2.0, float("nan"), 3.0, float("inf"), float("nan")]
    e = estimate(values, seed=0, n_boot=200)
    assert e["value"] == pytest.approx(2.0) and e["n"] == 3 and e["n_failed"] == 3
    assert e["n"] + e["n_failed"] == len(values)
    assert e["ci_low"] <= e["value"] <= e["ci_high"]


def test_estimate_all_failed_and_none_failed() -> None:
    e = estimate([float("nan")] * 4, seed=0)
    assert e == {"value": None, "n": 0, "ci_low": None, "ci_high": None, "n_failed": 4}
    ok = estimate(np.ones(10), seed=0, n_boot=100)
    assert ok["n"] == 10 and ok["n_failed"] == 0 and math.isclose(ok["value"], 1.0)
