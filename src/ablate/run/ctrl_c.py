"""Ctrl-C during a fit: stop at the next batch and save, as SIGTERM does; a second Ctrl-C stops at once.

Lightning's own Ctrl-C handling catches KeyboardInterrupt wherever it lands (inside a backward pass,
between a parameter update and the step counter), runs the callbacks' on_exception and calls
`sys.exit(1)`. A checkpoint saved from there need not resume exactly, and the run looked failed.
While a fit runs, `CtrlC` replaces the SIGINT handler by one that raises Lightning's
received-SIGTERM flag: the loop raises SIGTERMException at the end of the current batch, where
SaveOnInterrupt saves an exact last.ckpt and the run is recorded `interrupted`; the entry point
then ends by SIGINT (a shell reports 130). A second Ctrl-C raises KeyboardInterrupt at once; nothing is saved then,
and the periodic last.ckpt resumes the run.
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any

import lightning as L
from lightning.pytorch.trainer.states import TrainerFn, TrainerStatus

from ablate.run.parallel_stop import noted

log = logging.getLogger(__name__)


class CtrlC:
    """The process's SIGINT while a fit runs: `received` once pressed, `hard` once a KeyboardInterrupt
    stopped the run (a second press, or one outside a fit)."""

    def __init__(self) -> None:
        self.received = False
        self.hard = False
        self.armed = False
        self._trainer: L.Trainer | None = None
        self._previous: Any = signal.default_int_handler

    def arm(self, trainer: L.Trainer) -> None:
        """At the fit's setup: a Ctrl-C from now on stops the fit at the next batch."""
        if threading.current_thread() is not threading.main_thread():
            return  # signal handlers belong to the main thread (a run inside a worker thread)
        current = signal.getsignal(signal.SIGINT)
        if current == signal.SIG_IGN:
            return  # started with Ctrl-C ignored (a background job of a script): leave it so
        self._trainer, self.received, self.hard, self.armed = trainer, False, False, True
        if noted() == signal.SIGINT:
            # a sweep's worker noted Ctrl-C before the fit: stop after the first batch, saved
            self.received = True
            log.warning("Ctrl-C came before the fit: stopping after its first batch and saving")
        if current != self._on_sigint:  # Lightning's teardown puts back what it found: this one
            self._previous = current
            signal.signal(signal.SIGINT, self._on_sigint)

    def rearm(self) -> None:
        """Set the flag again if Ctrl-C came before Lightning registered (and reset) it."""
        t = self._trainer
        fitting = t is not None and t.state.fn == TrainerFn.FITTING
        if self.armed and self.received and fitting and t.state.status == TrainerStatus.RUNNING:
            t._signal_connector.received_sigterm = True

    def disarm(self) -> None:
        """The fit is over: Ctrl-C does what it did before (KeyboardInterrupt)."""
        self.armed = False
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) == self._on_sigint:
            signal.signal(signal.SIGINT, self._previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        if not self.armed or self.received:  # outside a fit, or pressed again: stop now
            self.disarm()
            if callable(self._previous):
                self._previous(signum, frame)
            raise KeyboardInterrupt
        self.received = True
        log.warning("Ctrl-C: stopping after this batch and saving (press again to stop at once)")
        self.rearm()


CTRL_C = CtrlC()  # one per process, as the signal is
