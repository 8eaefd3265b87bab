"""SIGTERM and Ctrl-C in a training loop of our own (a group of seeds): stop at the next step, saved.

Without it a SIGTERM ended a group at once (its last periodic checkpoint resumed it, but no summary
said so) and Ctrl-C landed wherever the KeyboardInterrupt did. Inside `StopRequest` either signal is
only noted; the loop saves at its next step boundary and calls `stop`, which ends the process as a
solo run's interruption does: SystemExit(143) for SIGTERM, KeyboardInterrupt for Ctrl-C (a second
Ctrl-C raises it at once).
"""

from __future__ import annotations

import logging
import signal
import threading
from types import FrameType
from typing import Any, NoReturn

from ablate.run.checkpoint import EXIT_INTERRUPTED
from ablate.run.parallel_stop import noted

log = logging.getLogger(__name__)
NAMES = {signal.SIGTERM: "SIGTERM", signal.SIGINT: "Ctrl-C"}


class StopRequest:
    """Notes SIGTERM and SIGINT while the loop runs (main thread only); `signum` once one came."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    def __enter__(self) -> StopRequest:
        self.signum = noted()  # a sweep's worker noted Ctrl-C before the loop: stop after a step
        if threading.current_thread() is threading.main_thread():
            for sig in NAMES:
                if signal.getsignal(sig) != signal.SIG_IGN:  # a background job's ignored Ctrl-C
                    self._previous[sig] = signal.signal(sig, self._on_signal)
        return self

    def __exit__(self, *exc: object) -> bool:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        return False

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        if signum == signal.SIGINT and self.signum is not None:  # pressed again: stop now
            raise KeyboardInterrupt
        if self.signum is None:
            self.signum = signum
            log.warning("%s: stopping after this step and saving", NAMES[signum])

    def stop(self, step: int) -> NoReturn:
        """End the process as the signal asks, once the loop has saved its place."""
        log.warning("%s at step %d: run the same command to resume", NAMES[self.signum], step)
        if self.signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise SystemExit(EXIT_INTERRUPTED)
