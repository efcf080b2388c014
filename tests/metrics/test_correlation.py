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


def test_benjamini_hochberg_matches_the_step_up_rule() -> None:
    from robustlab.metrics.correlation import benjamini_hochberg, with_q_values

    p = [0.01, 0.04, None, 0.03, 0.2]
    q = benjamini_hochberg(p)
    # sorted p 0.01, 0.03, 0.04, 0.2 (m = 4): p * m / rank = 0.04, 0.06, 0.0533, 0.2; running min from the top
    assert q[2] is None
    assert q[0] == pytest.approx(0.04)
    assert q[3] == pytest.approx(0.0533333) and q[1] == pytest.approx(0.0533333)
    assert q[4] == pytest.approx(0.2)
    assert all(qi >= pi for qi, pi in zip(q, p) if pi is not None)  # never below the raw p
    assert benjamini_hochberg([0.9, 0.95]) == [0.95, 0.95] and benjamini_hochberg([]) == []
    assert benjamini_hochberg([None]) == [None]
    rows = with_q_values([{"p_value": 0.01, "m": "a"}, {"p_value": None, "m": "b"}])
    assert rows == [{"p_value": 0.01, "m": "a", "q_value": 0.01},
                    {"p_value": None, "m": "b", "q_value": None}]
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([0.5, 1.5])
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        benjamini_hochberg([float("nan")])


def test_benjamini_hochberg_agrees_with_scipy() -> None:
    from scipy.stats import false_discovery_control

    from robustlab.metrics.correlation import benjamini_hochberg

    rng = np.random.default_rng(0)
    p = rng.uniform(0, 1, 40) ** 3
    assert np.allclose(benjamini_hochberg(list(p)), false_discovery_control(p, method="bh"))
