"""Preemption under submitit (hydra/launcher=submitit_local|submitit_slurm): stop at a safe point,
save checkpoints/last.ckpt, then let submitit requeue the job.

submitit binds its preemption/timeout signal (SIGUSR2, $SUBMITIT_PREEMPT_SIGNAL) to a handler that
resubmits the job and calls sys.exit() at once, wherever the main thread happens to be (inside a
convolution, say): nothing is saved and the work since the last periodic last.ckpt is lost. While a
fit runs, `SubmititPreemption` replaces that handler by one that only raises Lightning's
received-SIGTERM flag: the training loop raises SIGTERMException at the end of the current batch,
SaveOnInterrupt saves last.ckpt there, train.py records the run as interrupted and then calls
`requeue_if_preempted`, which runs submitit's own handler (resubmit + exit). The requeued job resumes
from that last.ckpt (resume=auto). A signal outside a fit (data setup, testing) goes to submitit's
handler at once, as before: nothing of the training is lost then.

On SLURM a preemption sends SIGTERM and SIGUSR2 together (a `scancel` sends SIGTERM only). SIGTERM
stops the fit through Lightning's own handler; after saving, a run under submitit_slurm waits up to
SLURM_USR_SIGNAL_WAIT_S for the SIGUSR2 that decides the requeue, as submitit itself does: SIGTERM
alone does not requeue (it is also what `scancel` sends).
"""

from __future__ import annotations

import logging
import os
import signal
import time
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus

log = logging.getLogger(__name__)

SLURM_USR_SIGNAL_WAIT_S = 20.0  # after a SIGTERM under submitit_slurm: how long to wait for SIGUSR2


def submitit_signal_handler() -> tuple[int, Any] | None:
    """(signal, handler) when submitit's preemption handler is bound in this process, else None."""
    try:
        from submitit.core.job_environment import JobEnvironment, SignalHandler
    except ImportError:
        return None
    try:
        signum = JobEnvironment._usr_sig()
    except RuntimeError:  # an unknown $SUBMITIT_PREEMPT_SIGNAL: submitit itself would fail first
        return None
    handler = signal.getsignal(signum)
    if isinstance(getattr(handler, "__self__", None), SignalHandler):
        return signum, handler
    return None


class SubmititPreemption:
    """The process's submitit preemption signal, turned into a stop at Lightning's next safe point.

    `stoppable` is true from the fit's setup until on_fit_end or the end of on_exception: a signal
    then sets the trainer's received-SIGTERM flag; at any other time it requeues at once.
    """

    def __init__(self) -> None:
        self.signum: int | None = None  # the preemption signal, once received
        self.requeuing = False
        self.stoppable = False
        self._trainer: L.Trainer | None = None
        self._submitit: Any = None  # submitit's handler (SignalHandler.checkpoint_and_try_requeue)

    @property
    def active(self) -> bool:
        return self._submitit is not None

    def watch(self, trainer: L.Trainer) -> None:
        """At the fit's setup: take over submitit's signal (once per process) and arm the stop."""
        if not self.active:
            found = submitit_signal_handler()
            if found is None:
                return  # not under submitit: nothing changes
            signum, self._submitit = found
            # Lightning's signal connector leaves this signal alone and restores what it found
            # (this handler) at its teardown.
            signal.signal(signum, self._on_signal)
            log.info("submitit: %s stops training at the next batch", signal.Signals(signum).name)
        self._trainer = trainer
        self.stoppable = True
        self.rearm()

    def rearm(self) -> None:
        """Set the flag again if the signal came before Lightning registered (and reset) it."""
        if self.signum is not None and self.stoppable and self._fitting():
            self._trainer._signal_connector.received_sigterm = True

    def disarm(self) -> None:
        """From now on a signal requeues at once (the fit is over, or is ending by an exception)."""
        self.stoppable = False

    def _fitting(self) -> bool:
        t = self._trainer
        return (
            t is not None
            and t.state.fn == TrainerFn.FITTING
            and t.state.status == TrainerStatus.RUNNING
        )

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if self.requeuing:
            return
        self.signum = signum
        if self.stoppable:
            name = signal.Signals(signum).name
            log.warning("%s (submitit preemption/timeout): stopping at the next batch", name)
            if self._fitting():
                self._trainer._signal_connector.received_sigterm = True
            return  # else watch() has set it; rearm() sets it again once Lightning has reset it
        self.requeue(frame)

    def requeue(self, frame: FrameType | None = None) -> None:
        """Run submitit's handler: resubmit this job and exit (SystemExit); it raises
        UncompletedJobError when the job cannot be requeued (timed out too many times)."""
        self.requeuing = True
        log.warning("submitit: requeuing this job; it resumes from checkpoints/last.ckpt")
        self._submitit(self.signum or signal.SIGUSR2, frame)

    def requeue_if_preempted(self) -> None:
        """After the run was saved and recorded as interrupted: requeue it when submitit asked for
        it (does not return then). Returns when not under submitit, or when the job was not
        requeued; the caller then exits as an interrupted plain run does."""
        if not self.active or self.requeuing:
            return
        self.disarm()
        from submitit.core.utils import UncompletedJobError

        try:
            if self.signum is None and os.environ.get("SUBMITIT_EXECUTOR") == "slurm":
                # A SIGTERM: a preemption sends SIGUSR2 with it, a scancel does not. _on_signal
                # requeues (raises SystemExit out of this sleep) when it comes.
                deadline = time.monotonic() + SLURM_USR_SIGNAL_WAIT_S
                while self.signum is None and time.monotonic() < deadline:
                    time.sleep(0.05)
            if self.signum is not None:
                self.requeue()
        except UncompletedJobError as e:
            log.warning("submitit did not requeue the job: %s", e)


PREEMPTION = SubmititPreemption()  # one per process: a submitit job runs in a process of its own
