"""Rank correlations across few models: exact permutation p-values (checked against scipy), ties, undefined
cases, and the switch to asymptotic p-values above ``exact_max``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import kendalltau, permutation_test, spearmanr

from robustlab.metrics.correlation import kendall, permutations, rank_correlations, spearman


def test_permutations_enumerates_every_pairing_once() -> None:
    for n in (1, 3, 6):
        p = permutations(n)
        assert p.shape == (math.factorial(n), n)
        assert len({tuple(r) for r in p.tolist()}) == math.factorial(n)
        assert (np.sort(p, axis=1) == np.arange(n)).all()
    with pytest.raises(ValueError, match="1 <= n <= 10"):
        permutations(11)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_p_values_match_scipy_without_ties(seed: int) -> None:
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=6), rng.normal(size=6)
    rho, tau = rank_correlations(x, y)
    ref = permutation_test(
        (x,), lambda a: spearmanr(a, y).statistic, permutation_type="pairings", n_resamples=np.inf
    )
    assert rho.value == pytest.approx(spearmanr(x, y).statistic) and rho.p_value == pytest.approx(ref.pvalue)
    assert tau.value == pytest.approx(kendalltau(x, y).statistic)
    assert tau.p_value == pytest.approx(kendalltau(x, y, method="exact").pvalue)
    assert rho.method == tau.method == "exact permutation" and not rho.ties


def test_known_values_ties_and_undefined_cases() -> None:
    assert spearman([1, 2, 3, 4, 5], [2, 4, 6, 8, 10]).p_value == pytest.approx(2 / 120)
    assert kendall([1, 2, 3], [3, 2, 1]).p_value == pytest.approx(2 / 6)
    tied = spearman([1, 1, 2, 3], [1, 2, 3, 4])
    assert tied.ties and tied.value == pytest.approx(spearmanr([1, 1, 2, 3], [1, 2, 3, 4]).statistic)
    both = spearman([2, 2, 2], [1, 1, 1])
    assert both.value is None and "x and y constant" in both.message
    with pytest.raises(ValueError, match="finite"):
        spearman([1, 2, float("nan")], [1, 2, 3])
    with pytest.raises(ValueError, match="same length"):
        spearman([1, 2, 3], [1, 2])
    # nine models: still exact (9! pairings); ten with exact_max 9: asymptotic
    assert spearman(range(9), range(9)).p_value == pytest.approx(2 / math.factorial(9))
    r10 = spearman(range(10), range(10), exact_max=9)
    assert r10.method == "asymptotic t" and r10.p_value < 1e-6
