"""A claim's data with the seed as the unit: one outcome per seed and arm, failures as the worst.

Each run's value is an *outcome*: its metric; the worst value (±inf, on the side that is worse for
the metric) when it failed, diverged (except for metrics a diverged run still has, such as its
best validation accuracy before it diverged) or never reached the target (steps_to_target: right-
censored at the budget, so its size is unknown but its rank is last); none when it has not ended
(running, interrupted, unreadable). Within a seed, the levels of factors the claim does not fix
are averaged over the levels both arms have at that seed, so a seed counts once however many
other factors were swept (a seed-dependent effect cannot masquerade as many independent pairs).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ablate.overrides import value_text
from ablate.report.judge.exact import tie
from ablate.report.load.runs import STEPS, Run
from ablate.run.record import Status

# Well defined for a run that diverged: the best validation accuracy it reached before that.
DIVERGED_COUNT_FOR = ("val/acc_best",)
ENDED = (Status.COMPLETED, Status.DIVERGED, Status.FAILED)


def outcome(run: Run, metric: str, higher: bool) -> float | None:
    """The run's outcome on `metric`: its value, the worst (±inf) for a failure, None if not ended."""
    if run.status not in ENDED:
        return None
    worst = -math.inf if higher else math.inf
    if metric == STEPS:  # never reached (a failure included): censored, ranked last
        reached = run.steps_to_target if run.status == Status.COMPLETED else None
        return worst if reached is None else float(reached)
    if run.status == Status.FAILED:
        return worst
    if run.status == Status.DIVERGED and metric not in DIVERGED_COUNT_FOR:
        return worst
    value = run.metric(metric)
    return value if math.isfinite(value) else None


@dataclass(frozen=True)
class Pairs:
    """Per-seed outcomes of each arm (cells in columns) and the signed difference per seed."""

    seeds: tuple[str, ...]
    table: np.ndarray  # seeds × cells; ±inf = worst outcome
    d: np.ndarray  # signed so that positive = as claimed; nan = no sign (both arms worst)
    ties: np.ndarray  # bool per seed: equal up to float noise

    @property
    def n(self) -> int:
        return len(self.seeds)

    def classes(self) -> dict[str, int]:
        """How many seeds favour the claim, go against it, tie, or cannot tell (both worst)."""
        d = np.where(self.ties, 0.0, self.d)
        return {
            "as claimed": int(np.sum(d > 0)),
            "against": int(np.sum(d < 0)),
            "tie": int(np.sum(self.ties)),
            "neither": int(np.sum(np.isnan(d) & ~self.ties)),
        }

    def signed(self) -> np.ndarray:
        """d with ties set to 0 (what the exact tests read)."""
        return np.where(self.ties, 0.0, self.d)

    def finite(self) -> np.ndarray:
        """The differences of the seeds where every arm has a finite value (the effect's size)."""
        ok = np.all(np.isfinite(self.table), axis=1)
        return np.where(self.ties, 0.0, self.d)[ok]

    def worst(self) -> tuple[int, ...]:
        """Seeds per arm whose outcome is the worst (failed, diverged or never reached)."""
        return tuple(int(n) for n in np.sum(np.isinf(self.table), axis=0))


def per_seed(
    arms: Sequence[Sequence[Run]], metric: str | Sequence[str], higher: bool, others: Sequence[str]
) -> dict[str, list[float]]:
    """{seed: one outcome per arm}, other factors averaged over the levels all arms have there
    (`metric`: one for every arm, or one per arm: the sides of a `factor: metric` claim)."""
    metrics = [metric] * len(arms) if isinstance(metric, str) else list(metric)
    keyed: list[dict[str, dict[tuple, float]]] = []
    for runs, name in zip(arms, metrics, strict=True):
        by_seed: dict[str, dict[tuple, list[float]]] = {}
        for run in runs:
            value = outcome(run, name, higher)
            if value is None or run.seed is None:
                continue
            level = tuple(run.factors.get(f) for f in others)
            by_seed.setdefault(value_text(run.seed), {}).setdefault(level, []).append(value)
        keyed.append(
            {s: {lv: _mean(vs) for lv, vs in levels.items()} for s, levels in by_seed.items()}
        )
    out: dict[str, list[float]] = {}
    for seed in sorted(set.intersection(*(set(k) for k in keyed)) if keyed else set(), key=_order):
        common = set.intersection(*(set(k[seed]) for k in keyed))
        if common:
            out[seed] = [_mean([k[seed][lv] for lv in common]) for k in keyed]
    return out


def pair(
    arms: Sequence[Sequence[Run]], metric: str | Sequence[str], higher: bool,
    others: Sequence[str], coefs: Sequence[float],
) -> Pairs:  # fmt: skip
    """The claim's per-seed table and signed differences sign·(table @ coefs)."""
    values = per_seed(arms, metric, higher, others)
    seeds = tuple(values)
    table = np.array([values[s] for s in seeds], dtype=float).reshape(len(seeds), len(arms))
    c = np.asarray(coefs, dtype=float)
    sign = 1.0 if higher else -1.0
    with np.errstate(invalid="ignore"):
        d = sign * (table @ c) if seeds else np.zeros(0)  # +inf - inf = nan: both worst
    if len(arms) == 2:
        ties = tie(table[:, 0], table[:, 1]) if seeds else np.zeros(0, bool)
    else:  # an interaction: each side's change from `from` to `to` compared
        ties = (
            tie(table[:, 2] - table[:, 0], table[:, 3] - table[:, 1])
            if seeds
            else np.zeros(0, bool)
        )
    return Pairs(seeds, table, d, np.asarray(ties, dtype=bool))


def _mean(values: Sequence[float]) -> float:
    """Mean, where any worst outcome makes the mean the worst (all worsts share one sign)."""
    return float(np.mean(values))


def _order(seed: str) -> tuple[int, float | str]:
    """Numeric seeds in numeric order, then the rest."""
    try:
        return 0, float(seed)
    except ValueError:
        return 1, seed
