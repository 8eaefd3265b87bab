"""Claim verdicts: the better and worse sides of a claim compared with 95% CIs."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from ablate.report.runs import STEPS, Run, _is_number, _text
from ablate.report.stats import Stat, mean_ci, sample
from ablate.report.sweep import Sweep


@dataclass
class Verdict:
    """The outcome of one claim and the numbers that decide it."""

    claim: dict[str, Any]
    verdict: str  # supported | not supported | inconclusive
    better: Stat
    worse: Stat
    reason: str


def _same(actual: Any, wanted: Any) -> bool:
    """Whether a run's value equals a claim's value (numerically when both are numbers)."""
    if isinstance(wanted, list | tuple):
        return any(_same(actual, w) for w in wanted)
    a, w = _text(actual), _text(wanted)
    if _is_number(a) and _is_number(w):
        return math.isclose(float(a), float(w), rel_tol=1e-9, abs_tol=0.0)
    return a == w


def _side(runs: list[Run], claim: dict[str, Any], value: Any) -> list[Run]:
    where = claim.get("where") or {}
    return [
        r
        for r in runs
        if _same(r.lookup(claim["factor"]), value)
        and all(_same(r.lookup(k), v) for k, v in where.items())
    ]


def judge(claim: dict[str, Any], sweep: Sweep) -> Verdict:
    """Compare the claim's better and worse sides on its metric with 95% CIs (runs pooled)."""
    missing = [k for k in ("metric", "factor", "better", "worse") if k not in claim]
    if missing:
        return Verdict(claim, "inconclusive", Stat(0), Stat(0), f"claim lacks {', '.join(missing)}")
    metric = claim["metric"]
    if metric == STEPS and sweep.target is None:
        return Verdict(claim, "inconclusive", Stat(0), Stat(0), "no report.target_acc is set")
    budget = sweep.budget if metric == STEPS else None
    better = mean_ci(sample(_side(sweep.runs, claim, claim["better"]), metric, budget))
    worse = mean_ci(sample(_side(sweep.runs, claim, claim["worse"]), metric, budget))
    if min(better.n, worse.n) < 2:
        return Verdict(claim, "inconclusive", better, worse, "fewer than 2 usable runs on a side")
    if better.overlaps(worse):
        return Verdict(claim, "inconclusive", better, worse, "the 95% CIs overlap")
    higher = claim.get("higher_is_better", metric != STEPS and "loss" not in metric)
    as_claimed = better.mean > worse.mean if higher else better.mean < worse.mean
    verdict = "supported" if as_claimed else "not supported"
    direction = "as claimed" if as_claimed else "the other way"
    return Verdict(claim, verdict, better, worse, f"the CIs do not overlap; difference {direction}")
