"""The numbers behind a claim's verdict: exact tests decide, the t interval gives the effect's size.

Everything here works on per-seed differences already signed so that positive = as claimed
(pairs.py builds them; claims.py does the multiplicity). The outcomes:

- supported / contradicted: the exact two-sided sign-flip p (exact.py) is at or below the claim's
  level and the signed-rank sum is positive / negative;
- no effect: equivalence by two one-sided exact tests (TOST) of d - margin and d + margin, each
  at the claim's equivalence level;
- not tested: every seed's arms were equal up to float noise (the technique never acted);
- inconclusive: anything else, with the reason (e.g. the seeds cannot reach the level at all).

The mean difference and its 95% Student-t interval, over the seeds where both arms have a
finite value, describe the effect's size; they decide nothing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import special, stats

from ablate.report.judge import exact
from ablate.report.judge.pairs import Pairs
from ablate.report.judge.stats import Stat
from ablate.report.load.runs import STEPS

ALPHA = 0.05
POWER = 0.8  # "seeds needed": the n at which the observed effect is decided with this power
CAP = 1000  # seeds needed beyond this read ">1000"
OUTCOMES = ("supported", "contradicted", "no effect", "not tested", "inconclusive")
DECIDED = ("supported", "contradicted", "no effect")
ACC_MARGIN = 0.005  # 0.5 accuracy points: metrics in [0, 1] (accuracies, accuracy gaps)
LOSS_MARGIN = 0.05
STEPS_MARGIN = 0.10  # fraction of the step budget, where the validation interval is unknown


# Metrics that are fractions of images or weights: their margins read in points (0.005: 0.5 points).
FRACTIONS = ("acc", "gap/", "drop_", "near_zero")


def default_margin(metric: str, budget: float, interval: float = math.nan) -> float:
    """Equivalence margin in the metric's units: one validation interval of steps, 0.05 loss, 0.005 else."""
    if metric == STEPS:  # a difference finer than the validation grid cannot be measured
        if math.isfinite(interval):
            return interval
        return STEPS_MARGIN * budget if math.isfinite(budget) else math.nan
    return LOSS_MARGIN if "loss" in metric else ACC_MARGIN


def margin_label(metric: str, margin: float) -> str:
    """How the verdict names the margin: "0.5-point", "40-step" or "0.05"."""
    if metric == STEPS:
        return f"{margin:g}-step"
    if "loss" in metric or not any(h in metric for h in FRACTIONS):
        return f"{margin:g}"
    return f"{100 * margin:g}-point"


@dataclass(frozen=True)
class Comparison:
    """A claim's per-seed differences: the exact test's p and the effect's size."""

    pairing: str  # "paired" (by seed) | "unpaired" (no common seeds: Mann-Whitney)
    n: int  # seeds compared (pairs), or the smallest arm when unpaired
    mean: float  # mean difference over the seeds where every arm is finite (nan if none)
    se: float
    df: float
    p: float  # exact two-sided p (H0: the arms are exchangeable within a seed)
    sd: float  # sd of one seed's difference (finite seeds)
    wins: int | None = None  # seeds as claimed
    prob: float = math.nan  # P(better beats worse): ties count half
    effect: float = math.nan  # Cohen's d_z over the finite seeds
    sizes: tuple[int, ...] = ()  # arm sizes when unpaired
    direction: float = 0.0  # sign of the signed-rank sum: + as claimed, - against
    losses: int = 0  # seeds against the claim
    ties: int = 0  # seeds whose arms were equal up to float noise
    neither: int = 0  # seeds with the worst outcome on both arms: no sign
    worst: tuple[int, ...] = ()  # seeds per arm counted as the worst (failed, diverged, never)
    finite: int = 0  # seeds with a finite difference (the t interval's n)
    signed: tuple[float, ...] = ()  # the differences the exact tests read (ties as 0)

    @property
    def informative(self) -> int:
        """Seeds whose difference has a sign."""
        return (self.wins or 0) + self.losses

    @property
    def identical(self) -> bool:
        """Every seed's arms were equal (up to float noise): the comparison tested nothing."""
        return self.pairing == "paired" and self.n > 0 and self.ties == self.n

    def interval(self, alpha: float = ALPHA) -> tuple[float, float]:
        """The two-sided (1 - alpha) t-interval of the mean difference (finite seeds)."""
        if not math.isfinite(self.mean):
            return math.nan, math.nan
        if self.se == 0 or not math.isfinite(self.se):
            return (self.mean, self.mean) if self.se == 0 else (math.nan, math.nan)
        half = float(stats.t.isf(alpha / 2, self.df)) * self.se
        return self.mean - half, self.mean + half

    def equivalence_p(self, margin: float) -> float:
        """Exact TOST p of |difference| < margin (paired only; 1 when unpaired)."""
        if self.pairing != "paired":
            return 1.0
        return exact.equivalence(np.asarray(self.signed), margin)


@dataclass
class Verdict:
    """The outcome of one claim and the numbers that decide it."""

    claim: dict[str, Any]
    verdict: str  # one of OUTCOMES
    reason: str
    better: Stat = field(default_factory=lambda: Stat(0))  # per-seed values used (by: changes)
    worse: Stat = field(default_factory=lambda: Stat(0))
    comparison: Comparison | None = None
    margin: float = math.nan
    level: float = math.nan  # the two-sided level the exact p was held to (Holm and looks)
    p_adj: float = math.nan  # the exact p (as compared with `level`)
    lo: float = math.nan  # the 95% t-interval of the mean difference (the effect's size)
    hi: float = math.nan
    ci95: tuple[float, float] = (math.nan, math.nan)
    needed: float = math.nan  # seeds that would decide it with 80% power; inf: > CAP
    picks: dict[str, str] = field(default_factory=dict)  # side -> chosen nuisance values
    method: str = ""  # e.g. "exact sign-flip, Holm over 4 claims, single look"
    small: bool = False  # decided, but the whole interval is inside ±margin
    alpha: float = ALPHA  # the family's level
    p_equiv: float = math.nan  # the exact TOST p
    eq_level: float = math.nan  # the one-sided level the TOST p was held to
    look: int | None = None  # the look at which it was decided (sequential studies)
    acted: str = ""  # e.g. "max-norm acted in 0/14 runs" (from the runs' technique records)

    @property
    def decided(self) -> bool:
        return self.verdict in DECIDED

    @property
    def final(self) -> bool:
        """Decided, or not tested: more seeds would not change it."""
        return self.decided or self.verdict == "not tested"

    @property
    def label(self) -> str:
        """The verdict as the report reads it, e.g. "supported, smaller than the 0.5-point margin"."""
        if not self.small:
            return self.verdict
        return f"{self.verdict}, smaller than the {margin_label(self.claim['metric'], self.margin)} margin"


def paired(pairs: Pairs) -> Comparison:
    """The exact test and the effect's size of per-seed paired differences."""
    signed = pairs.signed()
    classes = pairs.classes()
    p_greater, p_less = exact.one_sided(signed)
    ranks = exact.signed_ranks(signed)
    finite = pairs.finite()
    n_f = finite.size
    mean = float(finite.mean()) if n_f else math.nan
    sd = float(finite.std(ddof=1)) if n_f > 1 else math.nan
    se = sd / math.sqrt(n_f) if n_f > 1 else math.nan
    effect = mean / sd if n_f > 1 and sd > 0 else math.nan
    n = pairs.n
    prob = (classes["as claimed"] + 0.5 * classes["tie"]) / n if n else math.nan
    return Comparison(
        "paired", n, mean, se, max(n_f - 1, 1), min(1.0, 2 * min(p_greater, p_less)), sd,
        classes["as claimed"], prob, effect, (), float(np.sign(ranks.sum())) if ranks.size else 0.0,
        classes["against"], classes["tie"], classes["neither"], pairs.worst(), n_f,
        tuple(float(x) for x in signed),
    )  # fmt: skip


def unpaired(better: Sequence[float], worse: Sequence[float]) -> Comparison:
    """Mann-Whitney's exact test (scipy) of per-seed outcomes with no seed in common."""
    b, w = np.asarray(better, dtype=float), np.asarray(worse, dtype=float)
    test = stats.mannwhitneyu(b, w, alternative="two-sided", method="exact")
    cross = b[:, None] - w[None, :]
    with np.errstate(invalid="ignore"):
        prob = float(np.mean((cross > 0) + 0.5 * (cross == 0)))
    fb, fw = b[np.isfinite(b)], w[np.isfinite(w)]
    mean = float(fb.mean() - fw.mean()) if fb.size and fw.size else math.nan
    parts = [x.var(ddof=1) / x.size for x in (fb, fw) if x.size > 1]
    se = math.sqrt(sum(parts)) if len(parts) == 2 else math.nan
    df = float(min(fb.size, fw.size) - 1) if len(parts) == 2 else 1.0  # conservative Welch df
    sizes = (int(b.size), int(w.size))
    direction = float(np.sign(prob - 0.5))
    return Comparison("unpaired", min(sizes), mean, se, max(df, 1.0), float(test.pvalue),
                      se * math.sqrt(min(sizes)), None, prob, math.nan, sizes, direction)  # fmt: skip


def seeds_needed(c: Comparison, level: float, margin: float, cap: int = CAP) -> int | None:
    """Smallest n at which the observed effect is decided with 80% power at `level`; None: > cap."""
    # Direction: noncentral-t power of the two-sided test at level, and the exact test's floor
    # (n informative seeds reach p = 2/2^n at best). No effect: TOST power at the same level.
    floor = exact.pairs_for(level)
    if c.finite < c.n or not math.isfinite(c.mean) or not math.isfinite(c.sd):
        return _signs_needed(c, level, floor, cap)  # a failure or a censored seed: signs only
    if c.sd == 0:
        return floor if c.mean != 0 or margin > abs(c.mean) else None

    def power(n: int, one_sided_level: float, shift: float) -> float:
        """Noncentral-t power (scipy.special, the ufuncs behind scipy.stats.t and nct)."""
        crit, nc = special.stdtrit(n - 1, 1 - one_sided_level), shift / c.sd * math.sqrt(n)
        power = 1 - special.nctdtr(n - 1, nc, crit)
        return power if math.isfinite(power) else float(special.ndtr(nc - crit))  # large nc

    def decided(n: int) -> bool:  # the power at n seeds reaches POWER (monotone in n)
        if power(n, level / 2, abs(c.mean)) >= POWER:
            return True
        gap = margin - abs(c.mean)
        return bool(math.isfinite(margin) and gap > 0 and power(n, level, gap) >= POWER)

    lo, hi = max(2, floor), cap
    if not decided(hi):
        return None
    while lo < hi:  # bisection: the smallest n that decides
        mid = (lo + hi) // 2
        lo, hi = (lo, mid) if decided(mid) else (mid + 1, hi)
    return lo


def _signs_needed(c: Comparison, level: float, floor: int, cap: int) -> int | None:
    """Seeds needed when only signs are known (e.g. one arm never reached the target)."""
    # The exact test on signs alone: power of a two-sided sign test (normal approximation),
    # scaled up by the share of seeds that had a sign at all.
    if not c.informative or not c.n:
        return None
    q, share = (c.wins or 0) / c.informative, c.informative / c.n
    if q in (0.0, 1.0):
        return min(cap + 1, math.ceil(floor / share)) if floor / share <= cap else None
    if q == 0.5:
        return None
    z = stats.norm.isf(level / 2) + stats.norm.isf(1 - POWER)
    n = max(floor, math.ceil((z * 0.5 / abs(q - 0.5)) ** 2)) / share
    return math.ceil(n) if n <= cap else None
