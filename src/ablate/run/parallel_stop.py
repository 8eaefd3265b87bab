"""Ctrl-C and SIGTERM in a sweep's worker processes as a single run has them: every running run stops
after its batch (or step), saves and is recorded `interrupted`, then the sweep ends with one line; the
same command resumes. Used by both parallel launchers (joblib's loky workers, and the default
launcher's `hydra.launcher.n_jobs` pool: ablate.run.joblib_launch, ablate.group.launch).

A terminal's Ctrl-C (or a scheduler's SIGTERM) reaches the launcher and every worker: one process
group. A worker whose run ended by the signal used to end itself, and a pool that sees a worker end
kills the others at once (joblib, and concurrent.futures' "broken" pool): a run still saving was
killed and left `running` (one of two runs, in a sweep of two at a time, when the other finished
saving first). Here a worker hands its stopped run back as a value, and does not start the jobs it is
given after the signal (the same command runs them); the launcher's first Ctrl-C waits for its
workers, a second stops at once (each run's periodic last.ckpt resumes it).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

from ablate.run.checkpoint import EXIT_INTERRUPTED

log = logging.getLogger(__name__)
T = TypeVar("T")

_stopping: int | None = None  # the signal this process has seen (SIGINT or SIGTERM)
_in_job = False  # this process runs a job (a worker, or the launcher when joblib runs one there)
_launcher = False  # this process is the launcher, waiting for its workers


class Stopped:
    """A job that a signal stopped (its run saved and recorded) or that did not start after one."""

    def __init__(self, signum: int) -> None:
        self.signum = signum


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """In a job: KeyboardInterrupt (during a fit ablate.run.ctrl_c has the signal first). While the
    launcher waits: the first press is noted, the second stops at once. An idle worker notes it."""
    global _stopping
    if _in_job or (_launcher and _stopping):
        raise KeyboardInterrupt
    if _launcher:
        log.warning("Ctrl-C: each running run stops after its batch and saves (press again to stop at once)")  # fmt: skip
    _stopping = signal.SIGINT


def worker_start() -> None:
    """A worker's initializer: Ctrl-C between jobs is noted, not a KeyboardInterrupt in the pool's
    loop (which ends the worker, and the pool then kills the others)."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)


def run_stoppable(job: Callable[..., T], *args: Any) -> T | Stopped:
    """job(*args) in a worker; Stopped if a signal came before it started or stopped it (saved)."""
    global _in_job, _stopping
    if _stopping:
        return Stopped(_stopping)
    _in_job = True
    try:
        return job(*args)
    except KeyboardInterrupt:  # the run is recorded `interrupted`, its place saved
        _stopping = signal.SIGINT
    except SystemExit as e:
        if e.code != EXIT_INTERRUPTED:
            raise
        _stopping = signal.SIGTERM  # SIGTERM: the same, saved at its next step
    finally:
        _in_job = False
    return Stopped(_stopping)


@contextmanager
def launcher_waiting() -> Iterator[None]:
    """While the launcher waits for its workers: its first Ctrl-C is noted, a second stops at once."""
    global _launcher, _stopping
    previous = signal.getsignal(signal.SIGINT)
    if previous != signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)
    _launcher, _stopping = True, None
    try:
        yield
    finally:
        _launcher = False
        if previous != signal.SIG_IGN:
            signal.signal(signal.SIGINT, previous)


def end_if_stopped(results: Iterable[object]) -> None:
    """Every run saved: end the sweep as the signal ends a program (Ctrl-C, else SIGTERM's 143)."""
    stopped = {r.signum for r in results if isinstance(r, Stopped)}
    if signal.SIGINT in stopped:
        raise KeyboardInterrupt
    if stopped:
        log.warning("a worker was stopped: run the same command to resume")
        raise SystemExit(EXIT_INTERRUPTED)
