"""A run's outcome in summary.json: the recipe records completed/diverged; failures and signals land here."""

from __future__ import annotations

import logging
from types import TracebackType

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ablate.data.decode import DatasetNotFoundError
from ablate.run import preemption
from ablate.run.checkpoint import EXIT_INTERRUPTED
from ablate.run.ctrl_c import CTRL_C
from ablate.run.summary import RunSummary
from ablate.validate import fail

log = logging.getLogger(__name__)


class Outcome:
    """Context manager around fit and test: whatever stops the run is recorded before it propagates.

    - a missing or damaged dataset: `failed`, then the one-line error and exit code 2;
    - SIGTERM (SaveOnInterrupt has saved last.ckpt): `interrupted`, exit 143, the same command resumes;
      under submitit the job is requeued instead;
    - Ctrl-C (ablate.run.ctrl_c): `interrupted`, then KeyboardInterrupt, which ends a sweep and the
      program as Ctrl-C does (one line, SIGINT);
    - any other exception: `failed` with its traceback (and a hint for known resource errors).
    """

    def __init__(self, summary: RunSummary) -> None:
        self.summary = summary
        self.trainer: L.Trainer | None = None  # set by the recipe once built: the step reached

    def __enter__(self) -> Outcome:
        return self

    def _position(self) -> tuple[int, int]:
        return (self.trainer.global_step, self.trainer.current_epoch) if self.trainer else (0, 0)

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool:
        if exc is None:
            return False
        if isinstance(exc, DatasetNotFoundError):
            self.summary.failed(exc)
            fail([" ".join(str(exc).split())])
        if isinstance(exc, SIGTERMException):
            self.summary.interrupted(*self._position())
            preemption.PREEMPTION.requeue_if_preempted()  # under submitit: resubmit and exit
            why, step = "Ctrl-C" if CTRL_C.received else "SIGTERM", self._position()[0]
            log.warning("%s at step %d: run the same command to resume", why, step)
            if CTRL_C.received:  # a sweep stops too; the entry point ends as Ctrl-C ends a program
                raise KeyboardInterrupt from None
            raise SystemExit(EXIT_INTERRUPTED) from None
        if isinstance(exc, KeyboardInterrupt) or (isinstance(exc, SystemExit) and CTRL_C.hard):
            # Ctrl-C outside a fit, or twice (Lightning then calls sys.exit(1)): the last.ckpt
            # saved before it, if any, resumes the run
            self.summary.interrupted(*self._position())
            log.warning("Ctrl-C at step %d: run the same command to resume", self._position()[0])
            raise KeyboardInterrupt from None
        if preemption.PREEMPTION.requeuing:  # submitit requeued it outside a fit; last.ckpt holds
            self.summary.interrupted(*self._position())
        else:
            self.summary.failed(exc)
        return False
