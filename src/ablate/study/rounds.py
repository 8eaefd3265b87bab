"""When a study adds seeds, to which cells, and when it stops."""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

from ablate.report.judge import (
    ALPHA,
    METRIC_FACTOR,
    Verdict,
    interaction,
    look_alpha,
    pairs_for,
    same_value,
)
from ablate.report.load import without_setup
from ablate.study.design import Cell

ADD, MAX_SEEDS, SPENDING = 2, 10, "pocock"


def planned_looks(initial: int, max_seeds: int, add: int) -> int:
    """K, the most looks the seed cap allows: 1 + ceil((max_seeds - initial) / add)."""
    return 1 + max(0, math.ceil((max_seeds - initial) / add))


def budget_problem(initial: int, max_seeds: int, add: int, claims: int) -> str | None:
    """Why a seed cap can never decide a claim (exact tests need 2/2^n <= the last look's level)."""
    if claims < 1:
        return None
    looks = planned_looks(initial, max_seeds, add)
    level = look_alpha(looks, looks, ALPHA / claims)
    if max(max_seeds, initial) >= pairs_for(level):
        return None
    fits = next(c for c in range(initial, 10**4) if _reaches(initial, c, add, claims))
    return (
        f"study.max_seeds={max_seeds} can never decide a claim: with {claims} claims over {looks} "
        f"looks the last look's level is {level:.3g}, which the exact test reaches only with "
        f"{pairs_for(level)} seeds; use study.max_seeds>={fits} (or --max-seeds {fits})"
    )


def _reaches(initial: int, cap: int, add: int, claims: int) -> bool:
    looks = planned_looks(initial, cap, add)
    return cap >= pairs_for(look_alpha(looks, looks, ALPHA / claims))


def seeds_at(initial: Sequence[int], look: int, add: int, max_seeds: int) -> list[int]:
    """The seeds an extended cell has at look k: the preset's, then the next integers, capped."""
    n = min(len(initial) + (look - 1) * add, max(max_seeds, len(initial)))
    more = itertools.count(max(initial) + 1)
    return [*initial, *(next(more) for _ in range(n - len(initial)))]


def claim_cells(claim: dict[str, Any], factors: dict[str, list[str]]) -> list[Cell]:
    """The cells a claim compares: its sides, `where` and `by` values; other factors at all levels."""
    by = interaction(claim)
    if isinstance(by, str) or not all(k in claim for k in ("factor", "better", "worse")):
        return []  # malformed: more seeds cannot decide it
    on_runs = claim["factor"] != METRIC_FACTOR  # else two metrics of the same runs
    if on_runs and claim["factor"] not in factors:
        return []
    wanted: dict[str, Any] = dict(claim.get("where") or {})
    if on_runs:
        wanted[claim["factor"]] = [claim["better"], claim["worse"]]
    if by is not None:
        wanted[by[0]] = [by[1], by[2]]
    keep = lambda k, v: k not in wanted or same_value(v, wanted[k])  # noqa: E731
    return list(itertools.product(*([v for v in vs if keep(k, v)] for k, vs in factors.items())))


def cells_to_extend(verdicts: Sequence[Verdict], factors: dict[str, list[str]]) -> list[Cell]:
    """The cells that the undecided claims compare, in grid order (none for malformed claims); a
    headline claim's cells at every setup of the open choices (the panel gets the same seeds)."""
    # A claim without a comparison is hopeless unless it only lacked runs ("fewer than 2 usable").
    hope = [v for v in verdicts if not v.final and (v.comparison or "usable" in v.reason)]
    wanted = {c for v in hope for c in claim_cells(without_setup(v.claim), factors)}
    return [c for c in itertools.product(*factors.values()) if c in wanted]


def stop_reason(verdicts: Sequence[Verdict], look: int, looks: int, cells: Sequence[Cell],
                elapsed_h: float = 0.0, max_hours: float | None = None) -> str | None:  # fmt: skip
    """Why the study stops after look k, or None to go on."""
    if not verdicts:
        return "no claims to judge"
    if all(v.decided for v in verdicts):
        return "every claim decided"
    if all(v.final for v in verdicts):
        return "every claim decided or not tested (identical arms)"
    if look >= looks:
        return f"seed cap (look {look} of {looks})"
    if not cells:
        return "more seeds cannot decide the undecided claims (malformed, or they compare no cells)"
    if max_hours is not None and elapsed_h >= max_hours:
        return f"wall-time cap ({elapsed_h:.2f} h >= {max_hours:g} h)"
    return None
