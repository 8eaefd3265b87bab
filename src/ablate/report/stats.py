"""Statistics: Student-t quantiles, mean ± CI, steps-to-target and the samples claims compare."""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass

from ablate.report.runs import STEPS, TARGET_METRIC, Run

# t_{0.975, df} for df = 1..30 (two-sided 95%); larger df use the Cornish-Fisher expansion below.
_T975 = (
    12.7062047,
    4.30265273,
    3.18244631,
    2.77644511,
    2.57058184,
    2.44691185,
    2.36462425,
    2.30600414,
    2.26215716,
    2.22813885,
    2.20098516,
    2.17881283,
    2.16036866,
    2.14478669,
    2.13144955,
    2.11990530,
    2.10981558,
    2.10092204,
    2.09302405,
    2.08596345,
    2.07961384,
    2.07387307,
    2.06865761,
    2.06389856,
    2.05953855,
    2.05552944,
    2.05183052,
    2.04840714,
    2.04522964,
    2.04227246,
)
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """Two-sided 95% Student-t quantile t_{0.975, df}."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975  # error < 1e-5 for df > 30
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


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


def steps_to_target(run: Run, target: float | None) -> float | None:
    """First validation step with val/acc >= target; nan if never (always for diverged runs)."""
    if target is None:
        return None
    if run.status == "diverged":
        return math.nan
    steps, values = run.series(TARGET_METRIC)
    reached = steps[values >= target]
    return float(reached[0]) if reached.size else math.nan


def step_budget(runs: list[Run]) -> float:
    """The longest training of the sweep (completed runs' steps, else any logged step)."""
    done = [r.steps for r in runs if r.completed and math.isfinite(r.steps)]
    if done:
        return max(done)
    logged = [s for r in runs for s in r.series(TARGET_METRIC)[0]]
    return max(logged, default=math.nan)


def sample(runs: Iterable[Run], metric: str, budget: float | None = None) -> list[float]:
    """Finite values of a metric over the runs where it counts (see `counts`).

    With a budget and metric steps_to_target, runs that never reached the target, diverged ones
    included, count as `budget` steps: the worst outcome of the sweep.
    """
    if metric == STEPS and budget is not None:
        return [
            budget if math.isnan(r.metric(STEPS)) else r.metric(STEPS)
            for r in runs
            if r.status in ("completed", "diverged") and r.steps_to_target is not None
        ]
    return [v for r in runs if counts(r, metric) and math.isfinite(v := r.metric(metric))]


# Well defined for a run that diverged: the best validation accuracy it reached before that.
DIVERGED_COUNT_FOR = ("val/acc_best",)


def counts(run: Run, metric: str) -> bool:
    """Whether a run's value of `metric` is a result: completed runs, and diverged ones for
    the metrics in DIVERGED_COUNT_FOR (a diverged run has no test/acc: it is not tested)."""
    return run.completed or (run.status == "diverged" and metric in DIVERGED_COUNT_FOR)
