"""The sweep: its runs grouped into cells by the swept factors (all values but the seed)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ablate.overrides import as_float, is_number, value_text
from ablate.report.load.plan import Plan, load_plan
from ablate.report.load.runs import Run, find_summaries, load_run
from ablate.report.load.setups import Setup, open_problems, setups, with_setup
from ablate.run.record import TARGET_METRIC, steps_to_target

DEFAULT_VALUE = "(default)"


class ReportError(Exception):
    """The sweep cannot be reported at all (no directory, no summaries)."""


@dataclass
class Sweep:
    """Everything the report is computed from."""

    root: Path
    runs: list[Run]
    factors: list[str]
    levels: dict[str, list[str]]
    plan: Plan | None
    target: float | None
    claims: list[dict[str, Any]]
    budget: float  # the longest training (steps)
    val_interval: float = math.nan  # steps between validations: steps_to_target's resolution
    open: Setup = field(default_factory=dict)  # report.open: open key -> its primary value
    panel: str = "exploratory"  # report.panel: how the panel's cells are judged (judge/panel.py)
    problems: list[str] = field(default_factory=list)  # what in report: cannot be judged

    def cells(self) -> dict[tuple[str, ...], list[Run]]:
        """Runs grouped by the values of the factors, in level order."""
        grouped: dict[tuple[str, ...], list[Run]] = {}
        for run in self.runs:
            grouped.setdefault(self.cell_of(run), []).append(run)
        return dict(sorted(grouped.items(), key=lambda kv: self._cell_rank(kv[0])))

    def cell_of(self, run: Run) -> tuple[str, ...]:
        return tuple(run.factors[f] for f in self.factors)

    def _cell_rank(self, cell: tuple[str, ...]) -> tuple[int, ...]:
        return tuple(self.levels[f].index(v) for f, v in zip(self.factors, cell, strict=True))


def unique(items: Iterable[str]) -> list[str]:
    """The items in order, each once."""
    return list(dict.fromkeys(items))


def validation_interval(runs: list[Run]) -> float:
    """The usual number of steps between two validations (the median gap over the runs' curves)."""
    gaps = [g for r in runs for g in np.diff(r.series(TARGET_METRIC)[0]) if g > 0]
    return float(np.median(gaps)) if gaps else math.nan


def step_budget(runs: list[Run]) -> float:
    """The longest training of the sweep (completed runs' steps, else any logged step)."""
    done = [r.steps for r in runs if r.completed and math.isfinite(r.steps)]
    if done:
        return max(done)
    logged = [s for r in runs for s in r.series(TARGET_METRIC)[0]]
    return max(logged, default=math.nan)


def swept_factors(runs: list[Run], plan: Plan | None) -> list[str]:
    """Swept keys other than seed: from the summaries, else multirun.yaml, else every override."""
    keys = unique(k for r in runs for k in r.swept or [])
    if not keys and plan is not None:
        keys = plan.keys
    if not keys:
        keys = unique(k for r in runs for k in r.overrides)
    if plan is not None:  # summaries list swept keys sorted; the command line's order reads better
        keys.sort(key=lambda k: plan.keys.index(k) if k in plan.keys else len(plan.keys))
    return [k for k in keys if k != "seed" and not k.startswith("hydra.")]


def factor_value(run: Run, key: str) -> str:
    """The run's value of a factor, as typed in its override when there is one."""
    value = run.lookup(key)
    return DEFAULT_VALUE if value is None or isinstance(value, dict | list) else value_text(value)


def order_levels(values: Iterable[str], planned: list[str]) -> list[str]:
    """Numeric order when every value is a number, else the sweep's order, then alphabetical."""
    found = set(values)
    default = [DEFAULT_VALUE] if DEFAULT_VALUE in found else []
    found.discard(DEFAULT_VALUE)
    if all(is_number(v) for v in found):
        return default + sorted(found, key=float)
    return default + [v for v in planned if v in found] + sorted(found - set(planned))


def report_block(runs: list[Run]) -> dict[str, Any]:
    """config.report of the first run that has one (presets set the same block for a sweep)."""
    for run in runs:
        block = run.config.get("report")
        if isinstance(block, dict) and block:
            return block
    return {}


def load_sweep(sweep_dir: str | Path) -> Sweep:
    """Read the sweep directory into a Sweep (raises ReportError if there is nothing to read)."""
    root = Path(sweep_dir)
    if not root.is_dir():
        raise ReportError(f"no such sweep directory: {root}")
    paths = find_summaries(root)
    if not paths:
        raise ReportError(f"no summary.json found under {root}")
    runs = [load_run(p, root) for p in paths]
    plan = load_plan(root)
    factors = swept_factors(runs, plan)
    block = report_block(runs)
    target = as_float(block.get("target_acc"))
    target = target if math.isfinite(target) else None
    for run in runs:
        run.factors = {f: factor_value(run, f) for f in factors}
        run.steps_to_target = steps_to_target(run.history, target) if target is not None else None
    planned = plan.values if plan else {}
    levels = {f: order_levels((r.factors[f] for r in runs), planned.get(f, [])) for f in factors}
    claims = [c for c in block.get("claims") or [] if isinstance(c, dict)]
    open_, panel = block.get("open") or {}, block.get("panel", "exploratory")
    problems = open_problems(open_, panel, levels) if open_ else []
    if open_ and not problems:  # the headline: every claim at the primary setup
        primary = setups(open_, levels)[0]
        claims = [with_setup(c, primary) for c in claims]
    return Sweep(
        root, runs, factors, levels, plan, target, claims, step_budget(runs),
        validation_interval(runs), dict(open_) if not problems else {}, panel, problems,
    )  # fmt: skip
