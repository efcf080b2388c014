"""Rank correlations across few units (models): Spearman's rho and Kendall's tau-b with honest p-values.

With a handful of models the usual p-values are asymptotic approximations that are badly wrong (the
t approximation of Spearman's p gives p = 0 for a perfect agreement of 4 models, whose exact p is 2/24).
For ``n <= exact_max`` (default 9, i.e. 362,880 pairings) the p-value here is *exact*: every pairing of the
two samples is enumerated (all permutations of one of them, vectorised with numpy), and the two-sided p is
the fraction of pairings whose statistic is at least as far from 0 as the observed one,
``P(|T| >= |t_obs|)`` (for a symmetric null, as Spearman's and Kendall's without ties, this equals scipy's
``permutation_test`` two-sided p, ``2 * min(P(T >= t), P(T <= t))``). Above ``exact_max`` scipy's asymptotic
p-values are used (Spearman: t distribution; Kendall: normal), and the result says which.

Ties are handled by average ranks (Spearman = Pearson on the ranks) and tau-b (Kendall); the permutation
distribution keeps the ties (it permutes the tied ranks). A constant sample has no rank correlation: the
result then holds ``value = None``, ``p_value = None`` and a message saying so, never a silent NaN. So does
an n below 3.

Example:
    >>> r = spearman([0.1, 0.2, 0.3, 0.4, 0.5], [1, 2, 3, 4, 5])
    >>> r.value, r.p_value, r.method            # 1.0, 2/120, "exact permutation"
    >>> rho, tau = rank_correlations(x, y)      # both from one enumeration
"""

from __future__ import annotations

import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: default largest n whose p-value is exact (9! = 362,880 pairings, well under a second)
EXACT_MAX = 9
#: absolute tolerance when comparing permuted statistics with the observed one (float round-off)
_TOL = 1e-9


@dataclass(frozen=True)
class RankCorrelation:
    """One rank correlation.

    Attributes:
        statistic: ``"spearman"`` or ``"kendall"`` (tau-b).
        value: the coefficient, or None when it is undefined (a constant sample, n < 3).
        p_value: two-sided p-value, or None with ``value``.
        method: ``"exact permutation"`` (every pairing), ``"asymptotic t"`` (Spearman), ``"asymptotic
            normal"`` (Kendall) or ``"undefined"``.
        n: number of (x, y) pairs used.
        ties: whether either sample holds ties.
        message: why the value is undefined (empty otherwise).
    """

    statistic: str
    value: float | None
    p_value: float | None
    method: str
    n: int
    ties: bool
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def average_ranks(values: Sequence[float]) -> np.ndarray:
    """Ranks 1..n of ``values``, ties getting the mean of their ranks."""
    from scipy.stats import rankdata

    return rankdata(np.asarray(values, dtype=np.float64), method="average")


@functools.lru_cache(maxsize=4)
def permutations(n: int) -> np.ndarray:
    """Every permutation of ``range(n)`` as an (n!, n) int8 array (cached; n <= 10)."""
    if not 0 < n <= 10:
        raise ValueError(f"exact enumeration needs 1 <= n <= 10, got {n}")
    out = np.zeros((1, 1), dtype=np.int8)
    for m in range(2, n + 1):  # insert m - 1 at every position of each permutation of range(m - 1)
        prev, k = out, out.shape[0]
        out = np.empty((k * m, m), dtype=np.int8)
        for pos in range(m):
            block = out[pos * k : (pos + 1) * k]
            block[:, :pos] = prev[:, :pos]
            block[:, pos] = m - 1
            block[:, pos + 1 :] = prev[:, pos:]
    out.setflags(write=False)
    return out


def _check(x: Sequence[float], y: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(x, dtype=np.float64).reshape(-1), np.asarray(y, dtype=np.float64).reshape(-1)
    if a.shape != b.shape:
        raise ValueError(f"x and y need the same length, got {a.size} and {b.size}")
    if not (np.isfinite(a).all() and np.isfinite(b).all()):
        raise ValueError("x and y must be finite (drop missing values first)")
    return a, b


def _undefined(statistic: str, n: int, ties: bool, message: str) -> RankCorrelation:
    return RankCorrelation(statistic, None, None, "undefined", n, ties, message)


def _why_undefined(a: np.ndarray, b: np.ndarray) -> str:
    if len(a) < 3:
        return f"{len(a)} pair(s); a rank correlation needs >= 3"
    const = [name for name, v in (("x", a), ("y", b)) if np.all(v == v[0])]
    if const:
        return f"{' and '.join(const)} constant (all {len(a)} values equal): no rank correlation"
    return ""


def _spearman_perm(ra: np.ndarray, rb: np.ndarray, perms: np.ndarray) -> tuple[float, np.ndarray]:
    ca, cb = ra - ra.mean(), rb - rb.mean()
    scale = math.sqrt(float(ca @ ca) * float(cb @ cb))
    obs = float(ca @ cb) / scale
    dist = (cb[perms] @ ca) / scale  # (n!,)
    return obs, dist


def _kendall_perm(a: np.ndarray, b: np.ndarray, perms: np.ndarray) -> tuple[float, np.ndarray]:
    i, j = np.triu_indices(len(a), k=1)
    sa = np.sign(a[i] - a[j]).astype(np.int32)
    # b as small integer codes (same order, same ties): the signs of differences need nothing more
    codes = np.unique(b, return_inverse=True)[1].astype(np.int8)
    sb = np.sign(codes[i] - codes[j]).astype(np.int32)
    denom = math.sqrt(float(np.abs(sa).sum()) * float(np.abs(sb).sum()))  # tau-b, permutation-invariant
    obs = float(sa @ sb) / denom
    bp = codes[perms]  # (n!, n) int8
    dist = (np.sign(bp[:, i] - bp[:, j]).astype(np.int32) @ sa) / denom
    return obs, dist


def _exact_p(obs: float, dist: np.ndarray) -> float:
    return float(np.mean(np.abs(dist) >= abs(obs) - _TOL))


def _clip(v: float) -> float:
    return float(min(1.0, max(-1.0, v)))


def rank_correlations(
    x: Sequence[float], y: Sequence[float], *, exact_max: int = EXACT_MAX
) -> tuple[RankCorrelation, RankCorrelation]:
    """Spearman's rho and Kendall's tau-b of paired samples, exact p-values for ``n <= exact_max``.

    Args:
        x, y: paired, finite samples (one value per unit, e.g. per model).
        exact_max: largest n whose p-values come from enumerating every pairing (at most 10).

    Returns:
        (spearman, kendall) `RankCorrelation` results.

    Raises:
        ValueError: different lengths, non-finite values, or ``exact_max > 10``.
    """
    if exact_max > 10:
        raise ValueError(f"exact_max must be <= 10 (10! pairings), got {exact_max}")
    a, b = _check(x, y)
    n = len(a)
    ties = bool(len(np.unique(a)) < n or len(np.unique(b)) < n)
    why = _why_undefined(a, b)
    if why:
        return _undefined("spearman", n, ties, why), _undefined("kendall", n, ties, why)
    if n <= exact_max:
        perms = permutations(n)
        rho, rho_dist = _spearman_perm(average_ranks(a), average_ranks(b), perms)
        tau, tau_dist = _kendall_perm(a, b, perms)
        return (
            RankCorrelation("spearman", _clip(rho), _exact_p(rho, rho_dist), "exact permutation", n, ties),
            RankCorrelation("kendall", _clip(tau), _exact_p(tau, tau_dist), "exact permutation", n, ties),
        )
    from scipy.stats import kendalltau, spearmanr

    s = spearmanr(a, b)
    k = kendalltau(a, b, method="asymptotic")
    return (
        RankCorrelation("spearman", _clip(float(s.statistic)), float(s.pvalue), "asymptotic t", n, ties),
        RankCorrelation("kendall", _clip(float(k.statistic)), float(k.pvalue), "asymptotic normal", n, ties),
    )


def spearman(x: Sequence[float], y: Sequence[float], *, exact_max: int = EXACT_MAX) -> RankCorrelation:
    """Spearman's rho with a two-sided p-value, exact for ``n <= exact_max`` (see `rank_correlations`)."""
    return rank_correlations(x, y, exact_max=exact_max)[0]


def kendall(x: Sequence[float], y: Sequence[float], *, exact_max: int = EXACT_MAX) -> RankCorrelation:
    """Kendall's tau-b with a two-sided p-value, exact for ``n <= exact_max`` (see `rank_correlations`)."""
    return rank_correlations(x, y, exact_max=exact_max)[1]


def benjamini_hochberg(p_values: Sequence[float | None]) -> list[float | None]:
    """Benjamini-Hochberg q-values (false-discovery-rate adjusted p-values) of one family of tests.

    A report that shows dozens of correlations will show a few with p < 0.05 by chance; the q-value of a test
    is the smallest false-discovery rate at which it would be called significant. ``None`` entries (undefined
    tests) stay ``None`` and are not counted in the family.

    Example:
        >>> benjamini_hochberg([0.01, 0.04, None, 0.03])   # [0.03, 0.04, None, 0.04]
    """
    idx = [i for i, p in enumerate(p_values) if p is not None]
    out: list[float | None] = [None] * len(p_values)
    if not idx:
        return out
    p = np.asarray([float(p_values[i]) for i in idx], dtype=np.float64)
    if np.any(~np.isfinite(p)) or np.any(p < 0) or np.any(p > 1):
        raise ValueError(f"p-values must lie in [0, 1], got {[p_values[i] for i in idx]}")
    m = len(p)
    order = np.argsort(p)
    scaled = p[order] * m / np.arange(1, m + 1)
    q_sorted = np.minimum(np.minimum.accumulate(scaled[::-1])[::-1], 1.0)
    q = np.empty(m)
    q[order] = q_sorted
    for i, v in zip(idx, q):
        out[i] = float(v)
    return out


def with_q_values(rows: Sequence[Mapping[str, Any]], p_key: str = "p_value", q_key: str = "q_value"
                  ) -> list[dict[str, Any]]:
    """Copies of ``rows`` with ``q_key`` = the Benjamini-Hochberg q-value of ``p_key`` over all of them (one
    family: the rows a table shows)."""
    qs = benjamini_hochberg([r.get(p_key) for r in rows])
    return [{**r, q_key: q} for r, q in zip(rows, qs)]


__all__ = [
    "EXACT_MAX",
    "RankCorrelation",
    "average_ranks",
    "benjamini_hochberg",
    "kendall",
    "permutations",
    "rank_correlations",
    "spearman",
    "with_q_values",
]
