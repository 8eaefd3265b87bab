"""The choices a paper leaves open: the headline judged at the primary setup, the panel at every setup.

A preset lists the open choices it sweeps, each with its primary value (declared before any run):

    report:
      open: {init: gaussian, optim.momentum: 0.0}   # swept in hydra.sweeper.params; value = primary
      panel: exploratory                            # or confirmatory

The headline verdicts are the claims judged at the primary setup only (each claim's `where` gains
the primary values; a study decides on them). The panel judges every claim at every setup of the
grid (the product of the open keys' swept levels):

- exploratory (the default): each setup's claims are their own Holm family, as if the preset had
  been run at that setup; nothing is corrected across setups; the primary column is the headline;
- confirmatory: every (claim, setup) cell, the primary's included, is one Holm family, so the
  panel's "holds in k of m" lines are error-controlled together (the headline keeps its own family).

In a study both are judged at its last look's boundary (alpha spent over its looks), on the runs
its rounds planned. A setup whose arm never trained (every run failed before a step: a grid point
that refuses an option) is "not built", with the run's error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any

from ablate.report.judge.claims import judge_all
from ablate.report.judge.spec import cells as claim_cells
from ablate.report.judge.spec import side_runs
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.runs import Run
from ablate.report.load.setups import Setup, label, setups, with_setup, without_setup
from ablate.report.load.sweep import Sweep
from ablate.run.record import Status

NOT_BUILT = "not built"


@dataclass
class Panel:
    """Every claim at every setup: cells[claim][setup], the primary setup first."""

    setups: list[Setup]
    cells: list[list[Verdict]]
    mode: str
    method: str

    @property
    def labels(self) -> list[str]:
        return [label(s, self.setups[0]) for s in self.setups]

    def scope(self, i: int) -> str:
        """Claim i's line, e.g. "holds in 3 of 4 setups; contradicted in: init=xavier_normal"."""
        row, labels = self.cells[i], self.labels
        text = f"holds in {self.count(i)} setups"
        for outcome in ("contradicted", "no effect", "inconclusive", "not tested", NOT_BUILT):
            where = [lb for v, lb in zip(row, labels, strict=True) if v.verdict == outcome]
            if where:
                text += f"; {outcome} in: " + " / ".join(where)
        return text

    def count(self, i: int) -> str:
        """Claim i's "k of m" (the scoreboard's column)."""
        row = self.cells[i]
        return f"{sum(v.verdict == 'supported' for v in row)} of {len(row)}"


def _unbuilt(claim: dict[str, Any], runs: list[Run]) -> str | None:
    """The error of an arm none of whose runs trained a step (a grid point that refuses)."""
    made = claim_cells(claim)
    if isinstance(made, str):
        return None
    for _, conditions in made[0]:
        arm = side_runs(runs, conditions)
        never = [r for r in arm if r.status == Status.FAILED and not (r.steps > 0)]
        if arm and len(never) == len(arm):
            error = next((r.error for r in never if r.error), "failed before training")
            return str(error).strip().splitlines()[-1][:200]
    return None


def judge_panel(
    sweep: Sweep,
    headline: list[Verdict],
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> Panel | None:
    """The panel of a sweep with open choices (None without), on the runs the headline used."""
    if not sweep.open:  # none declared, or load_sweep found the declaration unjudgeable
        return None
    grid = setups(sweep.open, sweep.levels)
    claims = [without_setup(c) for c in sweep.claims]
    per_setup = [[with_setup(c, s) for c in claims] for s in grid]
    kwargs = {"looks": looks, "spending": spending, "fractions": fractions}
    if sweep.panel == "confirmatory":
        flat = judge_all(sweep, [c for row in per_setup for c in row], **kwargs)
        by_setup = [flat[j * len(claims) : (j + 1) * len(claims)] for j in range(len(grid))]
        method = f"confirmatory: one Holm family of {len(flat)} (claim, setup) cells"
    else:
        by_setup = [list(headline)] + [judge_all(sweep, row, **kwargs) for row in per_setup[1:]]
        method = "exploratory: each setup's claims their own Holm family, none across setups"
    cells = []
    for i in range(len(claims)):
        row = []
        for j in range(len(grid)):
            v = by_setup[j][i]
            if v.verdict != "supported" and (error := _unbuilt(per_setup[j][i], sweep.runs)):
                v = replace(v, verdict=NOT_BUILT, reason=error, lo=math.nan, hi=math.nan)
            row.append(v)
        cells.append(row)
    return Panel(grid, cells, sweep.panel, method)
