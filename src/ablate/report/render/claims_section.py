"""The Claims section of summary.md: method, forest plot, the claims table, one line per claim."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from ablate.overrides import value_text
from ablate.report.judge.claims import higher_is_better, interaction
from ablate.report.judge.stats import Stat
from ablate.report.judge.verdicts import ALPHA, Verdict
from ablate.report.load.runs import STEPS
from ablate.report.load.sweep import Sweep
from ablate.report.render.forest import FOREST
from ablate.report.render.tables import csv_value, fmt_stat, md_table, metric_digits


def _num(value: float, digits: int) -> str:
    return "—" if not math.isfinite(value) else f"{value:+.{digits}f}"


def fmt_difference(v: Verdict) -> str:
    """`+0.0087 [+0.0021, +0.0153]`, with the interval's level when it is not 95%."""
    c = v.comparison
    if c is None:
        return "—"
    d = metric_digits(v.claim["metric"])
    text = f"{_num(c.mean, d)} [{_num(v.lo, d)}, {_num(v.hi, d)}]"
    if v.verdict == "no effect":  # the TOST interval, which lies inside ±margin
        text += f" (TOST {100 * (1 - 2 * v.level):.3g}%)"
    elif not math.isclose(v.level, ALPHA):
        text += f" ({100 * (1 - v.level):.3g}%)"
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


def claims_table(verdicts: Sequence[Verdict]) -> str:
    """Claim, difference [interval], wins, Holm-adjusted p, verdict, seeds used and needed."""
    header = ["claim", "difference [CI]", "wins", "adj. p", "verdict", "seeds used", "seeds needed"]
    rows = []
    for v in verdicts:
        c = v.comparison
        wins = f"{c.wins}/{c.n}" if c is not None and c.wins is not None else "—"
        p = f"{v.p_adj:.3g}" if math.isfinite(v.p_adj) else "—"
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
    effect = "d_z" if cmp.pairing == "paired" else "Hedges' g"
    numbers = [f"P(better beats worse) = {cmp.prob:.2f}" if math.isfinite(cmp.prob) else ""]
    numbers.append(f"{effect} = {cmp.effect:.2f}" if math.isfinite(cmp.effect) else "")
    lo95, hi95 = v.ci95
    numbers.append(f"95% CI [{_num(lo95, d)}, {_num(hi95, d)}]")
    numbers.append(f"margin ±{v.margin:.{d}f}")
    if math.isfinite(cmp.perm_p):
        floor = 2 / 2**cmp.n  # the smallest two-sided p n pairs' sign flips can give
        numbers.append(
            f"p = {cmp.p:.3g} (t), {cmp.perm_p:.3g} (sign-flip permutation; "
            f"at {cmp.n} pairs never below {floor:.3g})"
        )
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
        "= as claimed (negated when lower is better). Runs are paired by seed and by the swept "
        "factors a claim does not fix; Welch's unpaired t-test where they cannot be paired. "
        "**supported** / **contradicted**: the interval lies above / below 0, i.e. the "
        f"Holm-adjusted p < {verdicts[0].alpha:.3g} (each interval is at its claim's Holm level, "
        "shown when not 95%); **no effect**: the TOST (1 − 2α) interval lies inside ±margin; else "
        "**inconclusive**, with the seeds that would decide it at the observed sd. Each paired "
        "line also gives a sign-flip permutation p beside the t-test's, a check that needs no "
        "normality (it does not change the verdict)."
    )
    if steps:
        rule += (
            " For steps_to_target, runs that never reached the target — diverged runs included — "
            f"count as {csv_value(sweep.budget) or 'the step budget'} steps, the worst outcome."
        )
    if any(v.claim.get("metric") == "val/acc_best" for v in verdicts):
        rule += " For val/acc_best, diverged runs count with the best they reached."
    forest = f"![{FOREST}]({FOREST})\n\n" if FOREST in plots else ""
    lines = "\n".join(fmt_verdict(v) for v in verdicts)
    return f"## Claims\n\n{rule}\n\n{forest}{claims_table(verdicts)}\n\n{lines}\n"
