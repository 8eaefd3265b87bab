"""Synthetic sweeps with known truth, judged by the real engine (tests, verdict calibration)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ablate.report.load import STEPS, Run, Sweep
from ablate.run.record import Status

NEVER = math.inf  # a steps_to_target value: never reached the target
FAILED = math.nan  # an outcome value: the run failed (status failed, no metrics)


def run(factors: Mapping[str, str], seed: int, metric: str, value: float, status: str = "") -> Run:
    """One run at `factors` and `seed` whose `metric` is `value` (NEVER / FAILED as above)."""
    name = ",".join([*(f"{k}={v}" for k, v in factors.items()), f"seed={seed}"])
    if not status:
        status = Status.FAILED if math.isnan(value) else Status.COMPLETED
    r = Run(name, status, seed=seed, overrides={**factors, "seed": str(seed)})
    r.factors = dict(factors)
    r.steps = 1000.0
    if metric == STEPS:
        r.steps_to_target = None if math.isinf(value) or math.isnan(value) else float(value)
    elif status == Status.COMPLETED:
        r.metrics = {metric: float(value)}
    return r


def sweep(
    arms: Mapping[str, Sequence[float]],
    claims: Sequence[dict[str, Any]] | None = None,
    factor: str = "norm",
    metric: str = "test/acc",
    seeds: Sequence[int] | None = None,
    val_interval: float = math.nan,
    budget: float = 1000.0,
) -> Sweep:
    """A one-factor sweep: arms = {level: one value per seed}; default claim: first beats second."""
    levels = list(arms)
    runs = []
    for level, values in arms.items():
        for i, value in enumerate(values):
            seed = seeds[i] if seeds is not None else i
            runs.append(run({factor: level}, seed, metric, value))
    if claims is None:
        claims = [{"text": f"{levels[0]} beats {levels[1]}", "metric": metric, "factor": factor,
                   "better": levels[0], "worse": levels[1]}]  # fmt: skip
    target = 0.9 if metric == STEPS else None
    return Sweep(Path("."), runs, [factor], {factor: levels}, None, target, list(claims), budget,
                 val_interval)  # fmt: skip


def grid(
    values: Mapping[tuple[str, ...], Sequence[float]],
    factors: Sequence[str],
    claims: Sequence[dict[str, Any]],
    metric: str = "test/acc",
) -> Sweep:
    """A sweep over several factors: {(level per factor): one value per seed (seed = index)}."""
    runs = [
        run(dict(zip(factors, cell, strict=True)), seed, metric, v)
        for cell, vs in values.items()
        for seed, v in enumerate(vs)
    ]
    levels = {f: list(dict.fromkeys(cell[i] for cell in values)) for i, f in enumerate(factors)}
    return Sweep(Path("."), runs, list(factors), levels, None, None, list(claims), 1000.0)
