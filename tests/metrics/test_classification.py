"""`robustlab.metrics.classification` against independent references: AUC vs the Mann-Whitney U statistic
and a brute-force pair count, AP against a hand-worked example and a brute-force PR curve, d' against the
equal-variance Gaussian model, ECE on constructed bins, bootstrap interval coverage on a known distribution.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import mannwhitneyu, norm

from robustlab.metrics.classification import (
    accuracy,
    bootstrap_ci,
    correct,
    d_prime,
    expected_calibration_error,
    mean_auc,
    mean_average_precision,
    summarize,
)


def _pairwise_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """P(score of a positive > score of a negative) + 0.5 P(tie), by counting every pair."""
    pos, neg = scores[targets > 0.5], scores[targets <= 0.5]
    wins = sum((p > n) + 0.5 * (p == n) for p in pos for n in neg)
    return float(wins / (len(pos) * len(neg)))


def _brute_force_ap(scores: np.ndarray, targets: np.ndarray) -> float:
    """Area under the step PR curve: sum over distinct thresholds of (recall gain) x precision there."""
    ap, prev_recall = 0.0, 0.0
    for thr in sorted(set(scores.tolist()), reverse=True):
        sel = scores >= thr
        tp = float(targets[sel].sum())
        precision, recall = tp / sel.sum(), tp / targets.sum()
        ap += (recall - prev_recall) * precision
        prev_recall = recall
    return ap


def test_auc_equals_mann_whitney_u_and_the_pair_count() -> None:
    rng = np.random.default_rng(0)
    for trial in range(5):
        n = 40
        targets = (rng.random(n) < 0.4).astype(float)
        # rounded scores: many ties, which both references count as one half
        scores = np.round(rng.normal(size=n) + targets * (0.5 + trial * 0.3), 1)
        got = mean_auc(scores[:, None], targets[:, None])
        u = mannwhitneyu(scores[targets > 0.5], scores[targets <= 0.5]).statistic
        ref = u / ((targets > 0.5).sum() * (targets <= 0.5).sum())
        assert got == pytest.approx(ref, abs=1e-12)
        assert got == pytest.approx(_pairwise_auc(scores, targets), abs=1e-12)
    # perfect and inverted rankings
    s, t = np.array([0.1, 0.2, 0.8, 0.9]), np.array([0.0, 0.0, 1.0, 1.0])
    assert mean_auc(s[:, None], t[:, None]) == 1.0 and mean_auc(-s[:, None], t[:, None]) == 0.0


def test_mean_auc_is_the_macro_average_over_classes_with_both_labels() -> None:
    rng = np.random.default_rng(1)
    scores = rng.normal(size=(30, 3))
    labels = (rng.random((30, 3)) < 0.5).astype(float)
    labels[:, 2] = 1.0  # no negatives: class 2 has no AUC and is left out of the mean
    ref = np.mean([_pairwise_auc(scores[:, k], labels[:, k]) for k in (0, 1)])
    assert mean_auc(scores, labels) == pytest.approx(ref)
    assert math.isnan(mean_auc(scores[:, 2:], labels[:, 2:]))


def test_average_precision_hand_worked_and_brute_force() -> None:
    # ranked 1 0 1 0: precision at the two hits 1/1 and 2/3 -> AP = (1 + 2/3) / 2
    s, t = np.array([0.9, 0.8, 0.7, 0.6]), np.array([1.0, 0.0, 1.0, 0.0])
    assert mean_average_precision(s[:, None], t[:, None]) == pytest.approx(5 / 6)
    # ranked 0 1 1: hits at 2 and 3 -> (1/2 + 2/3) / 2
    s, t = np.array([0.9, 0.5, 0.1]), np.array([0.0, 1.0, 1.0])
    assert mean_average_precision(s[:, None], t[:, None]) == pytest.approx((1 / 2 + 2 / 3) / 2)
    rng = np.random.default_rng(2)
    for _ in range(5):
        scores = rng.random(50)  # continuous: no ties
        targets = (rng.random(50) < 0.3).astype(float)
        got = mean_average_precision(scores[:, None], targets[:, None])
        assert got == pytest.approx(_brute_force_ap(scores, targets), abs=1e-12)


def test_single_label_map_is_one_vs_rest() -> None:
    logits = np.array([[2.0, 0.1, 0.0], [0.2, 1.0, 0.0], [0.0, 0.3, 0.9], [0.8, 0.0, 0.7]])
    labels = np.array([0, 1, 2, 2])
    onehot = np.eye(3)[labels]
    ref = np.mean([_brute_force_ap(logits[:, k], onehot[:, k]) for k in range(3)])
    assert mean_average_precision(logits, labels) == pytest.approx(ref)


def test_d_prime_matches_the_equal_variance_gaussian_model() -> None:
    # two unit-variance Gaussians d apart have AUC = Phi(d / sqrt 2); d' recovers d
    for d in (0.0, 0.5, 1.0, 2.5):
        assert d_prime(float(norm.cdf(d / math.sqrt(2)))) == pytest.approx(d, abs=1e-9)
    assert d_prime(0.5) == 0.0 and d_prime(0.2) < 0
    assert math.isfinite(d_prime(1.0)) and math.isnan(d_prime(float("nan")))


def test_ece_on_constructed_bins() -> None:
    # 10 examples at confidence 0.9 with 7 right (gap 0.2), 10 at confidence 0.6 with 6 right (gap 0)
    def two_class(p: float, right: bool) -> tuple[list[float], int]:
        return [math.log(p), math.log(1 - p)], 0 if right else 1

    rows = [two_class(0.9, i < 7) for i in range(10)] + [two_class(0.6, i < 6) for i in range(10)]
    logits = np.array([r[0] for r in rows])
    labels = np.array([r[1] for r in rows])
    assert expected_calibration_error(logits, labels, bins=15) == pytest.approx(0.5 * 0.2)
    # perfectly calibrated: 0; all wrong at confidence 0.9: 0.9
    cal = [two_class(0.6, i < 6) for i in range(10)]
    assert expected_calibration_error(
        np.array([r[0] for r in cal]), np.array([r[1] for r in cal])
    ) == pytest.approx(0.0)
    wrong = np.array([two_class(0.9, False)[0]] * 4)
    assert expected_calibration_error(wrong, np.ones(4, dtype=int)) == pytest.approx(0.9)


def test_accuracy_correct_and_summarize() -> None:
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0], [1.0, 0.0]])
    labels = torch.tensor([0, 0, 0])
    assert accuracy(logits, labels) == pytest.approx(2 / 3)
    assert correct(logits, labels).tolist() == [1.0, 0.0, 1.0]
    # multi-label: right only when every bit is right (logit > 0 <-> label 1)
    ml = np.array([[1.0, -1.0], [1.0, 1.0]])
    assert correct(ml, np.array([[1.0, 0.0], [1.0, 0.0]])).tolist() == [1.0, 0.0]
    s = summarize(ml, np.array([[1.0, 0.0], [1.0, 0.0]]))
    assert set(s) == {"accuracy", "mAP", "AUC", "d_prime"} and s["accuracy"] == 0.5
    assert math.isnan(accuracy(np.zeros((0, 2)), np.zeros(0)))


def test_bootstrap_ci_covers_the_true_mean_about_95_percent_of_the_time() -> None:
    rng = np.random.default_rng(3)
    p, n, reps = 0.3, 200, 300
    hits = 0
    for r in range(reps):
        lo, hi = bootstrap_ci(rng.random(n) < p, n_boot=400, seed=r)
        hits += lo <= p <= hi
    coverage = hits / reps
    # binomial sd of the coverage estimate ~0.013; the percentile bootstrap runs a little below nominal
    assert 0.89 <= coverage <= 0.99, coverage


def test_bootstrap_ci_is_seeded_and_any_statistic_agrees_with_the_fast_mean() -> None:
    v = np.random.default_rng(4).normal(size=50)
    assert bootstrap_ci(v, seed=7) == bootstrap_ci(v, seed=7) != bootstrap_ci(v, seed=8)
    fast = bootstrap_ci(v, seed=7, n_boot=200)
    slow = bootstrap_ci(v, statistic=lambda x: float(np.mean(x)), seed=7, n_boot=200)
    assert fast == pytest.approx(slow)
    lo, hi = bootstrap_ci(v, seed=0)
    assert lo < v.mean() < hi
    assert all(math.isnan(x) for x in bootstrap_ci(np.zeros(0)))
