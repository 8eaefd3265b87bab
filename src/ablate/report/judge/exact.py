"""Exact sign-flip tests of paired differences, valid at any number of seeds without normality.

Under "no effect" the two arms of a seed are exchangeable, so each paired difference is as likely
to have either sign. The test statistic is the sum of signed ranks of |d| (Wilcoxon's signed-rank
statistic, midranks for ties): a failure or a never-reached target enters as ±inf, which only
fixes its sign and gives it the top rank, so the test stays exact with censored and failed runs.
Zero differences (ties) and undefined ones (both arms failed, neither reached) carry no sign and
are left out, as in Wilcoxon's test. The null distribution is enumerated over all 2^n sign
vectors up to EXACT_MAX pairs, else drawn (seeded) MONTE_CARLO times. scipy.stats.wilcoxon with
`method=PermutationMethod()` computes the same p-values (tests/test_exact.py checks it); this
version is vectorized because the calibration benchmark runs it ~10^5 times.
"""

from __future__ import annotations

import math
from functools import lru_cache

import numpy as np
from scipy import stats

EXACT_MAX = 16  # 2^16 sign vectors: exact enumeration up to 16 informative pairs
MONTE_CARLO = 20_000
TIE_REL = 1e-6  # |a - b| <= TIE_REL·max(|a|, |b|) is a tie: float noise between identical arms


@lru_cache(maxsize=EXACT_MAX + 1)
def _signs(n: int) -> np.ndarray:
    """All 2^n vectors of ±1 (n <= EXACT_MAX), one per row."""
    codes = np.arange(2**n)[:, None] >> np.arange(n)[None, :]
    return np.where(codes & 1, 1.0, -1.0)


def informative(d: np.ndarray) -> np.ndarray:
    """The differences that carry a sign: not nan, not zero."""
    d = np.asarray(d, dtype=float)
    return d[~np.isnan(d) & (d != 0)]


def signed_ranks(d: np.ndarray) -> np.ndarray:
    """Signed midranks of |d| over the informative differences (±inf ranked last)."""
    d = informative(d)
    return np.sign(d) * stats.rankdata(np.abs(d)) if d.size else d


def one_sided(d: np.ndarray) -> tuple[float, float]:
    """(p_greater, p_less): exact one-sided sign-flip p of the signed-rank sum (1, 1 if no signs)."""
    r = signed_ranks(d)
    if not r.size:
        return 1.0, 1.0
    observed = r.sum()
    if r.size <= EXACT_MAX:
        null = _signs(r.size) @ np.abs(r)
        count = null.size
    else:
        draws = np.random.default_rng(0).choice((-1.0, 1.0), size=(MONTE_CARLO, r.size))
        null = np.concatenate([draws @ np.abs(r), [observed]])  # the observed sign vector counts
        count = null.size
    eps = 1e-9 * max(1.0, float(np.abs(r).sum()))
    return float(np.sum(null >= observed - eps) / count), float(
        np.sum(null <= observed + eps) / count
    )


def two_sided(d: np.ndarray) -> float:
    """Exact two-sided sign-flip p: twice the smaller one-sided p, at most 1."""
    return min(1.0, 2 * min(one_sided(d)))


def equivalence(d: np.ndarray, margin: float) -> float:
    """TOST p of |shift| < margin: the larger one-sided p of d - margin (less) and d + margin (greater)."""
    if not math.isfinite(margin) or margin <= 0:
        return 1.0
    d = np.asarray(d, dtype=float)
    d = d[~np.isnan(d)]
    if not d.size:
        return 1.0
    return max(one_sided(d - margin)[1], one_sided(d + margin)[0])


def smallest_p(n: int) -> float:
    """The smallest two-sided p that n informative pairs allow: 2 / 2^n (1 without pairs)."""
    return min(1.0, 2.0 / 2**n) if n > 0 else 1.0


def pairs_for(level: float) -> int:
    """The fewest informative pairs whose exact two-sided test can reach `level`."""
    return max(1, math.ceil(1 - math.log2(level))) if 0 < level < 1 else 1


def tie(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Whether paired values are equal up to float noise (TIE_REL); two worst outcomes are not."""
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    with np.errstate(invalid="ignore"):
        close = np.abs(a - b) <= TIE_REL * np.maximum(np.abs(a), np.abs(b))
    return close & np.isfinite(a) & np.isfinite(b)
