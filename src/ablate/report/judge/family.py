"""Error control across a report's claims and a study's looks: group-sequential Holm, two families.

Superiority (supported / contradicted): of the m tested claims, r already decided, the smallest
remaining exact p is held to the look's nominal level for alpha/(m - r) (Holm's step-down with
alpha recycled across looks: Ye, Li, Jiang & Hsu 2013, "Group sequential Holm procedures",
Statistics in Medicine 32(7); the nominal level of look k for an overall level a is
sequential.look_alpha(k, K, a)). Each rejection raises r and the next claim's level; the first
claim that misses its level stops the step-down, and the claims after it are held to that level.
A claim that crossed its boundary at an earlier look stays decided (its verdict is carried, not
re-tested), and a claim that tested nothing (identical arms) is not in the family.

Equivalence (no effect) is a family of its own, with the same procedure on the TOST p-values
(each one-sided test at half the two-sided nominal level of the look, for alpha/(m - r)), so a
claim can be declared equivalent only under its own family-wise error control.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ablate.report.judge.sequential import look_alpha
from ablate.report.judge.verdicts import ALPHA, Comparison, Verdict


@dataclass(frozen=True)
class Looks:
    """Where a judgement sits in a sequential design: look k of K (1 of 1 for a plain report)."""

    k: int = 1
    K: int = 1
    spending: str = "pocock"
    fractions: tuple[float, ...] | None = None

    def nominal(self, alpha: float) -> float:
        """Two-sided nominal level of this look for an overall level alpha."""
        return look_alpha(self.k, self.K, alpha, self.spending, self.fractions)

    def final(self, alpha: float) -> float:
        """Two-sided nominal level of the last look (what "seeds needed" plans for)."""
        return look_alpha(self.K, self.K, alpha, self.spending, self.fractions)


@dataclass(frozen=True)
class Decision:
    """One claim's outcome in the family and the levels it was held to."""

    verdict: str  # supported | contradicted | no effect | inconclusive | carried
    level: float = math.nan  # two-sided superiority level
    eq_level: float = math.nan  # one-sided level of each TOST test
    plan_level: float = math.nan  # the level "seeds needed" plans for


def decide(
    comparisons: Sequence[Comparison | None],
    margins: Sequence[float],
    looks: Looks,
    earlier: Mapping[int, Verdict] | None = None,
    alpha: float = ALPHA,
) -> list[Decision]:
    """Each claim's decision at this look (group-sequential Holm, superiority then equivalence)."""
    earlier = earlier or {}
    family = [i for i, c in enumerate(comparisons) if c is not None and not c.identical]
    carried = {i for i in family if i in earlier and earlier[i].decided}
    out: dict[int, Decision] = {i: Decision("carried") for i in carried}
    m = len(family)
    r = sum(earlier[i].verdict in ("supported", "contradicted") for i in carried)
    active = sorted((i for i in family if i not in carried), key=lambda i: comparisons[i].p)
    directional, stop = set(), None
    for i in active:
        c = comparisons[i]
        level = stop if stop is not None else looks.nominal(alpha / (m - r))
        if stop is None and c.p <= level and c.direction != 0:
            directional.add(i)
            out[i] = Decision("supported" if c.direction > 0 else "contradicted", level)
            r += 1
        else:
            stop = level
            out[i] = Decision("inconclusive", level)
    r_eq = sum(earlier[i].verdict == "no effect" for i in carried)
    rest = [i for i in family if i not in carried and i not in directional]
    p_eq = {i: comparisons[i].equivalence_p(margins[i]) for i in rest}
    stop = None
    for i in sorted(rest, key=lambda i: p_eq[i]):
        eq_level = stop if stop is not None else looks.nominal(2 * alpha / (m - r_eq)) / 2
        verdict = "inconclusive"
        if stop is None and p_eq[i] <= eq_level:
            verdict, r_eq = "no effect", r_eq + 1
        else:
            stop = eq_level
        plan = looks.final(alpha / max(m - r, 1))
        out[i] = Decision(verdict, out[i].level, eq_level, plan)
    return [out.get(i, Decision("untested")) for i in range(len(comparisons))]
