"""Claim verdicts: differences paired by seed, Holm over the report's claims, four outcomes.

A claim is a dict in the config's `report.claims`:

    text: GroupNorm beats BatchNorm at 2 images per batch      # what the report prints
    metric: test/acc            # a final metric of summary.json, or steps_to_target
    factor: norm                # the key the claim is about ...
    better: group               # ... the value claimed better ...
    worse: batch                # ... and the one claimed worse
    higher_is_better: true      # default: false for steps_to_target and *loss* metrics
    where: {data.batch_size: 2} # optional: both sides restricted to these values (or lists)
    margin: 0.005               # optional: equivalence margin in the metric's units; defaults
                                # 0.005 (0.5 points) for accuracies and other [0, 1] metrics,
                                # 0.05 for losses, 10% of the step budget for steps_to_target
    by: {key: data.batch_size, from: 32, to: 2}   # optional: an interaction claim (below);
                                # `levels: [32, 2]` is the same as from: 32, to: 2
    nuisance: [optim.lr]        # optional: keys tuned per side: each side (each cell of an
                                # interaction) at its value with the best mean val/acc_best

The difference d is signed so that positive = as claimed: d = better - worse when higher is
better, worse - better when lower is better (steps_to_target, losses). With `by`, d is the
difference of differences s·[(better - worse)@to - (better - worse)@from] with the same sign s:
"the advantage of `better` grows from `from` to `to`". For accuracy this is "`worse` loses more
than `better` going from `from` to `to`": (worse@from - worse@to) - (better@from - better@to) > 0.

Pairing: runs are matched by seed and by every swept factor the claim does not fix (fixed are
factor, where keys, the by key and the nuisance keys). With at least 2 matched pairs the claim
uses the paired t-test of the per-pair differences (scipy.stats.ttest_1samp); unmatched runs are
left out. Otherwise Welch's unpaired t-test over all runs of each side (scipy.stats.ttest_ind).

Verdicts (verdicts.py): supported / contradicted when the interval lies above / below 0, no
effect when the TOST interval lies inside ±margin, else inconclusive, with the seeds that would
decide it. Error control: Holm over the report's tested claims at alpha = 0.05, or at the nominal
level of a sequential look (sequential.py, `looks=(k, K)`). Each claim's interval is taken at its
Holm decision level, so "interval excludes 0" and "Holm-adjusted p < alpha" always agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ablate.overrides import is_number, value_text
from ablate.report.judge.sequential import describe, look_alpha
from ablate.report.judge.stats import Stat, mean_ci, sample
from ablate.report.judge.verdicts import (
    ALPHA,
    Comparison,
    Verdict,
    default_margin,
    holm,
    holm_levels,
    outcome,
    paired,
    seeds_needed,
    welch,
)
from ablate.report.load.runs import STEPS, Run
from ablate.report.load.sweep import Sweep

PICK_METRIC = "val/acc_best"  # nuisance values are chosen on validation, never on test


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
    return a == w


def _side(runs: list[Run], conditions: dict[str, Any]) -> list[Run]:
    return [r for r in runs if all(same_value(r.lookup(k), v) for k, v in conditions.items())]


def _value_of(run: Run, key: str) -> str:
    return run.factors.get(key, value_text(run.lookup(key)))


def _pick(runs: list[Run], keys: list[str]) -> tuple[list[Run], str]:
    """The runs at the nuisance values with the best mean val/acc_best, and those values."""
    groups: dict[tuple[str, ...], list[Run]] = {}
    for run in runs:
        groups.setdefault(tuple(_value_of(run, k) for k in keys), []).append(run)
    scored = [(mean_ci(sample(g, PICK_METRIC)).mean, v) for v, g in groups.items()]
    scored = [(m, v) for m, v in scored if math.isfinite(m)]
    if not scored:
        return [], "none (no val/acc_best)"
    best = max(scored, key=lambda mv: mv[0])[1]
    return groups[best], ", ".join(f"{k}={v}" for k, v in zip(keys, best, strict=True))


def _keyed(runs: list[Run], metric: str, budget: float | None, others: list[str]) -> dict:
    """{(seed, other factor values): mean value}; runs without a seed get a key of their own."""
    values: dict[tuple, list[float]] = {}
    for i, run in enumerate(runs):
        found = sample([run], metric, budget)
        if found:
            seed = value_text(run.seed) if run.seed is not None else f"(no seed {i})"
            values.setdefault((seed, *(run.factors.get(f) for f in others)), []).extend(found)
    return {k: float(np.mean(v)) for k, v in values.items()}


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


def _cells(claim: dict[str, Any]) -> tuple[list[tuple[str, dict[str, Any]]], list[float]] | str:
    """(label, conditions) per cell, and the contrast coefficients (before the direction sign)."""
    factor, where = claim["factor"], dict(claim.get("where") or {})
    by = interaction(claim)
    if isinstance(by, str):
        return by
    if by is None:
        sides = (claim["better"], claim["worse"])
        return [(f"{factor}={value_text(v)}", {**where, factor: v}) for v in sides], [1.0, -1.0]
    key, start, end = by
    cells = [
        (f"{factor}={value_text(v)}, {key}={value_text(lv)}", {**where, factor: v, key: lv})
        for lv in (start, end)
        for v in (claim["better"], claim["worse"])
    ]
    return cells, [-1.0, 1.0, 1.0, -1.0]  # (better - worse)@to - (better - worse)@from


@dataclass
class Prepared:
    """A claim's comparison before multiplicity, or why there is none."""

    comparison: Comparison | None
    reason: str = ""
    better: Stat = field(default_factory=lambda: Stat(0))
    worse: Stat = field(default_factory=lambda: Stat(0))
    picks: dict[str, str] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)  # factors matched besides the seed


def compare(claim: dict[str, Any], sweep: Sweep) -> Prepared:
    """The claim's signed difference tested on the sweep's runs (no multiplicity yet)."""
    missing = [k for k in ("metric", "factor", "better", "worse") if k not in claim]
    if missing:
        return Prepared(None, f"claim lacks {', '.join(missing)}")
    metric = claim["metric"]
    if metric == STEPS and sweep.target is None:
        return Prepared(None, "no report.target_acc is set")
    made = _cells(claim)
    if isinstance(made, str):
        return Prepared(None, made)
    cells, coefs = made
    sign = 1.0 if higher_is_better(claim) else -1.0
    nuisance = claim.get("nuisance") or []
    nuisance = [nuisance] if isinstance(nuisance, str) else list(nuisance)
    fixed = {claim["factor"], *(claim.get("where") or {}), *nuisance}
    by = interaction(claim)
    if isinstance(by, tuple):
        fixed.add(by[0])
    others = [f for f in sweep.factors if f not in fixed]
    budget = sweep.budget if metric == STEPS else None
    keyed, picks = [], {}
    for label, conditions in cells:
        runs = _side(sweep.runs, conditions)
        if nuisance:
            runs, picks[label] = _pick(runs, nuisance)
        keyed.append(_keyed(runs, metric, budget, others))
    common = sorted(set.intersection(*(set(k) for k in keyed)) if keyed else set())
    common = [k for k in common if not k[0].startswith("(no seed")]
    if len(common) >= 2:
        table = np.array([[cell[k] for cell in keyed] for k in common])
        comparison = paired(sign * table @ np.asarray(coefs))
        if len(cells) == 2:
            better, worse = table[:, 0], table[:, 1]
        else:  # the change from `from` to `to` of each side
            better, worse = table[:, 2] - table[:, 0], table[:, 3] - table[:, 1]
        return Prepared(comparison, "", mean_ci(better), mean_ci(worse), picks, others)
    groups = [list(cell.values()) for cell in keyed]
    stats_ = [mean_ci(g) for g in groups[:2]] if len(cells) == 2 else [Stat(0), Stat(0)]
    if min(len(g) for g in groups) < 2:
        return Prepared(None, "fewer than 2 usable runs on a side", *stats_, picks)
    return Prepared(welch(groups, [sign * c for c in coefs]), "", *stats_, picks, others)


def _reason(verdict: str, c: Comparison, others: list[str]) -> str:
    if c.pairing == "paired":
        by = " and ".join(["seed", *(f"`{f}`" for f in others)])
        how = f"paired by {by} over {c.n} pairs"
    else:
        how = "Welch, unpaired (" + "+".join(str(n) for n in c.sizes) + " runs)"
    why = {
        "supported": "interval above 0",
        "contradicted": "interval below 0",
        "no effect": "equivalence interval inside ±margin",
        "inconclusive": "interval spans 0 and reaches past ±margin",
    }[verdict]
    return f"{how}; {why}"


def judge_all(
    sweep: Sweep,
    claims: list[dict[str, Any]] | None = None,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> list[Verdict]:
    """Verdicts of the claims (default: the sweep's), Holm over the tested ones, at 0.05 or a look."""
    # looks=(k, K): the nominal level of look k of K, Lan-DeMets `spending` ("pocock" or
    # "obrien-fleming") at information `fractions` (default k/K; e.g. the seeds of each look).
    claims = sweep.claims if claims is None else claims
    alpha = look_alpha(looks[0], looks[1], ALPHA, spending, fractions) if looks else ALPHA
    prepared = [compare(c, sweep) for c in claims]
    raw = [p.comparison.p if p.comparison else math.nan for p in prepared]
    adjusted, levels = holm(raw), holm_levels(raw, alpha)
    tested = sum(not math.isnan(v) for v in raw)
    verdicts = []
    for claim, prep, p_adj, level in zip(claims, prepared, adjusted, levels, strict=True):
        c = prep.comparison
        if c is None:
            verdicts.append(
                Verdict(
                    claim,
                    "inconclusive",
                    prep.reason,
                    prep.better,
                    prep.worse,
                    picks=prep.picks,
                    alpha=alpha,
                )
            )
            continue
        margin = float(claim.get("margin", default_margin(claim["metric"], sweep.budget)))
        verdict = str(outcome(c.mean, c.se, c.df, level, margin))
        # The interval that decided: for "no effect", the TOST (1 - 2·level) interval inside ±margin.
        lo, hi = c.interval(2 * level if verdict == "no effect" else level)
        small = verdict in ("supported", "contradicted") and max(abs(lo), abs(hi)) < margin
        needed = math.nan
        if verdict == "inconclusive":
            n = seeds_needed(c, level, margin)
            needed = math.inf if n is None else float(n)
        test = "paired t" if c.pairing == "paired" else "Welch t"
        verdicts.append(
            Verdict(
                claim, verdict, _reason(verdict, c, prep.others), prep.better, prep.worse, c,
                margin, level, p_adj, lo, hi, c.interval(ALPHA), needed, prep.picks,
                f"{test}, Holm over {tested} claims, {describe(looks, spending)}", small, alpha,
            )
        )  # fmt: skip
    return verdicts


def judge(
    claim: dict[str, Any],
    sweep: Sweep,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> Verdict:
    """One claim's verdict, Holm-adjusted within the sweep's claims (plus this one if not there)."""
    family = list(sweep.claims)
    if not any(c is claim or c == claim for c in family):
        family.append(claim)
    index = next(i for i, c in enumerate(family) if c is claim or c == claim)
    return judge_all(sweep, family, looks, spending, fractions)[index]
