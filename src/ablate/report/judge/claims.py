"""Claim verdicts: differences paired by seed, Holm over the report's claims, four outcomes.

A claim is a dict in the config's `report.claims`:

    text: GroupNorm beats BatchNorm at 2 images per batch      # what the report prints
    metric: test/acc            # a final metric of summary.json, or steps_to_target
    factor: norm                # the key the claim is about (`metric`: better and worse are
                                # two metrics of the same runs, e.g. test/acc vs test/acc_mc1) ...
    better: group               # ... the value claimed better ...
    worse: batch                # ... and the one claimed worse
    higher_is_better: true      # default: false for steps_to_target and *loss* metrics
    where: {data.batch_size: 2} # optional: both sides restricted to these values (or lists)
    margin: 0.005               # optional: equivalence margin in the metric's units; defaults
                                # 0.005 (0.5 points) for accuracies and other [0, 1] metrics,
                                # 0.05 for losses, one validation interval for steps_to_target
    tuning_seeds: [0, 1]        # optional, with nuisance: the seeds the nuisance values are
                                # picked on; the claim is judged on the other seeds
    by: {key: data.batch_size, from: 32, to: 2}   # optional: an interaction claim (below);
                                # `levels: [32, 2]` is the same as from: 32, to: 2
    nuisance: [optim.lr]        # optional: keys tuned per side: each side (each cell of an
                                # interaction) at its value with the best mean val/acc_best

The difference d is signed so that positive = as claimed: d = better - worse when higher is
better, worse - better when lower is better (steps_to_target, losses). With `by`, d is the
difference of differences s·[(better - worse)@to - (better - worse)@from] with the same sign s:
"the advantage of `better` grows from `from` to `to`". For accuracy this is "`worse` loses more
than `better` going from `from` to `to`": (worse@from - worse@to) - (better@from - better@to) > 0.

The seed is the unit (pairs.py): each arm has one outcome per seed (other swept factors averaged
within the seed), a failed, diverged or never-reached run is that arm's worst outcome, and the
difference per seed is tested by the exact sign-flip test (exact.py), which decides; the mean
difference and its 95% t-interval are the effect's size. Arms with no seed in common fall back
to Mann-Whitney's exact test. A nuisance key is tuned on the claim's `tuning_seeds` (judged on
the others); tuned on the judged seeds, the claim stays inconclusive.

Verdicts (verdicts.py): supported / contradicted, no effect (exact TOST within ±margin), not tested
(identical arms), inconclusive with the seeds that would decide it at 80% power. Error control
(family.py): group-sequential Holm over the tested claims, superiority and equivalence each at
alpha = 0.05, across a study's looks (sequential.py); a claim decided at a look stays decided.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from ablate.overrides import value_text
from ablate.report.judge import exact
from ablate.report.judge.family import Looks, decide
from ablate.report.judge.pairs import Pairs, pair, per_seed
from ablate.report.judge.sequential import describe
from ablate.report.judge.spec import (
    acted_text,
    cell_metrics,
    higher_is_better,
    interaction,
    pick,
    side_runs,
    tuning_seeds,
    value_of,
)
from ablate.report.judge.spec import (
    cells as claim_cells,
)
from ablate.report.judge.stats import Stat, mean_ci
from ablate.report.judge.verdicts import (
    ALPHA,
    Comparison,
    Verdict,
    default_margin,
    paired,
    seeds_needed,
    unpaired,
)
from ablate.report.load.runs import STEPS
from ablate.report.load.sweep import Sweep


@dataclass
class Prepared:
    """A claim's comparison before multiplicity, or why there is none."""

    comparison: Comparison | None
    reason: str = ""
    better: Stat = field(default_factory=lambda: Stat(0))
    worse: Stat = field(default_factory=lambda: Stat(0))
    picks: dict[str, str] = field(default_factory=dict)
    others: list[str] = field(default_factory=list)  # factors averaged within a seed
    reached: tuple[int, ...] = ()  # steps_to_target: seeds per arm that reached the target
    tuned_on_judged: bool = False  # nuisance picked on the very seeds the claim is judged on
    acted: str = ""  # whether the techniques the arms differ in acted (their runs' records)


def compare(claim: dict[str, Any], sweep: Sweep) -> Prepared:
    """The claim's per-seed differences tested on the sweep's runs (no multiplicity yet)."""
    missing = [k for k in ("metric", "factor", "better", "worse") if k not in claim]
    if missing:
        return Prepared(None, f"claim lacks {', '.join(missing)}")
    metric = claim["metric"]
    if metric == STEPS and sweep.target is None:
        return Prepared(None, "no report.target_acc is set")
    made = claim_cells(claim)
    if isinstance(made, str):
        return Prepared(None, made)
    cells, coefs = made
    higher = higher_is_better(claim)
    nuisance = claim.get("nuisance") or []
    nuisance = [nuisance] if isinstance(nuisance, str) else list(nuisance)
    fixed = {claim["factor"], *(claim.get("where") or {}), *nuisance}
    by = interaction(claim)
    if isinstance(by, tuple):
        fixed.add(by[0])
    others = [f for f in sweep.factors if f not in fixed]
    tuning = tuning_seeds(claim) if nuisance else set()
    arms, picks = [], {}
    for label, conditions in cells:
        runs = side_runs(sweep.runs, conditions)
        if nuisance:  # picked on the tuning seeds (all seeds if none are declared)
            tune = [r for r in runs if value_text(r.seed) in tuning] if tuning else runs
            chosen, picks[label] = pick(tune, nuisance)
            values = {tuple(value_of(r, k) for k in nuisance) for r in chosen}
            runs = [r for r in runs if tuple(value_of(r, k) for k in nuisance) in values]
        arms.append([r for r in runs if value_text(r.seed) not in tuning])
    scored = cell_metrics(claim, len(cells))  # per cell: the claim's metric, or its side's
    pairs = pair(arms, scored, higher, others, coefs)
    reached = _reached(pairs) if metric == STEPS else ()
    tuned = bool(nuisance) and not tuning
    used = acted_text(arms)
    if pairs.n >= 2:
        better, worse = _sides(pairs)
        return Prepared(paired(pairs), "", better, worse, picks, others, reached, tuned, used)
    if len(cells) != 2:
        return Prepared(
            None, "an interaction needs at least 2 seeds in all four cells", picks=picks
        )
    seeds = [per_seed([arm], m, higher, others) for arm, m in zip(arms, scored, strict=True)]
    groups = [[v[0] for v in s.values()] for s in seeds]
    stats_ = [mean_ci(g) for g in groups]
    if min(len(g) for g in groups) < 2:
        return Prepared(None, "fewer than 2 usable seeds on a side", *stats_, picks)
    return Prepared(unpaired(*groups), "", *stats_, picks, others, (), tuned, used)


def _sides(pairs: Pairs) -> tuple[Stat, Stat]:
    """Each arm's per-seed values (an interaction: each side's change from `from` to `to`)."""
    t = pairs.table
    if t.shape[1] == 2:
        return mean_ci(t[:, 0]), mean_ci(t[:, 1])
    return mean_ci(t[:, 2] - t[:, 0]), mean_ci(t[:, 3] - t[:, 1])


def _reached(pairs: Pairs) -> tuple[int, ...]:
    """Seeds per arm whose run reached the target (a finite steps_to_target)."""
    return tuple(pairs.n - w for w in pairs.worst())


def _reason(c: Comparison, prep: Prepared) -> str:
    """How the seeds came out: the classes of their differences, targets reached, failures."""
    if c.pairing == "paired":
        averaged = (
            f", {' and '.join(f'`{f}`' for f in prep.others)} averaged" if prep.others else ""
        )
        how = f"{c.n} seeds{averaged}: {c.wins} as claimed, {c.losses} against, {c.ties} tied"
        how += f", {c.neither} with both arms at their worst" if c.neither else ""
    else:
        how = "no seed in common: Mann-Whitney over " + "+".join(str(n) for n in c.sizes) + " seeds"
    if prep.reached:
        how += "; reached the target: " + ", ".join(f"{k}/{c.n}" for k in prep.reached)
    elif any(c.worst):
        how += "; failed or diverged (counted as worst): " + ", ".join(map(str, c.worst))
    return how


def judge_all(
    sweep: Sweep,
    claims: list[dict[str, Any]] | None = None,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
    earlier: dict[int, Verdict] | None = None,
) -> list[Verdict]:
    """Verdicts of the claims (default: the sweep's) at a single look or at look k of K."""
    # looks=(k, K): Lan-DeMets `spending` ("pocock" or "obrien-fleming") at information
    # `fractions` (default k/K); earlier: {claim index: verdict at an earlier look} (stays decided).
    claims = sweep.claims if claims is None else claims
    design = Looks(*(looks or (1, 1)), spending, fractions)
    prepared = [compare(c, sweep) for c in claims]
    margins = [_margin(c, sweep) if "metric" in c else math.nan for c in claims]
    decisions = decide([p.comparison for p in prepared], margins, design, earlier)
    tested = sum(d.verdict != "untested" for d in decisions)
    method = f"exact sign-flip, Holm over {tested} claims, {describe(looks, spending)}"
    verdicts = []
    for i, (claim, prep, d) in enumerate(zip(claims, prepared, decisions, strict=True)):
        c, margin = prep.comparison, margins[i]
        base = Verdict(claim, "inconclusive", prep.reason, prep.better, prep.worse, c, margin,
                       picks=prep.picks, alpha=ALPHA, method=method, acted=prep.acted)  # fmt: skip
        if c is None:
            verdicts.append(base)
            continue
        lo, hi = c.interval(ALPHA)
        base = replace(base, lo=lo, hi=hi, ci95=(lo, hi), p_adj=c.p, level=d.level,
                       eq_level=d.eq_level, p_equiv=c.equivalence_p(margin))  # fmt: skip
        reason = _reason(c, prep)
        if c.identical:
            verdicts.append(
                replace(
                    base,
                    verdict="not tested",
                    reason=f"the arms were identical at every seed ({reason})",
                )
            )
            continue
        if d.verdict == "carried":
            old = (earlier or {})[i]
            verdicts.append(replace(  # the p-values and levels of the look that decided it
                base, verdict=old.verdict, look=old.look, p_adj=old.p_adj, level=old.level,
                p_equiv=old.p_equiv, eq_level=old.eq_level, small=old.small,
                reason=f"decided at look {old.look}; stays decided ({reason})",
            ))  # fmt: skip
            continue
        verdict = d.verdict
        if prep.tuned_on_judged and verdict != "inconclusive":
            verdict, reason = (
                "inconclusive",
                f"{reason}; nuisance tuned on the judged seeds: declare tuning_seeds",
            )
        needed = math.nan
        if verdict == "inconclusive":
            floor = exact.pairs_for(d.level)
            if prep.reached and not c.informative:  # censoring left no seed with a sign
                reason += (
                    "; not estimable at this budget: no seed has an arm that reached the target"
                )
            elif exact.smallest_p(c.informative) > d.level:
                reason += (
                    f"; an exact test needs {floor} seeds with a sign to reach p <= {d.level:.3g}"
                )
            n = seeds_needed(c, d.plan_level if math.isfinite(d.plan_level) else d.level, margin)
            needed = math.inf if n is None else float(max(n, floor))
        small = verdict in ("supported", "contradicted") and max(abs(lo), abs(hi)) < margin
        verdicts.append(replace(base, verdict=verdict, reason=reason, needed=needed, small=small,
                                look=design.k if verdict != "inconclusive" and looks else None))  # fmt: skip
    return verdicts


def _margin(claim: dict[str, Any], sweep: Sweep) -> float:
    """The claim's margin: stated or the default, never finer than the validation interval for steps."""
    default = default_margin(claim["metric"], sweep.budget, sweep.val_interval)
    margin = float(claim.get("margin", default))
    if claim["metric"] == STEPS and math.isfinite(sweep.val_interval):
        return max(margin, sweep.val_interval)
    return margin


def judge(
    claim: dict[str, Any],
    sweep: Sweep,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> Verdict:
    """One claim's verdict, in the family of the sweep's claims (plus this one if not there)."""
    family = list(sweep.claims)
    if not any(c is claim or c == claim for c in family):
        family.append(claim)
    index = next(i for i, c in enumerate(family) if c is claim or c == claim)
    return judge_all(sweep, family, looks, spending, fractions)[index]
