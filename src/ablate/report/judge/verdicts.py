"""The numbers behind a claim's verdict: paired or Welch t-tests, Holm, margins, seeds needed.

Everything here works on differences that are already signed so that positive = as claimed
(claims.py does the signing and the pairing). The four outcomes, at a two-sided level `alpha`:

- supported: the (1 - alpha) t-interval of the mean difference lies entirely above 0;
- contradicted: it lies entirely below 0;
- no effect: equivalence by two one-sided tests (TOST): the (1 - 2·alpha) interval lies inside
  (-margin, +margin);
- inconclusive: anything else.

A supported (or contradicted) difference whose whole interval is closer to 0 than the margin is
reported as "smaller than the margin". `alpha` is the claim's decision level: 0.05, or the
sequential look's nominal level (sequential.py), divided by Holm's step factor (`holm_levels`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

from ablate.report.judge.stats import Stat
from ablate.report.load.runs import STEPS

ALPHA = 0.05
CAP = 1000  # seeds needed beyond this read ">1000"
OUTCOMES = ("supported", "contradicted", "no effect", "inconclusive")
ACC_MARGIN = 0.005  # 0.5 accuracy points: metrics in [0, 1] (accuracies, accuracy gaps)
LOSS_MARGIN = 0.05
STEPS_MARGIN = 0.10  # fraction of the sweep's step budget


def default_margin(metric: str, budget: float) -> float:
    """Equivalence margin in the metric's units: 10% of the step budget, 0.05 loss, 0.005 else."""
    if metric == STEPS:
        return STEPS_MARGIN * budget if math.isfinite(budget) else math.nan
    return LOSS_MARGIN if "loss" in metric else ACC_MARGIN


def margin_label(metric: str, margin: float) -> str:
    """How the verdict names the margin: "0.5-point", "40-step" or "0.05"."""
    if metric == STEPS:
        return f"{margin:g}-step"
    if "loss" in metric:
        return f"{margin:g}"
    return f"{100 * margin:g}-point"


@dataclass(frozen=True)
class Comparison:
    """A t-test of the signed differences: paired (one per seed) or Welch (unpaired)."""

    pairing: str  # "paired" | "welch"
    n: int  # pairs, or the smallest group when unpaired
    mean: float
    se: float
    df: float
    p: float  # two-sided, H0: mean difference = 0
    sd: float  # sd of one unit (pair, or one seed per group) of the difference
    wins: int | None = None  # pairs with a positive difference (ties count half in `prob`)
    prob: float = math.nan  # P(better > worse): of the pairs, or of all cross pairs (Welch)
    effect: float = math.nan  # Cohen's d_z (paired) or Hedges' g (Welch, two groups)
    sizes: tuple[int, ...] = ()  # group sizes when unpaired
    perm_p: float = math.nan  # sign-flip permutation p (paired): a check on the t-test's normality

    def interval(self, alpha: float) -> tuple[float, float]:
        """The two-sided (1 - alpha) t-interval of the mean difference."""
        if self.se == 0:
            return self.mean, self.mean
        half = float(stats.t.isf(alpha / 2, self.df)) * self.se
        return self.mean - half, self.mean + half


@dataclass
class Verdict:
    """The outcome of one claim and the numbers that decide it."""

    claim: dict[str, Any]
    verdict: str  # supported | contradicted | no effect | inconclusive
    reason: str
    better: Stat = field(default_factory=lambda: Stat(0))  # per-seed values used (by: changes)
    worse: Stat = field(default_factory=lambda: Stat(0))
    comparison: Comparison | None = None
    margin: float = math.nan
    level: float = math.nan  # two-sided level of the decision interval (Holm and looks)
    p_adj: float = math.nan  # Holm-adjusted p over the report's tested claims
    lo: float = math.nan  # the decision interval of the difference
    hi: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)  # the plain 95% interval
    needed: float = math.nan  # seeds that would decide an inconclusive claim; inf: > CAP
    picks: dict[str, str] = field(default_factory=dict)  # side -> chosen nuisance values
    method: str = ""  # e.g. "paired t, Holm over 4 claims, single look"
    small: bool = False  # decided, but the whole interval is inside ±margin
    alpha: float = ALPHA  # the family's level: 0.05, or the sequential look's nominal level

    @property
    def decided(self) -> bool:
        return self.verdict in ("supported", "contradicted", "no effect")

    @property
    def label(self) -> str:
        """The verdict as the report reads it, e.g. "supported, smaller than the 0.5-point margin"."""
        if not self.small:
            return self.verdict
        return f"{self.verdict}, smaller than the {margin_label(self.claim['metric'], self.margin)} margin"


def _p_value(mean: np.ndarray, se: np.ndarray, df: np.ndarray | float) -> np.ndarray:
    """Two-sided p of mean / se against Student t; 0 when se = 0 and mean != 0."""
    with np.errstate(divide="ignore", invalid="ignore"):
        p = 2 * stats.t.sf(np.abs(mean / se), df)
    return np.where(se > 0, p, np.where(mean != 0, 0.0, 1.0))


def paired_arrays(d: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """(mean, se, df, p) of the paired t-test along the last axis (vectorized over studies)."""
    d = np.asarray(d, dtype=float)
    n = d.shape[-1]
    mean = d.mean(axis=-1)
    se = d.std(axis=-1, ddof=1) / math.sqrt(n)
    df = np.full(mean.shape, n - 1.0)
    return mean, se, df, _p_value(mean, se, df)


def paired(d: Sequence[float]) -> Comparison:
    """Paired t-test (scipy.stats.ttest_1samp on the differences) with wins and Cohen's d_z."""
    d = np.asarray(d, dtype=float)
    n = d.size
    mean, sd = float(d.mean()), float(d.std(ddof=1))
    se = sd / math.sqrt(n)
    p = float(stats.ttest_1samp(d, 0.0).pvalue) if sd > 0 else float(mean == 0)
    prob = float(np.mean((d > 0) + 0.5 * (d == 0)))
    effect = mean / sd if sd > 0 else math.copysign(math.inf, mean) if mean else 0.0
    perm = sign_flip_p(d) if sd > 0 else p
    return Comparison(
        "paired", n, mean, se, n - 1, p, sd, int(np.sum(d > 0)), prob, effect, (), perm
    )


def sign_flip_p(d: np.ndarray) -> float:
    """Two-sided p of the mean difference under random sign flips (exact up to 13 pairs, else
    9,999 seeded draws): no normality assumed, e.g. for a side that collapses at some seeds."""
    test = stats.permutation_test(
        (d,), np.mean, permutation_type="samples", n_resamples=9999, rng=0
    )
    return float(test.pvalue)


def welch(groups: Sequence[Sequence[float]], coefs: Sequence[float]) -> Comparison:
    """Welch t-test of the contrast sum(coefs·group means); two groups: scipy's ttest_ind."""
    xs = [np.asarray(g, dtype=float) for g in groups]
    ns = np.array([x.size for x in xs], dtype=float)
    var = np.array([x.var(ddof=1) for x in xs])
    c = np.asarray(coefs, dtype=float)
    mean = float(sum(ci * x.mean() for ci, x in zip(c, xs, strict=True)))
    parts = c**2 * var / ns
    se = float(math.sqrt(parts.sum()))
    df = float(parts.sum() ** 2 / np.sum(parts**2 / (ns - 1))) if se > 0 else float(ns.min() - 1)
    prob = effect = math.nan
    if len(xs) == 2 and set(c) == {1.0, -1.0}:
        hi, lo = (xs[0], xs[1]) if c[0] > 0 else (xs[1], xs[0])
        p = float(stats.ttest_ind(hi, lo, equal_var=False).pvalue) if se > 0 else float(mean == 0)
        cross = hi[:, None] - lo[None, :]
        prob = float(np.mean((cross > 0) + 0.5 * (cross == 0)))
        pooled = math.sqrt(((ns - 1) * var).sum() / (ns.sum() - 2))
        correction = 1 - 3 / (4 * ns.sum() - 9)  # Hedges' small-sample correction
        effect = mean / pooled * correction if pooled > 0 else math.nan
    else:
        p = float(_p_value(np.array(mean), np.array(se), df))
    sd = float(math.sqrt(np.sum(c**2 * var)))
    sizes = tuple(int(n) for n in ns)
    return Comparison("welch", min(sizes), mean, se, df, p, sd, None, prob, effect, sizes)


def holm(p: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (nan entries are left out of the family and stay nan)."""
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    order = sorted(idx, key=lambda i: p[i])
    m, running, out = len(order), 0.0, [math.nan] * len(p)
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        out[i] = running
    return out


def holm_levels(p: Sequence[float], alpha: float = ALPHA) -> list[float]:
    """Per-claim two-sided level whose interval excludes 0 exactly when the Holm-adjusted p < alpha."""
    # alpha / (m - r + 1) at rank r, frozen at the first rank whose own step fails: the step-down
    # stops there, and every later claim (larger p) then misses that level too.
    idx = [i for i, v in enumerate(p) if not math.isnan(v)]
    order = sorted(idx, key=lambda i: p[i])
    m, out, stop = len(order), [math.nan] * len(p), None
    for rank, i in enumerate(order):
        level = alpha / (m - rank)
        if stop is None and p[i] >= level:
            stop = level
        out[i] = level if stop is None else stop
    return out


def outcome(
    mean: np.ndarray, se: np.ndarray, df: np.ndarray, alpha: np.ndarray | float, margin: float
) -> np.ndarray:
    """The four outcomes (vectorized): interval side first, then TOST equivalence."""
    mean, se = np.asarray(mean, dtype=float), np.asarray(se, dtype=float)
    half = stats.t.isf(np.asarray(alpha) / 2, df) * se
    tost = stats.t.isf(np.asarray(alpha), df) * se
    equivalent = (np.abs(mean) + tost < margin) if math.isfinite(margin) else False
    return np.where(
        mean - half > 0,
        "supported",
        np.where(
            mean + half < 0, "contradicted", np.where(equivalent, "no effect", "inconclusive")
        ),
    )


def seeds_needed(c: Comparison, alpha: float, margin: float, cap: int = CAP) -> int | None:
    """Smallest n (pairs, or seeds per group) at which the observed mean and sd decide; None: > cap."""
    # Direction: t_{1-alpha/2, n-1}·sd/√n < |mean|; no effect: t_{1-alpha, n-1}·sd/√n < margin -
    # |mean|. Unpaired designs use n - 1 degrees of freedom, a conservative Welch df.
    if not math.isfinite(c.sd) or c.sd == 0:
        return 2 if c.mean != 0 or margin > 0 else None
    n = np.arange(2, cap + 1)
    width = c.sd / np.sqrt(n)
    direction = stats.t.isf(alpha / 2, n - 1) * width < abs(c.mean)
    equivalence = stats.t.isf(alpha, n - 1) * width < margin - abs(c.mean)
    ok = direction | equivalence if math.isfinite(margin) else direction
    return int(n[np.argmax(ok)]) if ok.any() else None
