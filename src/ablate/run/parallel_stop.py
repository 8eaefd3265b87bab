"""Ctrl-C in a sweep's worker processes as a single run has it: every running run stops after its
batch (or step), saves and is recorded `interrupted`, then the sweep ends with one line; the same
command resumes. Used by both parallel launchers: joblib's loky workers (ablate.run.joblib_launch)
and the default launcher's `hydra.launcher.n_jobs` pool (ablate.group.launch).

A terminal's Ctrl-C reaches the launcher and every worker: one process group. A worker whose run
ended by Ctrl-C used to end itself, and a pool that sees a worker end kills the others at once
(joblib, and concurrent.futures' "broken" pool): a run still saving was killed and left `running`
when the other finished saving first. Here a worker hands its stopped run back as a value and starts
no job after the signal (the same command runs them); the launcher's first Ctrl-C waits for its
workers, a second stops at once (each run's periodic last.ckpt resumes it).
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from types import FrameType
from typing import Any, TypeVar

log = logging.getLogger(__name__)
T = TypeVar("T")

_stopping: int | None = None  # SIGINT once this process has seen Ctrl-C
_in_job = False  # this process runs a job (a worker, or the launcher when joblib runs one there)
_launcher = False  # this process is the launcher, waiting for its workers


class Stopped:
    """A job that Ctrl-C stopped (its run saved and recorded) or that did not start after one."""


def _on_sigint(signum: int, frame: FrameType | None) -> None:
    """The first Ctrl-C is noted: a job not yet in its fit stops after its first batch (a fit has
    the signal itself: ablate.run.ctrl_c), an idle worker starts no job, the launcher waits. A second
    stops a job or the launcher at once. (Raised at the first press, a KeyboardInterrupt could land
    in a finalizer, which prints it and goes on: that run missed the Ctrl-C and trained to its end.)"""
    global _stopping
    if _stopping is not None and (_in_job or _launcher):
        raise KeyboardInterrupt
    if _launcher and not _in_job:
        log.warning("Ctrl-C: each running run stops after its batch and saves (press again to stop at once)")  # fmt: skip
    _stopping = signal.SIGINT


def noted() -> int | None:
    """SIGINT once this process has noted Ctrl-C, None before."""
    return _stopping


def worker_start() -> None:
    """A worker's initializer: Ctrl-C between jobs is noted, not a KeyboardInterrupt in the pool's
    loop (which ends the worker, and the pool then kills the others)."""
    if signal.getsignal(signal.SIGINT) != signal.SIG_IGN:
        signal.signal(signal.SIGINT, _on_sigint)


def run_stoppable(job: Callable[..., T], *args: Any) -> T | Stopped:
    """job(*args) in a worker; Stopped if Ctrl-C came before it started or stopped it (saved)."""
    global _in_job, _stopping
    if _stopping:
        return Stopped()
    _in_job = True
    try:
        return job(*args)
    except KeyboardInterrupt:  # the run is recorded `interrupted`, its place saved
        _stopping = signal.SIGINT
        return Stopped()
    finally:
        _in_job = False


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
    """Every run saved: end the sweep as Ctrl-C ends a program."""
    if any(isinstance(r, Stopped) for r in results):
        raise KeyboardInterrupt
