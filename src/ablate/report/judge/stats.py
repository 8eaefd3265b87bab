"""Statistics for tables and plots: Student-t quantiles (scipy), mean ± CI, the values that count."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from scipy import stats

from ablate.report.judge.pairs import DIVERGED_COUNT_FOR
from ablate.report.load.runs import Run
from ablate.run.record import Status


def t975(df: float) -> float:
    """Two-sided 95% Student-t quantile t_{0.975, df} (scipy.stats.t)."""
    return t_quantile(0.95, df)


def t_quantile(confidence: float, df: float) -> float:
    """Two-sided Student-t quantile t_{(1 + confidence) / 2, df} (scipy.stats.t)."""
    if not df >= 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    return float(stats.t.ppf((1 + confidence) / 2, df))


@dataclass(frozen=True)
class Stat:
    """Mean, sample std and 95% t-interval half-width of n values (nan where undefined)."""

    n: int
    mean: float = math.nan
    std: float = math.nan
    half: float = math.nan

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def overlaps(self, other: Stat) -> bool:
        """Whether the two 95% intervals share a point."""
        return self.lo <= other.hi and other.lo <= self.hi


def mean_ci(values: Iterable[float]) -> Stat:
    """Mean ± std and the Student-t 95% CI of the mean (n-1 dof) of the finite values."""
    xs = [float(v) for v in values if math.isfinite(v)]
    if not xs:
        return Stat(0)
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return Stat(1, mean)
    std = statistics.stdev(xs)
    return Stat(len(xs), mean, std, t975(len(xs) - 1) * std / math.sqrt(len(xs)))


def reached_target(run: Run) -> float | None:
    """The step at which a run counts as having reached the target; None: it never did.

    A diverged run never counts, even where its curve crossed the target before it diverged.
    """
    return None if run.status == Status.DIVERGED else run.steps_to_target


def sample(runs: Iterable[Run], metric: str) -> list[float]:
    """Finite values of a metric over the runs where it counts (see `counts`): for tables and plots.

    Claims judge outcomes instead (judge.pairs): failures and never-reached targets as the worst.
    """
    return [v for r in runs if counts(r, metric) and math.isfinite(v := r.metric(metric))]


def counts(run: Run, metric: str) -> bool:
    """Whether a run's value of `metric` is a result: completed runs, and diverged ones for
    the metrics in DIVERGED_COUNT_FOR (a diverged run has no test/acc: it is not tested)."""
    return run.completed or (run.status == Status.DIVERGED and metric in DIVERGED_COUNT_FOR)
