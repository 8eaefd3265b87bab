"""Table entries (mean ± std [95% CI], steps reached, markdown tables) and results.csv."""

from __future__ import annotations

import csv
import math
from pathlib import Path

from ablate.overrides import value_text
from ablate.report.judge.stats import Stat, mean_ci, reached_target, sample
from ablate.report.load.runs import STEPS, Run
from ablate.report.load.sweep import Sweep

CSV_METRICS = (
    "test/acc",
    "test/loss",
    "val/acc_best",
    "train_eval/acc",
    "gap/train_test",
    "gap/train_val",
    STEPS,
)


STAT_METRICS = ("test/acc", "val/acc_best", "gap/train_test", STEPS)


# ---------------------------------------------------------------------------------------------
# Formatting


def metric_digits(metric: str) -> int:
    """Decimals a metric is shown with: none for steps, 4 for the rest."""
    return 0 if metric == STEPS else 4


def fmt_stat(stat: Stat, digits: int = 4) -> str:
    """`mean ± std [lo, hi]` (the 95% CI); just the mean when n = 1; a dash when n = 0."""
    if stat.n == 0:
        return "—"
    if stat.n == 1:
        return f"{stat.mean:.{digits}f}"
    return (
        f"{stat.mean:.{digits}f} ± {stat.std:.{digits}f} "
        f"[{stat.lo:.{digits}f}, {stat.hi:.{digits}f}]"
    )


def fmt_steps(runs: list[Run]) -> str:
    """steps_to_target over completed runs that reached the target, with how many did."""
    completed = [r for r in runs if r.completed]
    reached = sample(completed, STEPS)
    if not completed:
        return "—"
    if not reached:
        return f"not reached (0/{len(completed)})"
    return f"{fmt_stat(mean_ci(reached), 0)} ({len(reached)}/{len(completed)} reached)"


def fmt_metric(runs: list[Run], metric: str) -> str:
    """A table entry for a metric over a group of runs."""
    if metric == STEPS:
        return fmt_steps(runs)
    return fmt_stat(mean_ci(sample(runs, metric)), metric_digits(metric))


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def cell_label(factors: list[str], cell: tuple[str, ...]) -> str:
    """`norm=batch, optim.lr=0.1` (or "all runs" without factors)."""
    return ", ".join(f"{f}={v}" for f, v in zip(factors, cell, strict=True)) or "all runs"


def metrics_shown(sweep: Sweep) -> list[str]:
    """The metrics of the tables: steps_to_target only where the sweep has a target."""
    return [m for m in STAT_METRICS if m != STEPS or sweep.target is not None]


def first_line(text: str | None) -> str:
    """An error's first line, at most 300 characters."""
    return (text or "no error recorded").splitlines()[0][:300]


# ---------------------------------------------------------------------------------------------
# results.csv


def csv_value(value: float) -> str:
    """A number as results.csv writes it: integers without a point, nan as empty."""
    if not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _csv_metric(run: Run, metric: str, target: float | None) -> str:
    if metric == STEPS:
        if target is None:
            return ""
        steps = reached_target(run)
        return "not reached" if steps is None else csv_value(steps)
    if metric not in run.metrics:
        return ""
    return "nan" if math.isnan(run.metrics[metric]) else csv_value(run.metrics[metric])


def csv_row(run: Run, sweep: Sweep) -> list[str]:
    """One results.csv row."""
    extra = [run.steps, run.epochs, run.wall_time_s, run.diverged_at_step]
    return [
        run.name,
        run.status,
        "" if run.seed is None else value_text(run.seed),
        *(run.factors[f] for f in sweep.factors),
        *(_csv_metric(run, m, sweep.target) for m in CSV_METRICS),
        *map(csv_value, extra),
        first_line(run.error) if run.error else "",
    ]


# results.csv's columns around the factors and metrics: who the run is, then how it ended.
RUN_COLUMNS = ("run", "status", "seed")
OUTCOME_COLUMNS = ("steps", "epochs", "wall_time_s", "diverged_at_step", "error")


def write_csv(path: Path, sweep: Sweep) -> None:
    """results.csv: one row per run."""
    header = [*RUN_COLUMNS, *sweep.factors, *CSV_METRICS, *OUTCOME_COLUMNS]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for cell_runs in sweep.cells().values():
            writer.writerows(csv_row(r, sweep) for r in cell_runs)
