"""The Claims section of summary.md: method, forest plot, the claims table, one line per claim."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ablate.overrides import value_text
from ablate.report.judge import exact
from ablate.report.judge.spec import higher_is_better, interaction
from ablate.report.judge.stats import Stat
from ablate.report.judge.verdicts import Comparison, Verdict
from ablate.report.load.runs import STEPS
from ablate.report.load.sweep import Sweep
from ablate.report.render.forest import FOREST
from ablate.report.render.tables import fmt_stat, md_table, metric_digits


def _num(value: float, digits: int) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.{digits}f}"


def fmt_difference(v: Verdict) -> str:
    """`+0.0087 [+0.0021, +0.0153]`: the mean difference and its 95% t-interval (the effect's size),
    with the seeds it is over when some had no finite difference (a failure, a target not reached)."""
    c = v.comparison
    if c is None or not math.isfinite(c.mean):
        return "—"
    d = metric_digits(v.claim["metric"])
    text = f"{_num(c.mean, d)} [{_num(v.lo, d)}, {_num(v.hi, d)}]"
    if c.pairing == "paired" and c.finite < c.n:
        text += f" over {c.finite} of {c.n} seeds"
    return text


def fmt_used(v: Verdict) -> str:
    c = v.comparison
    if c is None:
        return "—"
    return str(c.n) if c.pairing == "paired" else "+".join(map(str, c.sizes))


def fmt_needed(v: Verdict) -> str:
    if math.isnan(v.needed):
        return "—"
    return ">1000" if math.isinf(v.needed) else str(int(v.needed))


def fmt_p(v: Verdict) -> str:
    """The exact p against the level it was held to: `0.0039 ≤ 0.0167`."""
    if not math.isfinite(v.p_adj):
        return "—"
    if v.verdict == "no effect":
        return f"TOST {v.p_equiv:.2g} ≤ {v.eq_level:.2g}"
    if not math.isfinite(v.level):
        return f"{v.p_adj:.2g}"
    return f"{v.p_adj:.2g} {'≤' if v.p_adj <= v.level else '>'} {v.level:.2g}"


def fmt_signs(c: Comparison | None) -> str:
    """Seeds as claimed / against / tied (/ both at their worst), e.g. `6/1/0`."""
    if c is None or c.wins is None:
        return "—"
    return f"{c.wins}/{c.losses}/{c.ties}" + (f"/{c.neither}" if c.neither else "")


def claims_table(verdicts: Sequence[Verdict]) -> str:
    """Claim, difference [95% CI], signs, exact p vs level, verdict, seeds used and needed."""
    header = ["claim", "difference [95% CI]", "for/against/tied", "exact p vs level", "verdict",
              "seeds used", "seeds needed"]  # fmt: skip
    rows = []
    for v in verdicts:
        wins, p = fmt_signs(v.comparison), fmt_p(v)
        text = v.claim.get("text") or "(claim without text)"
        rows.append(
            [text, fmt_difference(v), wins, p, f"**{v.label}**", fmt_used(v), fmt_needed(v)]
        )
    return md_table(header, rows)


def fmt_verdict(v: Verdict) -> str:
    """One verdict line with the numbers behind it."""
    c = v.claim
    text = c.get("text") or "(claim without text)"
    if "factor" not in c or "metric" not in c or v.comparison is None:
        return f"- **{v.label}**: “{text}” — {v.reason}."
    d = metric_digits(c["metric"])
    where = c.get("where") or {}
    scope = f" where {', '.join(f'{k}={value_text(x)}' for k, x in where.items())}" if where else ""
    by = interaction(c)
    if isinstance(by, tuple):
        scope += f", change from {by[0]}={value_text(by[1])} to {value_text(by[2])}"

    def side(value: Any, stat: Stat) -> str:
        return f"{c['factor']}={value_text(value)}: {fmt_stat(stat, d)} (n={stat.n})"

    cmp = v.comparison
    effect = "d_z" if cmp.pairing == "paired" else ""
    numbers = [f"P(better beats worse) = {cmp.prob:.2f}" if math.isfinite(cmp.prob) else ""]
    numbers.append(f"{effect} = {cmp.effect:.2f}" if effect and math.isfinite(cmp.effect) else "")
    numbers.append(f"margin ±{v.margin:.{d}f}")
    test = "exact sign-flip" if cmp.pairing == "paired" else "Mann-Whitney exact"
    numbers.append(
        f"{test} p = {cmp.p:.3g} (level {v.level:.3g})" if math.isfinite(v.level) else ""
    )
    if math.isfinite(v.p_equiv) and cmp.pairing == "paired":
        numbers.append(
            f"TOST p = {v.p_equiv:.3g}"
            + (f" (level {v.eq_level:.3g})" if math.isfinite(v.eq_level) else "")
        )
    if cmp.informative and math.isfinite(v.level) and exact.smallest_p(cmp.informative) > v.level:
        numbers.append(
            f"at {cmp.informative} seeds with a sign the exact p is never below {exact.smallest_p(cmp.informative):.3g}"
        )
    if v.acted:
        numbers.append(v.acted)
    picks = "; ".join(f"{side_}: {pick}" for side_, pick in v.picks.items())
    return (
        f"- **{v.label}**: “{text}” — `{c['metric']}`{scope}, "
        f"{side(c.get('better'), v.better)} vs {side(c.get('worse'), v.worse)}; "
        f"{'higher' if higher_is_better(c) else 'lower'} is better; {v.reason}; "
        + ", ".join(n for n in numbers if n)
        + (f"; nuisance picked on val/acc_best: {picks}" if picks else "")
        + "."
    )


def _method(verdicts: Sequence[Verdict]) -> str:
    methods = [v.method for v in verdicts if v.method]
    if not methods:
        return "no claim could be tested"
    tests = sorted({m.split(", ", 1)[0] for m in methods}, reverse=True)
    return " / ".join(tests) + ", " + methods[0].split(", ", 1)[1]


def section_claims(sweep: Sweep, verdicts: list[Verdict], plots: Sequence[str] = ()) -> str:
    """The method, the forest plot, the claims table, then one line per claim."""
    if not verdicts:
        return "## Claims\n\nNo claims were stated (config.report.claims is empty).\n"
    steps = any(v.claim.get("metric") == STEPS for v in verdicts)
    rule = (
        f"**Method: {_method(verdicts)}.** Difference = better − worse, signed so that positive "
        "= as claimed (negated when lower is better). The seed is the unit: each arm has one "
        "outcome per seed, the swept factors a claim does not fix averaged within the seed; a run "
        "that failed or diverged counts as its arm's worst outcome. The exact sign-flip test of "
        "the per-seed differences (signed ranks; no normality assumed) decides: **supported** / "
        f"**contradicted** when its p is at or below the claim's level (Holm over the claims at "
        f"α = {verdicts[0].alpha:.3g}, spent over a study's looks; a claim decided at a look stays "
        "decided); **no effect** when two one-sided exact tests put the difference inside "
        "±margin (a Holm family of their own); **not tested** when the arms were identical at "
        "every seed; else **inconclusive**, with the seeds that would decide it with 80% power. "
        "n seeds with a sign can reach p = 2/2^n at best, so fewer than 6 never decide at 0.05. "
        "The mean difference and its 95% t-interval give the effect's size and decide nothing."
    )
    if steps:
        rule += (
            " For steps_to_target, a run that never reached the target (diverged runs included) "
            "is censored: its rank is last, its size unknown, so each claim says how many seeds "
            "of each arm reached it, and the interval is over the seeds where both did."
        )
    if any(v.claim.get("metric") == "val/acc_best" for v in verdicts):
        rule += " For val/acc_best, diverged runs count with the best they reached."
    forest = f"![{FOREST}]({FOREST})\n\n" if FOREST in plots else ""
    lines = "\n".join(fmt_verdict(v) for v in verdicts)
    return f"## Claims\n\n{rule}\n\n{forest}{claims_table(verdicts)}\n\n{lines}\n"
