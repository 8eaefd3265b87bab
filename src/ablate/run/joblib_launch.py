"""hydra/launcher=joblib with Ctrl-C as a single run has it: every running run stops after its
batch, saves and is recorded `interrupted`, then the sweep ends with one line; the same command resumes.

A terminal's Ctrl-C reaches the launcher and every loky worker (one process group). Under Hydra's own
joblib launcher the launcher's KeyboardInterrupt makes joblib kill its workers at once, and so does
the first worker whose run ends by Ctrl-C (its KeyboardInterrupt is sent back): a run still saving was
killed and left `running` (one of two runs, in a sweep of two at a time). Here the launcher's first
Ctrl-C waits for the workers; a worker hands its stopped run back as a value, not an exception, and
does not start the jobs it is given after a Ctrl-C (the same command runs them). A second Ctrl-C to
the launcher stops at once, as joblib does (each run's periodic last.ckpt resumes it).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any

from hydra.core.singleton import Singleton
from hydra.core.utils import JobReturn, configure_log, filter_overrides, setup_globals

log = logging.getLogger(__name__)

_stopping = False  # this process has seen Ctrl-C
_in_job = False  # this process runs a job (a worker, or the launcher when joblib runs one there)
_launcher = False  # this process is the launcher, waiting for its workers


class Stopped:
    """A job that Ctrl-C stopped (its run saved and recorded) or that did not start after one."""


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """In a job: KeyboardInterrupt (during a fit ablate.run.ctrl_c has the signal first). While the
    launcher waits: the first press is noted, the second stops at once. An idle worker notes it."""
    global _stopping
    if _in_job or (_launcher and _stopping):
        raise KeyboardInterrupt
    if _launcher:
        log.warning("Ctrl-C: each running run stops after its batch and saves (press again to stop at once)")  # fmt: skip
    _stopping = True


def worker_start() -> None:
    """A loky worker's initializer: Ctrl-C between jobs is noted, not a KeyboardInterrupt in loky's
    loop (which ends the worker, and joblib then kills the others)."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)


def run_job(idx: int, *args: Any) -> JobReturn | Stopped:
    """Hydra's execute_job, with a run that Ctrl-C stopped handed back as Stopped."""
    from hydra_plugins.hydra_joblib_launcher._core import execute_job

    global _in_job, _stopping
    if _stopping:
        return Stopped()
    _in_job = True
    try:
        return execute_job(idx, *args)
    except KeyboardInterrupt:  # the run is recorded `interrupted`, its place saved
        _stopping = True
        return Stopped()
    finally:
        _in_job = False


def launch(launcher: Any, job_overrides: Sequence[Sequence[str]], first: int) -> list[JobReturn]:
    """Hydra's joblib launch (hydra_joblib_launcher._core.launch, which hard-wires its job function
    and backend), with loky workers that note Ctrl-C and a first Ctrl-C waiting for the runs to save."""
    from hydra_plugins.hydra_joblib_launcher._core import process_joblib_cfg
    from joblib import Parallel, delayed
    from joblib._parallel_backends import LokyBackend

    global _launcher, _stopping
    setup_globals()
    configure_log(launcher.config.hydra.hydra_logging, launcher.config.hydra.verbose)
    sweep_dir = Path(str(launcher.config.hydra.sweep.dir))
    sweep_dir.mkdir(parents=True, exist_ok=True)
    cfg = dict(launcher.joblib)
    process_joblib_cfg(cfg)
    cfg["backend"] = LokyBackend(initializer=worker_start)
    log.info(f"Joblib.Parallel(n_jobs={cfg.get('n_jobs')}) is launching {len(job_overrides)} jobs")
    log.info(f"Launching jobs, sweep output dir : {sweep_dir}")
    for idx, overrides in enumerate(job_overrides):
        log.info(f"\t#{idx} : {' '.join(filter_overrides(overrides))}")
    state = Singleton.get_state()
    previous = signal.getsignal(signal.SIGINT)
    if previous != signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)
    _launcher, _stopping = True, False
    where = (launcher.hydra_context, launcher.config, launcher.task_function, state)
    try:
        jobs = (
            delayed(run_job)(first + i, overrides, *where)
            for i, overrides in enumerate(job_overrides)
        )
        runs = Parallel(**cfg)(jobs)
    finally:
        _launcher = False
        if previous != signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)
    if any(isinstance(r, Stopped) for r in runs):
        raise KeyboardInterrupt  # every run saved: the sweep ends as Ctrl-C ends a program
    return list(runs)
