"""Hydra callback: at each run's start and end of a sweep, how far the sweep is and how long is left.

    sweep progress: run 7 of 24 (3 finished earlier, not re-run), about 4 min left

The counts come from the sweep directory, so every launcher gets them right, joblib's parallel
workers too: a run directory whose summary.json was finished (completed/diverged) before this sweep
started is skipped by ablate.train; one rewritten since then (any status but running) is done in
this sweep. Time left = elapsed / runs done x runs left: with parallel workers, their rate.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ablate.overrides import parse_overrides
from ablate.report.load import find_summaries, load_plan, plan_from_specs
from ablate.run.lock import secondary_rank
from ablate.run.record import FINISHED, RunRecord, Status

log = logging.getLogger(__name__)

SKIPPED = "finished earlier, not re-run"  # no "skipped": train.py's own skip message says that


@dataclass(frozen=True)
class Progress:
    """Where a sweep stands: planned runs, those finished before it, those it has done since."""

    total: int | None  # None: the sweep cannot be expanded (e.g. an Optuna search space)
    skipped: int
    done: int
    elapsed_s: float

    @property
    def left(self) -> int | None:
        """Runs this sweep still has to run (None when the total is unknown)."""
        return None if self.total is None else max(self.total - self.skipped - self.done, 0)

    def left_s(self) -> float | None:
        """Estimated seconds left at the rate of the runs done so far; None before the first."""
        if self.left is None or self.done == 0:
            return None
        return self.elapsed_s / self.done * self.left


def fmt_duration(seconds: float) -> str:
    """A rough duration: 40 s, 4 min, 2.5 h."""
    if seconds < 60:
        return f"{max(round(seconds), 1)} s"
    if seconds < 3600:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def progress_line(num: int, progress: Progress, event: str = "") -> str:
    """`sweep progress: run 7 of 24 (3 finished earlier, not re-run), about 4 min left`."""
    total = "?" if progress.total is None else str(progress.total)
    head = f"sweep progress: run {num} of {total}{' ' + event if event else ''}"
    if progress.left == 0:
        eta = "nothing left to run"
    elif (left := progress.left_s()) is not None:
        eta = f"about {fmt_duration(left)} left"
    else:
        eta = "time left known after the first run"
    return f"{head} ({progress.skipped} {SKIPPED}), {eta}"


def _combo_key(overrides: dict[str, str], keys: list[str]) -> tuple[str, ...]:
    return tuple(overrides.get(k, "") for k in keys)


def scan(
    sweep_dir: str | Path,
    started: float,
    combos: list[dict[str, str]] | None = None,
    total: int | None = None,
) -> Progress:
    """Count the sweep dir's runs finished before `started` and those written since.

    With `combos` (the planned cells, swept key -> value), only run directories of those cells
    count: a preset's sweep dir also holds the runs of earlier, different seed ranges.
    """
    keys = list(combos[0]) if combos else []
    planned = {_combo_key(c, keys) for c in combos or []}
    skipped = done = 0
    root = Path(sweep_dir)
    for path in find_summaries(root) if root.is_dir() else []:
        try:
            record = RunRecord.load(path)
            mtime = path.stat().st_mtime
        except (OSError, ValueError):
            continue
        if planned and _combo_key(parse_overrides(record.overrides), keys) not in planned:
            continue
        if mtime < started:
            skipped += record.finished
        elif record.status != Status.RUNNING:
            done += 1
    return Progress(total, skipped, done, max(time.time() - started, 0.0))


def planned_combos(config: DictConfig) -> tuple[list[dict[str, str]] | None, int | None]:
    """(the planned cells, how many runs) of a multirun's config; (None, None) when unknown."""
    params = OmegaConf.select(config, "hydra.sweeper.params", default=None)
    task = OmegaConf.select(config, "hydra.overrides.task", default=None)
    specs = [f"{k}={v}" for k, v in (OmegaConf.to_container(params) if params else {}).items()]
    specs += [str(s) for s in (OmegaConf.to_container(task) if task is not None else [])]
    plan = plan_from_specs(specs)  # as ablate.report.load.plan.load_plan: command-line values win
    if plan.unknown:  # a search (Optuna): its trial count, when the sweeper has one
        trials = OmegaConf.select(config, "hydra.sweeper.n_trials", default=None)
        return None, int(trials) if isinstance(trials, int) else None
    combos = plan.combos()
    return (combos or None), max(len(combos), 1)


class SweepProgress(Callback):
    """Hydra callback: a progress line at each run's start and end (multirun only)."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        # Set here, in the sweep's process: launchers that pickle the job (joblib) carry these along.
        self.started = time.time()
        self.sweep_dir = str(config.hydra.sweep.dir)
        self.combos, self.total = planned_combos(config)

    def _progress(self, config: DictConfig) -> Progress | None:
        if config.hydra.mode != RunMode.MULTIRUN or secondary_rank():
            return None
        if not hasattr(self, "started"):  # no on_multirun_start seen: the plan the launcher saved
            self.sweep_dir = str(config.hydra.sweep.dir)
            plan = load_plan(Path(self.sweep_dir))
            saved = Path(self.sweep_dir) / "multirun.yaml"
            self.started = saved.stat().st_mtime if saved.is_file() else time.time()
            self.combos = (plan.combos() or None) if plan else None
            self.total = plan.expected_runs() if plan else None
        return scan(self.sweep_dir, self.started, self.combos, self.total)

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        try:
            progress = self._progress(config)
            if progress is None:
                return
            summary = Path(config.hydra.runtime.output_dir) / "summary.json"
            earlier = summary.is_file() and summary.stat().st_mtime < self.started
            done = earlier and (_status(summary) in FINISHED)
            event = "already finished" if done else ""
            log.info(progress_line(config.hydra.job.num + 1, progress, event))
        except Exception as e:  # noqa: BLE001 - progress is a courtesy: never fail a run for it
            log.debug("no sweep progress: %s", e)

    def on_job_end(self, config: DictConfig, job_return: Any = None, **kwargs: Any) -> None:
        try:
            progress = self._progress(config)
            summary = Path(config.hydra.runtime.output_dir) / "summary.json"
            if progress is None or not summary.is_file():
                return
            if summary.stat().st_mtime < self.started:
                return  # skipped: its start line said so
            status = _status(summary) or "ended"
            log.info(progress_line(config.hydra.job.num + 1, progress, status))
        except Exception as e:  # noqa: BLE001
            log.debug("no sweep progress: %s", e)


def _status(summary: Path) -> str | None:
    try:
        record = RunRecord.load(summary)
    except (OSError, ValueError):
        return None
    return record.status if "status" in record.model_fields_set else None
