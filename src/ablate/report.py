"""Ablation report of a sweep: `python -m ablate.report SWEEP_DIR` writes SWEEP_DIR/report/.

Pipeline: load every run's summary.json (and the sweep plan in multirun.yaml) -> group runs into
cells (values of the swept keys other than seed) -> statistics -> tables, plots, claim verdicts ->
results.csv, summary.md and PNG plots. Works on partial sweeps: missing, failed, diverged, still
running and unreadable runs are reported, never fatal.
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import math
import re
import statistics
import sys
import warnings
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

REPORT_DIRNAME = "report"
STEPS = "steps_to_target"
TARGET_METRIC = "val/acc"
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
STATUS_ORDER = ("completed", "diverged", "failed", "running", "corrupt")
DEFAULT_VALUE = "(default)"
MAX_LISTED = 40
CURVES = (("val/acc", "curves_val_acc.png"), ("train/loss", "curves_train_loss.png"))

# t_{0.975, df} for df = 1..30 (two-sided 95%); larger df use the Cornish-Fisher expansion below.
_T975 = (
    12.7062047,
    4.30265273,
    3.18244631,
    2.77644511,
    2.57058184,
    2.44691185,
    2.36462425,
    2.30600414,
    2.26215716,
    2.22813885,
    2.20098516,
    2.17881283,
    2.16036866,
    2.14478669,
    2.13144955,
    2.11990530,
    2.10981558,
    2.10092204,
    2.09302405,
    2.08596345,
    2.07961384,
    2.07387307,
    2.06865761,
    2.06389856,
    2.05953855,
    2.05552944,
    2.05183052,
    2.04840714,
    2.04522964,
    2.04227246,
)
_Z975 = 1.959963984540054


class ReportError(Exception):
    """The sweep cannot be reported at all (no directory, no summaries)."""


# ---------------------------------------------------------------------------------------------
# Statistics


def t975(df: int) -> float:
    """Two-sided 95% Student-t quantile t_{0.975, df}."""
    if df < 1:
        raise ValueError(f"degrees of freedom must be >= 1, got {df}")
    if df <= len(_T975):
        return _T975[df - 1]
    z = _Z975  # error < 1e-5 for df > 30
    return (
        z
        + (z**3 + z) / (4 * df)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * df**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * df**3)
    )


@dataclass(frozen=True)
class Stat:
    """Mean, sample std and 95% t-interval half-width of n values (nan where undefined)."""

    n: int
    mean: float = math.nan
    std: float = math.nan
    half: float = math.nan

    @property
    def lo(self) -> float:
        return self.mean - self.half

    @property
    def hi(self) -> float:
        return self.mean + self.half

    def overlaps(self, other: Stat) -> bool:
        """Whether the two 95% intervals share a point."""
        return self.lo <= other.hi and other.lo <= self.hi


def mean_ci(values: Iterable[float]) -> Stat:
    """Mean ± std and the Student-t 95% CI of the mean (n-1 dof) of the finite values."""
    xs = [float(v) for v in values if math.isfinite(v)]
    if not xs:
        return Stat(0)
    mean = statistics.fmean(xs)
    if len(xs) == 1:
        return Stat(1, mean)
    std = statistics.stdev(xs)
    return Stat(len(xs), mean, std, t975(len(xs) - 1) * std / math.sqrt(len(xs)))


# ---------------------------------------------------------------------------------------------
# Loading


def _num(value: Any) -> float:
    """A float from a JSON number or a "nan"/"inf" string; nan for anything else."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _text(value: Any) -> str:
    """How a config value reads in an override (true, null, 0.1)."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def _same(actual: Any, wanted: Any) -> bool:
    """Whether a run's value equals a claim's value (numerically when both are numbers)."""
    if isinstance(wanted, list | tuple):
        return any(_same(actual, w) for w in wanted)
    a, w = _text(actual), _text(wanted)
    if _is_number(a) and _is_number(w):
        return math.isclose(float(a), float(w), rel_tol=1e-9, abs_tol=0.0)
    return a == w


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def parse_overrides(items: Any) -> dict[str, str]:
    """`key=value` override strings -> {key: value as typed}, without +/~ prefixes and hydra.* keys."""
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and "=" in item:
            key, value = item.split("=", 1)
            key = key.lstrip("+~")
            if not key.startswith("hydra."):
                out[key] = value
    return out


@dataclass
class Run:
    """One run of the sweep, as read from its summary.json."""

    name: str
    status: str
    seed: Any = None
    overrides: dict[str, str] = field(default_factory=dict)
    swept: list[str] | None = None
    choices: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, Any]] = field(default_factory=list)
    steps: float = math.nan
    epochs: float = math.nan
    wall_time_s: float = math.nan
    diverged_at_step: float = math.nan
    error: str | None = None
    factors: dict[str, str] = field(default_factory=dict)  # filled by load_sweep
    steps_to_target: float | None = None  # None: no target set; nan: never reached

    @property
    def completed(self) -> bool:
        return self.status == "completed"

    def lookup(self, key: str) -> Any:
        """A key's value: the override as typed, else the group choice, else the resolved config."""
        if key in self.overrides:
            return self.overrides[key]
        if key in self.choices:
            return self.choices[key]
        node: Any = self.config
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    def metric(self, name: str) -> float:
        """A final metric (or steps_to_target) as a float; nan when absent."""
        if name == STEPS:
            return math.nan if self.steps_to_target is None else self.steps_to_target
        return self.metrics.get(name, math.nan)

    def series(self, key: str) -> tuple[np.ndarray, np.ndarray]:
        """(steps, values) of a history metric, finite points only, sorted by step."""
        points = {}
        for entry in self.history:
            step, value = _num(entry.get("step")), _num(entry.get(key))
            if math.isfinite(step) and math.isfinite(value):
                points[step] = value
        steps = np.array(sorted(points), dtype=float)
        return steps, np.array([points[s] for s in steps], dtype=float)


def find_summaries(root: Path) -> list[Path]:
    """Every summary.json under the sweep directory, except in its report/ folder."""
    return sorted(
        p for p in root.rglob("summary.json") if p.relative_to(root).parts[0] != REPORT_DIRNAME
    )


def fallback_overrides(run_dir: Path) -> dict[str, str]:
    """Overrides from Hydra's .hydra/overrides.yaml, else from a `k=v,k=v` directory name."""
    saved = run_dir / ".hydra" / "overrides.yaml"
    try:
        items = OmegaConf.to_container(OmegaConf.load(saved)) if saved.is_file() else None
    except Exception:  # noqa: BLE001 - a broken side file just means no fallback
        items = None
    if isinstance(items, list) and items:
        return parse_overrides(items)
    pieces = run_dir.name.split(",")
    return parse_overrides(pieces) if all("=" in p for p in pieces) else {}


def load_run(path: Path, root: Path) -> Run:
    """Read one summary.json; an unreadable file gives a run with status `corrupt`."""
    name = path.parent.relative_to(root).as_posix()
    try:
        data = json.loads(path.read_text())
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        return _run_from_dict(name, data, path.parent)
    except (OSError, ValueError, TypeError, AttributeError) as e:
        return Run(
            name,
            "corrupt",
            overrides=fallback_overrides(path.parent),
            error=f"unreadable summary.json: {type(e).__name__}: {e}",
        )


def _run_from_dict(name: str, data: dict[str, Any], run_dir: Path) -> Run:
    overrides = parse_overrides(data.get("overrides")) or fallback_overrides(run_dir)
    config = data.get("config") if isinstance(data.get("config"), dict) else {}
    seed = data.get("seed", overrides.get("seed", config.get("seed")))
    swept = data.get("swept")
    return Run(
        name=name,
        status=str(data.get("status", "unknown")),
        seed=seed,
        overrides=overrides,
        swept=[str(k).lstrip("+~") for k in swept] if isinstance(swept, list) else None,
        choices=data.get("choices") if isinstance(data.get("choices"), dict) else {},
        config=config,
        metrics={str(k): _num(v) for k, v in (data.get("metrics") or {}).items()},
        history=[h for h in data.get("history") or [] if isinstance(h, dict)],
        steps=_num(data.get("steps")),
        epochs=_num(data.get("epochs")),
        wall_time_s=_num(data.get("wall_time_s")),
        diverged_at_step=_num(data.get("diverged_at_step")),
        error=str(data["error"]) if data.get("error") else None,
    )


@dataclass
class Plan:
    """What the sweep meant to run, from multirun.yaml: each swept key and its values."""

    values: dict[str, list[str]]
    unknown: dict[str, str]  # key -> why its values cannot be listed

    @property
    def keys(self) -> list[str]:
        return [*self.values, *self.unknown]

    def expected_runs(self) -> int | None:
        """How many runs the sweep launches; None when a key cannot be expanded."""
        return None if self.unknown else math.prod(len(v) for v in self.values.values())

    def combos(self) -> list[dict[str, str]]:
        """Every planned combination of swept values (empty if not expandable)."""
        if self.unknown:
            return []
        keys = list(self.values)
        return [dict(zip(keys, c, strict=True)) for c in itertools.product(*self.values.values())]


def sweep_values(spec: str) -> tuple[str, list[str] | None] | None:
    """(key, values) of a sweep override, (key, None) if they can't be listed, None if no sweep."""
    try:
        (override,) = OverridesParser.create().parse_overrides([spec])
    except Exception:  # noqa: BLE001 - not Hydra syntax: fall back to a plain comma split
        key, _, value = spec.partition("=")
        if "," not in value:
            return None
        return key.lstrip("+~"), None if "(" in value else value.split(",")
    if not override.is_sweep_override():
        return None
    key = override.get_key_element().lstrip("+~")
    try:  # the same strings Hydra's basic sweeper gives each job (range() expands too)
        return key, list(override.sweep_string_iterator())
    except Exception:  # noqa: BLE001 - glob() needs the config loader: values unknown
        return key, None


def load_plan(root: Path) -> Plan | None:
    """The sweep plan from <root>/multirun.yaml; None if there is none."""
    path = root / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
        task = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
        params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
        params = OmegaConf.to_container(params) if params is not None else {}
        specs = [f"{k}={v}" for k, v in params.items()]
        specs += [str(s) for s in (OmegaConf.to_container(task) if task is not None else [])]
    except Exception as e:  # noqa: BLE001 - a broken plan must not stop the report
        return Plan({}, {"multirun.yaml": f"unreadable ({type(e).__name__})"})
    plan = Plan({}, {})
    for spec in specs:  # command-line overrides come last and win over sweeper params
        parsed = sweep_values(spec)
        if parsed is None or parsed[0].startswith("hydra."):
            continue
        key, values = parsed
        plan.values.pop(key, None)
        plan.unknown.pop(key, None)
        if values is None:
            plan.unknown[key] = spec
        else:
            plan.values[key] = values
    return plan


# ---------------------------------------------------------------------------------------------
# The sweep: runs, factors, cells


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
    budget: float  # the value a never-reached steps_to_target gets in claims

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


def _unique(items: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(items))


def swept_factors(runs: list[Run], plan: Plan | None) -> list[str]:
    """Swept keys other than seed: from the summaries, else multirun.yaml, else every override."""
    keys = _unique(k for r in runs for k in r.swept or [])
    if not keys and plan is not None:
        keys = plan.keys
    if not keys:
        keys = _unique(k for r in runs for k in r.overrides)
    if plan is not None:  # summaries list swept keys sorted; the command line's order reads better
        keys.sort(key=lambda k: plan.keys.index(k) if k in plan.keys else len(plan.keys))
    return [k for k in keys if k != "seed" and not k.startswith("hydra.")]


def factor_value(run: Run, key: str) -> str:
    """The run's value of a factor, as typed in its override when there is one."""
    value = run.lookup(key)
    return DEFAULT_VALUE if value is None or isinstance(value, dict | list) else _text(value)


def order_levels(values: Iterable[str], planned: list[str]) -> list[str]:
    """Numeric order when every value is a number, else the sweep's order, then alphabetical."""
    found = set(values)
    default = [DEFAULT_VALUE] if DEFAULT_VALUE in found else []
    found.discard(DEFAULT_VALUE)
    if all(_is_number(v) for v in found):
        return default + sorted(found, key=float)
    return default + [v for v in planned if v in found] + sorted(found - set(planned))


def steps_to_target(run: Run, target: float | None) -> float | None:
    """First validation step with val/acc >= target; nan if never (always for diverged runs)."""
    if target is None:
        return None
    if run.status == "diverged":
        return math.nan
    steps, values = run.series(TARGET_METRIC)
    reached = steps[values >= target]
    return float(reached[0]) if reached.size else math.nan


def step_budget(runs: list[Run]) -> float:
    """The longest training of the sweep (completed runs' steps, else any logged step)."""
    done = [r.steps for r in runs if r.completed and math.isfinite(r.steps)]
    if done:
        return max(done)
    logged = [s for r in runs for s in r.series(TARGET_METRIC)[0]]
    return max(logged, default=math.nan)


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
    target = _num(block.get("target_acc"))
    target = target if math.isfinite(target) else None
    for run in runs:
        run.factors = {f: factor_value(run, f) for f in factors}
        run.steps_to_target = steps_to_target(run, target)
    planned = plan.values if plan else {}
    levels = {f: order_levels((r.factors[f] for r in runs), planned.get(f, [])) for f in factors}
    claims = [c for c in block.get("claims") or [] if isinstance(c, dict)]
    return Sweep(root, runs, factors, levels, plan, target, claims, step_budget(runs))


# ---------------------------------------------------------------------------------------------
# Samples and verdicts


def sample(runs: Iterable[Run], metric: str, budget: float | None = None) -> list[float]:
    """Finite values of a metric over completed runs.

    With a budget and metric steps_to_target, runs that never reached the target, diverged ones
    included, count as `budget` steps: the worst outcome of the sweep.
    """
    if metric == STEPS and budget is not None:
        return [
            budget if math.isnan(r.metric(STEPS)) else r.metric(STEPS)
            for r in runs
            if r.status in ("completed", "diverged") and r.steps_to_target is not None
        ]
    return [v for r in runs if r.completed and math.isfinite(v := r.metric(metric))]


@dataclass
class Verdict:
    """The outcome of one claim and the numbers that decide it."""

    claim: dict[str, Any]
    verdict: str  # supported | not supported | inconclusive
    better: Stat
    worse: Stat
    reason: str


def _side(runs: list[Run], claim: dict[str, Any], value: Any) -> list[Run]:
    where = claim.get("where") or {}
    return [
        r
        for r in runs
        if _same(r.lookup(claim["factor"]), value)
        and all(_same(r.lookup(k), v) for k, v in where.items())
    ]


def judge(claim: dict[str, Any], sweep: Sweep) -> Verdict:
    """Compare the claim's better and worse sides on its metric with 95% CIs (runs pooled)."""
    missing = [k for k in ("metric", "factor", "better", "worse") if k not in claim]
    if missing:
        return Verdict(claim, "inconclusive", Stat(0), Stat(0), f"claim lacks {', '.join(missing)}")
    metric = claim["metric"]
    if metric == STEPS and sweep.target is None:
        return Verdict(claim, "inconclusive", Stat(0), Stat(0), "no report.target_acc is set")
    budget = sweep.budget if metric == STEPS else None
    better = mean_ci(sample(_side(sweep.runs, claim, claim["better"]), metric, budget))
    worse = mean_ci(sample(_side(sweep.runs, claim, claim["worse"]), metric, budget))
    if min(better.n, worse.n) < 2:
        return Verdict(claim, "inconclusive", better, worse, "fewer than 2 usable runs on a side")
    if better.overlaps(worse):
        return Verdict(claim, "inconclusive", better, worse, "the 95% CIs overlap")
    higher = claim.get("higher_is_better", metric != STEPS and "loss" not in metric)
    as_claimed = better.mean > worse.mean if higher else better.mean < worse.mean
    verdict = "supported" if as_claimed else "not supported"
    direction = "as claimed" if as_claimed else "the other way"
    return Verdict(claim, verdict, better, worse, f"the CIs do not overlap; difference {direction}")


# ---------------------------------------------------------------------------------------------
# Formatting


def _digits(metric: str) -> int:
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
    return fmt_stat(mean_ci(sample(runs, metric)), _digits(metric))


def md_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub-flavoured markdown table."""

    def line(cells: list[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), line(["---"] * len(header)), *map(line, rows)])


def _label(factors: list[str], cell: tuple[str, ...]) -> str:
    return ", ".join(f"{f}={v}" for f, v in zip(factors, cell, strict=True)) or "all runs"


def _metrics_shown(sweep: Sweep) -> list[str]:
    return [m for m in STAT_METRICS if m != STEPS or sweep.target is not None]


# ---------------------------------------------------------------------------------------------
# results.csv


def _csv_value(value: float) -> str:
    if not math.isfinite(value):
        return "" if math.isnan(value) else str(value)
    return str(int(value)) if value == int(value) and abs(value) < 1e15 else repr(value)


def _csv_metric(run: Run, metric: str) -> str:
    if metric == STEPS:
        v = run.steps_to_target
        return "" if v is None else "not reached" if math.isnan(v) else _csv_value(v)
    if metric not in run.metrics:
        return ""
    return "nan" if math.isnan(run.metrics[metric]) else _csv_value(run.metrics[metric])


def csv_row(run: Run, factors: list[str]) -> list[str]:
    """One results.csv row."""
    extra = [run.steps, run.epochs, run.wall_time_s, run.diverged_at_step]
    return [
        run.name,
        run.status,
        "" if run.seed is None else _text(run.seed),
        *(run.factors[f] for f in factors),
        *(_csv_metric(run, m) for m in CSV_METRICS),
        *map(_csv_value, extra),
        _first_line(run.error) if run.error else "",
    ]


def write_csv(path: Path, sweep: Sweep) -> None:
    """results.csv: one row per run."""
    header = [
        "run",
        "status",
        "seed",
        *sweep.factors,
        *CSV_METRICS,
        "steps",
        "epochs",
        "wall_time_s",
        "diverged_at_step",
        "error",
    ]
    with path.open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        for cell_runs in sweep.cells().values():
            writer.writerows(csv_row(r, sweep.factors) for r in cell_runs)


# ---------------------------------------------------------------------------------------------
# summary.md sections


def _distinct(runs: list[Run], *keys: str) -> list[str]:
    """Distinct values over runs of the first of `keys` each run has."""
    values = []
    for run in runs:
        found = next((run.lookup(k) for k in keys if run.lookup(k) is not None), None)
        if found is not None and not isinstance(found, dict | list):
            values.append(_text(found))
    return _unique(values)


def _fixed_overrides(sweep: Sweep) -> list[str]:
    readable = [r for r in sweep.runs if r.status != "corrupt"]
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
    seeds = sorted({_text(r.seed) for r in runs if r.seed is not None}, key=_seed_key)
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
    return "## What was run\n\n" + text


def _join_or(values: list[str]) -> str:
    return ", ".join(f"`{v}`" for v in values) if values else "unknown"


def _paren(values: list[str], prefix: str = "") -> str:
    return f" ({prefix}{', '.join(values)})" if values else ""


def _seed_key(seed: str) -> tuple[int, float, str]:
    return (0, float(seed), "") if _is_number(seed) else (1, 0.0, seed)


def missing_combos(sweep: Sweep) -> list[dict[str, str]]:
    """Planned combinations (swept keys and seed) that no run directory has."""
    if sweep.plan is None:
        return []
    keys = list(sweep.plan.values)
    found = {tuple(_text(r.lookup(k)) for k in keys) for r in sweep.runs}
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
    failed = [f"`{r.name}`: {_first_line(r.error)}" for r in _with(sweep, "failed")]
    diverged = [
        f"`{r.name}` at step {_csv_value(r.diverged_at_step) or '?'}"
        for r in _with(sweep, "diverged")
    ]
    running = [f"`{r.name}`" for r in _with(sweep, "running")]
    corrupt = [f"`{r.name}`: {r.error}" for r in _with(sweep, "corrupt")]
    return (
        _list("Failed", failed)
        + _list("Diverged", diverged)
        + _list("Still running", running)
        + _list("Unreadable summary.json", corrupt)
    )


def _with(sweep: Sweep, status: str) -> list[Run]:
    return [r for r in sweep.runs if r.status == status]


def _first_line(text: str | None) -> str:
    return (text or "no error recorded").splitlines()[0][:300]


def _list(title: str, items: list[str]) -> str:
    if not items:
        return ""
    shown = [f"- {i}" for i in items[:MAX_LISTED]]
    if len(items) > MAX_LISTED:
        shown.append(f"- … and {len(items) - MAX_LISTED} more")
    return f"\n{title} ({len(items)}):\n\n" + "\n".join(shown) + "\n"


def section_cells(sweep: Sweep) -> str:
    """The per-cell table."""
    metrics = _metrics_shown(sweep)
    header = [*sweep.factors, "runs", "completed", *metrics, "diverged", "failed", "running"]
    rows = []
    for cell, runs in sweep.cells().items():
        counts = Counter(r.status for r in runs)
        rows.append(
            [
                *cell,
                str(len(runs)),
                str(counts["completed"]),
                *(fmt_metric(runs, m) for m in metrics),
                str(counts["diverged"]),
                str(counts["failed"]),
                str(counts["running"]),
            ]
        )
    note = (
        "Entries: mean ± std [95% CI of the mean, Student t with n-1 dof] over the completed runs "
        "of the cell (a single run: its value). steps_to_target averages the runs that reached the "
        "target; (k/n reached) counts them.\n\n"
    )
    return "## Results per cell\n\n" + note + md_table(header, rows)


def section_marginals(sweep: Sweep) -> str:
    """Per factor and value: the metrics over all completed runs with that value."""
    if not sweep.factors:
        return ""
    metrics = _metrics_shown(sweep)
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
        text += f"\n### `{factor}`\n\n" + md_table([factor, "completed", *metrics], rows) + "\n"
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


def fmt_verdict(v: Verdict) -> str:
    """One verdict line with the numbers that decide it."""
    c = v.claim
    text = c.get("text") or "(claim without text)"
    if "factor" not in c or "metric" not in c:
        return f"- **{v.verdict}**: “{text}” — {v.reason}."
    d = _digits(c["metric"])
    where = c.get("where") or {}
    scope = f" where {', '.join(f'{k}={_text(x)}' for k, x in where.items())}" if where else ""
    higher = c.get("higher_is_better", c["metric"] != STEPS and "loss" not in c["metric"])

    def side(value: Any, stat: Stat) -> str:
        return f"{c['factor']}={_text(value)}: {fmt_stat(stat, d)} (n={stat.n})"

    return (
        f"- **{v.verdict}**: “{text}” — `{c['metric']}`{scope}, "
        f"{side(c.get('better'), v.better)} vs {side(c.get('worse'), v.worse)}; "
        f"{'higher' if higher else 'lower'} is better; {v.reason}."
    )


def section_claims(sweep: Sweep, verdicts: list[Verdict]) -> str:
    """The rule, then one line per claim."""
    if not verdicts:
        return "## Claims\n\nNo claims were stated (config.report.claims is empty).\n"
    rule = (
        "Each claim compares the runs with `factor = better` against those with `factor = worse`, "
        "restricted to `where`; runs are pooled over all other factors (each completed run is one "
        "sample, seeds included). Verdict: **supported** if the 95% CIs of the two means do not "
        "overlap and the difference is in the claimed direction, **not supported** if they do not "
        "overlap and it is the other way, **inconclusive** if they overlap or a side has fewer "
        "than 2 usable runs. For steps_to_target, runs that never reached the target — diverged "
        f"runs included — count as {_csv_value(sweep.budget) or 'the step budget'} steps, the "
        "longest training of the sweep, i.e. the worst outcome; failed and running runs are left "
        "out. For other metrics only completed runs count.\n\n"
    )
    return "## Claims\n\n" + rule + "\n".join(fmt_verdict(v) for v in verdicts) + "\n"


def section_plots(plots: list[str]) -> str:
    """Links to the PNGs."""
    if not plots:
        return "## Plots\n\nNo plot: no completed run has the data for one.\n"
    return "## Plots\n\n" + "\n\n".join(f"![{p}]({p})" for p in plots) + "\n"


def render_summary(sweep: Sweep, verdicts: list[Verdict], plots: list[str]) -> str:
    """The whole summary.md."""
    sections = [
        f"# Ablation report: `{sweep.root}`\n\nPer-run values: [results.csv](results.csv).",
        section_what(sweep),
        section_status(sweep),
        section_cells(sweep),
        section_marginals(sweep),
        section_pivots(sweep),
        section_claims(sweep, verdicts),
        section_plots(plots),
    ]
    return "\n\n".join(s.strip() for s in sections if s) + "\n"


# ---------------------------------------------------------------------------------------------
# Plots


def mean_curve(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """(grid, mean, std) over runs whose steps differ: each is interpolated onto the union grid
    inside its own step range; std is the sample std (0 where one run covers the step)."""
    grid = np.unique(np.concatenate([s for s, _ in series]))
    stack = np.full((len(series), grid.size), np.nan)
    for i, (steps, values) in enumerate(series):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        stack[i, inside] = np.interp(grid[inside], steps, values)
    count = np.sum(~np.isnan(stack), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stack, axis=0)
        var = np.nansum((stack - mean) ** 2, axis=0) / np.maximum(count - 1, 1)
    return grid, mean, np.where(count > 1, np.sqrt(var), 0.0)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_curves(sweep: Sweep, key: str, path: Path) -> bool:
    """`key` against step per cell, mean ± 1 std over seeds; False (no file) without data."""
    lines = []
    for cell, runs in sweep.cells().items():
        series = [s for r in runs if r.completed and (s := r.series(key))[0].size]
        if series:
            lines.append((f"{_label(sweep.factors, cell)} (n={len(series)})", mean_curve(series)))
    if not lines:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    colors = plt.get_cmap("tab10" if len(lines) <= 10 else "tab20")
    for i, (label, (grid, mean, std)) in enumerate(lines):
        color = colors(i % colors.N)
        ax.plot(grid, mean, color=color, label=label)
        ax.fill_between(grid, mean - std, mean + std, color=color, alpha=0.2)
    if key == TARGET_METRIC and sweep.target is not None:
        ax.axhline(sweep.target, color="gray", ls="--", lw=1, label=f"target {sweep.target}")
    title = f"{key} per cell: mean ± 1 std over seeds (completed runs)"
    ax.set(xlabel="training step", ylabel=key, title=title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    _save(fig, path)
    return True


def plot_bars(sweep: Sweep, factor: str, path: Path) -> bool:
    """Mean test/acc with 95% CI error bars per value of a factor; False without data."""
    stats = [
        (v, mean_ci(sample([r for r in sweep.runs if r.factors[factor] == v], "test/acc")))
        for v in sweep.levels[factor]
    ]
    stats = [(v, s) for v, s in stats if s.n]
    if not stats:
        return False
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(stats) + 2), 4.5))
    means = np.array([s.mean for _, s in stats])
    halves = np.nan_to_num(np.array([s.half for _, s in stats]))
    x = np.arange(len(stats))
    ax.bar(x, means, yerr=halves, capsize=6, color="tab:blue", alpha=0.8)
    for xi, mean, half, (_, s) in zip(x, means, halves, stats, strict=True):
        ax.annotate(
            f"n={s.n}", (xi, mean + half), xytext=(0, 3), textcoords="offset points", ha="center"
        )
    lo, hi = float(np.min(means - halves)), float(np.max(means + halves))
    pad = max(0.5 * (hi - lo), 0.005)  # zoom in: accuracies differ in the 2nd-3rd decimal
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.set_xticks(x, [v for v, _ in stats])
    ax.set(
        xlabel=factor,
        ylabel="test/acc",
        title=f"test/acc by {factor}\n(mean and 95% CI over completed runs)",
    )
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    return True


def _save(fig: Any, path: Path) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    fig.clf()
    import matplotlib.pyplot as plt

    plt.close(fig)


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def write_plots(out: Path, sweep: Sweep) -> list[str]:
    """Every plot there is data for; returns the file names written."""
    for old in [*out.glob("curves_*.png"), *out.glob("bar_*.png")]:
        old.unlink()  # a plot that has no data any more must not linger from an earlier report
    written = [name for key, name in CURVES if plot_curves(sweep, key, out / name)]
    for factor in sweep.factors:
        name = f"bar_{_slug(factor)}.png"
        if plot_bars(sweep, factor, out / name):
            written.append(name)
    return written


# ---------------------------------------------------------------------------------------------
# Entry points


def build_report(sweep_dir: str | Path) -> Path:
    """Write results.csv, summary.md and the plots into <sweep_dir>/report/; returns that folder."""
    sweep = load_sweep(sweep_dir)
    out = sweep.root / REPORT_DIRNAME
    out.mkdir(exist_ok=True)
    write_csv(out / "results.csv", sweep)
    verdicts = [judge(c, sweep) for c in sweep.claims]
    plots = write_plots(out, sweep)
    (out / "summary.md").write_text(render_summary(sweep, verdicts, plots), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ablate.report SWEEP_DIR`: 0 on success, 2 if there is nothing to report."""
    parser = argparse.ArgumentParser(
        prog="python -m ablate.report",
        description="Summarize a Hydra sweep of ablate.train runs into SWEEP_DIR/report/.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds one dir per run)")
    args = parser.parse_args(argv)
    try:
        out = build_report(args.sweep_dir)
    except ReportError as e:
        print(f"ablate.report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {out} (summary.md, results.csv, plots)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
