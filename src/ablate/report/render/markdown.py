"""summary.md: what was run, claims (claims_section.py), a study's rounds (study_section.py), status,
per-cell, cost, marginal and pivot tables, plots."""

from __future__ import annotations

import math
from collections import Counter
from typing import Any

from ablate.overrides import is_number, value_text
from ablate.report.judge.panel import Panel
from ablate.report.judge.stats import mean_ci, sample
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.runs import STEPS, Run
from ablate.report.load.sweep import Sweep, unique
from ablate.report.render.claims_section import section_claims
from ablate.report.render.cost import section_cost, section_provenance
from ablate.report.render.forest import FOREST
from ablate.report.render.panel import PANEL, PRIMARY_CURVES, section_panel
from ablate.report.render.study_section import section_study
from ablate.report.render.tables import (
    csv_value,
    first_line,
    fmt_metric,
    fmt_steps,
    md_table,
    metrics_shown,
)
from ablate.run.record import TARGET_METRIC, Status

# The first four are always counted; interrupted (and any other) only when there are such runs.
STATUS_ORDER = (
    Status.COMPLETED, Status.DIVERGED, Status.FAILED, Status.RUNNING, Status.CORRUPT,
    Status.INTERRUPTED,
)  # fmt: skip
MAX_LISTED = 40


def _distinct(runs: list[Run], *keys: str) -> list[str]:
    """Distinct values over runs of the first of `keys` each run has."""
    values = []
    for run in runs:
        found = next((run.lookup(k) for k in keys if run.lookup(k) is not None), None)
        if found is not None and not isinstance(found, dict | list):
            values.append(value_text(found))
    return unique(values)


def _fixed_overrides(sweep: Sweep) -> list[str]:
    readable = [r for r in sweep.runs if r.status != Status.CORRUPT]
    if not readable:
        return []
    common = set(readable[0].overrides.items())
    for run in readable[1:]:
        common &= set(run.overrides.items())
    skip = {*sweep.factors, "seed"}
    return sorted(f"{k}={v}" for k, v in common if k not in skip)


def section_what(sweep: Sweep) -> str:
    """The "What was run" paragraph."""
    runs = sweep.runs
    seeds = sorted({value_text(r.seed) for r in runs if r.seed is not None}, key=_seed_key)
    cells = len(sweep.cells())
    expected = ""
    if sweep.plan is not None and not sweep.plan.unknown:
        n = math.prod(len(v) for k, v in sweep.plan.values.items() if k != "seed")
        expected = f" of {n} planned"
    parts = [
        f"{len(runs)} runs found in `{sweep.root}`",
        "dataset " + _join_or(_distinct(runs, "data.dataset", "data")),
        "model " + _join_or(_distinct(runs, "model")) + _paren(_distinct(runs, "model._target_")),
        "optimizer "
        + _join_or(_distinct(runs, "optim"))
        + _paren(_distinct(runs, "optim.lr"), "lr "),
        "max epochs " + _join_or(_distinct(runs, "trainer.max_epochs")),
    ]
    text = "; ".join(parts) + ".\n\n"
    text += f"**{cells} cells**{expected} × seeds {{{', '.join(seeds) or 'none'}}}. "
    if sweep.factors:
        text += "Factors: " + "; ".join(
            f"`{f}` ∈ {{{', '.join(sweep.levels[f])}}}" for f in sweep.factors
        )
        text += "."
    else:
        text += "No swept factors besides the seed."
    fixed = _fixed_overrides(sweep)
    if fixed:
        text += " Overrides shared by every run: " + ", ".join(f"`{o}`" for o in fixed) + "."
    if sweep.target is not None:
        text += f" steps_to_target = first validation step with {TARGET_METRIC} ≥ {sweep.target}."
    provenance = section_provenance(sweep)
    return "## What was run\n\n" + text + (f"\n\n{provenance}" if provenance else "")


def _join_or(values: list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values) if values else "unknown"


def _paren(values: list[str], prefix: str = "") -> str:
    return f" ({prefix}{', '.join(values)})" if values else ""


def _seed_key(seed: str) -> tuple[int, float, str]:
    return (0, float(seed), "") if is_number(seed) else (1, 0.0, seed)


def missing_combos(sweep: Sweep) -> list[dict[str, str]]:
    """Planned combinations (swept keys and seed) that no run directory has."""
    if sweep.plan is None:
        return []
    keys = list(sweep.plan.values)
    found = {tuple(value_text(r.lookup(k)) for k in keys) for r in sweep.runs}
    return [c for c in sweep.plan.combos() if tuple(c.values()) not in found]


def section_status(sweep: Sweep) -> str:
    """Counts by status, then which runs are missing, failed, diverged, running or unreadable."""
    counts = Counter(r.status for r in sweep.runs)
    order = [*STATUS_ORDER, *sorted(set(counts) - set(STATUS_ORDER))]
    line = ", ".join(f"{counts[s]} {s}" for s in order if counts[s] or s in STATUS_ORDER[:4])
    missing = missing_combos(sweep)
    expected = sweep.plan.expected_runs() if sweep.plan else None
    if sweep.plan is None:
        head = f"{len(sweep.runs)} runs found (no multirun.yaml: expected count unknown)"
    elif expected is None:
        why = "; ".join(f"`{s}`" for s in sweep.plan.unknown.values())
        head = f"{len(sweep.runs)} runs found; expected count unknown (cannot expand {why})"
    else:
        head = f"{expected} runs planned, {len(sweep.runs)} found"
    text = f"## Status\n\n**{head}: {line}"
    text += f", {len(missing)} missing.**\n" if expected is not None else ".**\n"
    missing_names = [", ".join(f"{k}={v}" for k, v in c.items()) for c in missing]
    return text + _list("Missing runs, no summary.json", missing_names) + status_lists(sweep)


def status_lists(sweep: Sweep) -> str:
    """The runs that did not complete, by status, with their error or divergence step."""
    failed = [f"`{r.name}`: {first_line(r.error)}" for r in _with(sweep, Status.FAILED)]
    diverged = [
        f"`{r.name}` at step {csv_value(r.diverged_at_step) or '?'}"
        for r in _with(sweep, Status.DIVERGED)
    ]
    running = [f"`{r.name}`" for r in _with(sweep, Status.RUNNING)]
    corrupt = [f"`{r.name}`: {r.error} (file `{r.path}`)" for r in _with(sweep, Status.CORRUPT)]
    return (
        _list("Failed", failed)
        + _list("Diverged", diverged)
        + _list("Still running", running)
        + _list("Skipped, unreadable summary.json", corrupt)
    )


def _with(sweep: Sweep, status: Status) -> list[Run]:
    return [r for r in sweep.runs if r.status == status]


def _list(title: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = [f"- {i}" for i in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"- … and {len(items) - MAX_LISTED} more")
    return f"\n{title} ({len(items)}):\n\n" + "\n".join(shown) + "\n"


def section_cells(sweep: Sweep) -> str:
    """The per-cell table."""
    metrics = metrics_shown(sweep)
    header = [
        *sweep.factors,
        "runs",
        Status.COMPLETED,
        *metrics,
        Status.DIVERGED,
        Status.FAILED,
        Status.RUNNING,
    ]
    rows = []
    for cell, runs in sweep.cells().items():
        counts = Counter(r.status for r in runs)
        rows.append(
            [
                *cell,
                str(len(runs)),
                str(counts[Status.COMPLETED]),
                *(fmt_metric(runs, m) for m in metrics),
                str(counts[Status.DIVERGED]),
                str(counts[Status.FAILED]),
                str(counts[Status.RUNNING]),
            ]
        )
    note = (
        "Entries: mean ± std [95% CI of the mean, Student t with n-1 dof] over the completed runs "
        "of the cell (a single run: its value); val/acc_best also counts diverged runs, with the "
        "best they reached before diverging. steps_to_target averages the runs that reached the "
        "target; (k/n reached) counts them.\n\n"
    )
    return "## Results per cell\n\n" + note + md_table(header, rows)


def section_marginals(sweep: Sweep) -> str:
    """Per factor and value: the metrics over all completed runs with that value."""
    if not sweep.factors:
        return ""
    metrics = metrics_shown(sweep)
    text = (
        "## Marginal effects\n\nEach value of a factor over all completed runs that have it, "
        "whatever the other factors (runs pooled; unbalanced if cells are missing).\n"
    )
    for factor in sweep.factors:
        rows = []
        for value in sweep.levels[factor]:
            runs = [r for r in sweep.runs if r.factors[factor] == value]
            n = sum(r.completed for r in runs)
            rows.append([value, str(n), *(fmt_metric(runs, m) for m in metrics)])
        text += (
            f"\n### `{factor}`\n\n" + md_table([factor, Status.COMPLETED, *metrics], rows) + "\n"
        )
    return text


def pivot(sweep: Sweep, metric: str) -> str:
    """Rows = first factor, columns = second factor, entries = the metric over completed runs."""
    f1, f2 = sweep.factors
    rows = []
    for v1 in sweep.levels[f1]:
        row = [v1]
        for v2 in sweep.levels[f2]:
            runs = [r for r in sweep.runs if r.factors[f1] == v1 and r.factors[f2] == v2]
            stat = mean_ci(sample(runs, metric))
            if metric == STEPS:
                row.append(fmt_steps(runs))
            else:
                row.append(
                    "—" if stat.n == 0 else f"{stat.mean:.4f} ± {_nan_dash(stat.std)} (n={stat.n})"
                )
        rows.append(row)
    return md_table([f"{f1} \\ {f2}", *sweep.levels[f2]], rows)


def _nan_dash(value: float, digits: int = 4) -> str:
    return "—" if math.isnan(value) else f"{value:.{digits}f}"


def section_pivots(sweep: Sweep) -> str:
    """Pivot tables for exactly-two-factor sweeps."""
    if len(sweep.factors) != 2:
        return ""
    text = "## Pivot tables\n\nMean test/acc ± std (n completed runs):\n\n" + pivot(
        sweep, "test/acc"
    )
    if sweep.target is not None:
        text += "\n\nsteps_to_target (mean ± std [95% CI] over runs that reached it):\n\n"
        text += pivot(sweep, STEPS)
    return text + "\n"


def section_plots(plots: list[str]) -> str:
    """Links to the PNGs."""
    if not plots:
        return "## Plots\n\nNo plot: no completed run has the data for one.\n"
    return "## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots) + "\n"


def render_summary(
    sweep: Sweep, verdicts: list[Verdict], plots: list[str], study: dict[str, Any] | None = None,
    panel: Panel | None = None,
) -> str:  # fmt: skip
    """The whole summary.md (with the rounds of a study, and the panel of its open choices)."""
    sections = [
        f"# Ablation report: `{sweep.root}`\n\nPer-run values: [results.csv](results.csv).",
        section_what(sweep),
        section_claims(sweep, verdicts, plots),  # first: what the sweep decided
        section_panel(sweep, panel, plots),  # the headline's scope across the open choices
        section_study(study, verdicts),
        section_status(sweep),
        section_cells(sweep),
        section_cost(sweep),
        section_marginals(sweep),
        section_pivots(sweep),
        section_plots([p for p in plots if p not in (FOREST, PANEL, PRIMARY_CURVES)]),
    ]
    return "\n\n".join(s.strip() for s in sections if s) + "\n"
