"""A claim as written: its direction, its cells and sides, and how its nuisance keys are picked."""

from __future__ import annotations

import math
from typing import Any

from ablate.overrides import is_number, same_text, value_text
from ablate.report.judge.stats import mean_ci, sample
from ablate.report.load.runs import STEPS, Run, acted

PICK_METRIC = "val/acc_best"  # nuisance values are chosen on validation, never on test
# `factor: metric`: the sides are two metrics of the same runs (test/acc against test/acc_mc1),
# paired within each run's seed; `metric` names the family that sets the margin and direction.
METRIC_FACTOR = "metric"


def higher_is_better(claim: dict[str, Any]) -> bool:
    """The claim's direction: stated, else lower is better for steps_to_target and losses."""
    metric = str(claim.get("metric", ""))
    return bool(claim.get("higher_is_better", metric != STEPS and "loss" not in metric))


def same_value(actual: Any, wanted: Any) -> bool:
    """Whether a run's value equals a claim's value (numerically when both are numbers)."""
    if isinstance(wanted, list | tuple):
        return any(same_value(actual, w) for w in wanted)
    a, w = value_text(actual), value_text(wanted)
    if is_number(a) and is_number(w):
        return math.isclose(float(a), float(w), rel_tol=1e-9, abs_tol=0.0)
    return same_text(a, w)


def side_runs(runs: list[Run], conditions: dict[str, Any]) -> list[Run]:
    return [r for r in runs if all(same_value(r.lookup(k), v) for k, v in conditions.items())]


def value_of(run: Run, key: str) -> str:
    return run.factors.get(key, value_text(run.lookup(key)))


def pick(runs: list[Run], keys: list[str]) -> tuple[list[Run], str]:
    """The runs at the nuisance values with the best mean val/acc_best, and those values."""
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(value_of(run, k) for k in keys), []).append(run)
    scored = [(mean_ci(sample(g, PICK_METRIC)).mean, v) for v, g in groups.items()]
    scored = [(m, v) for m, v in scored if math.isfinite(m)]
    if not scored:
        return [], "none (no val/acc_best)"
    best = max(scored, key=lambda mv: mv[0])[1]
    return groups[best], ", ".join(f"{k}={v}" for k, v in zip(keys, best, strict=True))


def interaction(claim: dict[str, Any]) -> tuple[str, Any, Any] | str | None:
    """(key, from, to) of an interaction claim's `by`; None without one; a string if malformed."""
    by = claim.get("by")
    if by is None:
        return None
    if not isinstance(by, dict):
        return "`by` must be a mapping {key, from, to}"
    levels = by.get("levels")
    start, end = levels if isinstance(levels, list) and len(levels) == 2 else (None, None)
    start, end = by.get("from", start), by.get("to", end)
    if "key" not in by or start is None or end is None:
        return "`by` needs key, from and to (or levels: [from, to])"
    return str(by["key"]), start, end


def side(factor: str, value: Any) -> dict[str, Any]:
    """The run conditions of one side: none when the sides are metrics of the same runs."""
    return {} if factor == METRIC_FACTOR else {factor: value}


def cells(claim: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], list[float]] | str:
    """(label, conditions) per cell, and the contrast coefficients (before the direction sign)."""
    factor, where = claim["factor"], dict(claim.get("where") or {})
    by = interaction(claim)
    if isinstance(by, str):
        return by
    if by is None:
        sides = (claim["better"], claim["worse"])
        return [(f"{factor}={value_text(v)}", {**where, **side(factor, v)}) for v in sides], [
            1.0,
            -1.0,
        ]
    key, start, end = by
    cells = [
        (f"{factor}={value_text(v)}, {key}={value_text(lv)}", {**where, **side(factor, v), key: lv})
        for lv in (start, end)
        for v in (claim["better"], claim["worse"])
    ]
    return cells, [-1.0, 1.0, 1.0, -1.0]  # (better - worse)@to - (better - worse)@from


def cell_metrics(claim: dict[str, Any], n: int) -> list[str]:
    """The metric each of the n cells is scored on: the claim's, or its side's for factor: metric."""
    if claim["factor"] != METRIC_FACTOR:
        return [claim["metric"]] * n
    return [str(claim["better"]), str(claim["worse"])] * (n // 2)


def tuning_seeds(claim: dict[str, Any]) -> set[str]:
    seeds = claim.get("tuning_seeds") or []
    return {value_text(s) for s in (seeds if isinstance(seeds, list) else [seeds])}


def acted_text(arms: list[list[Run]]) -> str:
    """Whether the techniques that differ between a claim's arms acted, e.g. "max_norm acted in
    0 of 7 runs" (from the runs' technique records; empty when no run records one)."""

    def names(runs: list[Run]) -> set[str]:
        return {k for r in runs for k in r.techniques}

    on = [names(runs) for runs in arms]
    differing = sorted(set.union(*on) - set.intersection(*on)) if on else []
    parts = []
    for name in differing:
        did, of = acted([r for runs in arms for r in runs], name)
        if of:
            parts.append(f"{name} acted in {did} of {of} runs")
    return "; ".join(parts)
