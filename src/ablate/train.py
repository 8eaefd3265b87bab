"""Entry point: `python -m ablate.train <overrides>` (Hydra app; primary config conf/train.yaml)."""

from __future__ import annotations

import json
import logging
import os
import sys
from contextlib import ExitStack
from typing import NoReturn

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would query PyPI at import

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig

from ablate.config import COMMAND_ENV, CONF_DIR, SWEPT_ENV, cli_swept_keys
from ablate.run.clock import mark_run_start
from ablate.run.fast_exit import run_as_program
from ablate.run.identity import config_hash, previous_run, read_summary
from ablate.run.lock import run_lock
from ablate.run.record import Status
from ablate.run.summary import RunSummary
from ablate.validate import ConfigError, config_problems, fail

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Validate, build data/model/trainer, fit, test the best checkpoint, write summary.json."""
    mark_run_start()
    run_dir = HydraConfig.get().runtime.output_dir
    if problems := config_problems(cfg, dict(HydraConfig.get().runtime.choices), run_dir):
        _reject(cfg, run_dir, problems)
    cfg_hash = config_hash(cfg)
    with ExitStack() as held:
        try:
            held.enter_context(run_lock(run_dir))  # one process per run directory
            previous = previous_run(run_dir, cfg_hash, resume=cfg.resume)
        except ValueError as e:
            fail([str(e)])
        if previous and previous.finished:  # re-running a sweep redoes nothing finished
            log.info("%s: already %s, skipped", run_dir, previous.summary.status)
            return previous.summary.metrics
        from ablate.training.fit import (
            fit_and_test,  # Lightning is imported only for a run that trains
        )

        resume = previous.resume_from if previous else None
        return fit_and_test(cfg, run_dir, cfg_hash, resume, reject=_reject)


def _reject(cfg: DictConfig, run_dir: str, problems: list[str]) -> NoReturn:
    """A bad config: exit 2 before anything is written; in a sweep, fail only this cell."""
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    earlier = read_summary(run_dir)
    if not in_sweep or (earlier is not None and earlier.status != Status.FAILED):
        fail(problems)  # never write over an earlier run (a failed one is re-run in place anyway)
    # One bad cell of a sweep (e.g. norm.groups=3 where a width is 32): recorded in its
    # summary.json, and the sweep goes on; it exits 1 and names the failed cells.
    error = ConfigError("; ".join(problems))
    try:
        RunSummary.for_hydra_job(cfg, cfg.get("seed"), config_hash(cfg)).failed(error)
    except Exception:  # noqa: BLE001 - e.g. a missing (???) value: nothing to record it with
        fail(problems)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    raise error


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    """The value a Hydra sweeper optimizes: best validation accuracy (0 when there is none)."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return train(cfg).get("val/acc_best", 0.0)
    try:  # in a sweep, one failed cell is recorded in its summary.json and the sweep goes on
        return train(cfg).get("val/acc_best", 0.0)
    except Exception:
        log.exception("this run failed (see its summary.json); the sweep continues")
        return 0.0  # worst-case score: a sweeper (e.g. Optuna) must not get NaN or an exception


def main() -> None:
    """Preflight, then the Hydra app (the console script `ablate-train` runs it through cli())."""
    # `experiment` defaults to null in conf/train.yaml, so Hydra wants `experiment=x`; accept `+experiment=x` too.
    sys.argv = [a[1:] if a.startswith("+experiment=") else a for a in sys.argv]
    os.environ[SWEPT_ENV] = ",".join(sorted(cli_swept_keys(sys.argv[1:])))
    os.environ[COMMAND_ENV] = json.dumps(sys.argv[1:])  # run/sweep folders: ablate.config
    from ablate.preflight import check_command_line

    check_command_line(sys.argv[1:])  # exit 2 on a config that cannot train: before Hydra writes
    _hydra_main()


def cli() -> NoReturn:
    """Console script `ablate-train`: main(), then the process ends without Python's teardown."""
    run_as_program(main, ctrl_c="interrupted; the same command resumes")


if __name__ == "__main__":
    cli()
