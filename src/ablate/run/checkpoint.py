"""Surviving faults: atomic checkpoints, a checkpoint on SIGTERM/Ctrl-C, and test-only fault injection."""

from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.fabric.utilities.types import _PATH
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.plugins.io import TorchCheckpointIO
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.exceptions import SIGTERMException

from ablate.run import preemption
from ablate.run.atomic import write_atomic
from ablate.run.ctrl_c import CTRL_C

log = logging.getLogger(__name__)

# Exit code of a run stopped by SIGTERM after saving its checkpoint: 128 + 15, what a shell reports for
# a process ended by SIGTERM. Non-zero, so SLURM/submitit/job chains do not count the run as done;
# re-running the same command resumes it.
EXIT_INTERRUPTED = 128 + signal.SIGTERM


class AtomicCheckpointIO(TorchCheckpointIO):
    """torch.save into a temp file beside the target, fsync, os.replace: a kill never leaves half a file.

    Lightning's own save serializes to memory first, but then writes through an fsspec transaction
    whose temp file lives in /tmp (a copy, not a rename, when that is another filesystem) and is
    never fsynced.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO does not take storage_options")
        write_atomic(path, lambda f: torch.save(checkpoint, f))


class SaveOnInterrupt(L.Callback):
    """On SIGTERM (SLURM preemption) or Ctrl-C, stop at the next batch and save checkpoints/last.ckpt.

    Under submitit, its preemption/timeout signal (SIGUSR2) does the same during a fit, and train.py
    then lets submitit requeue the job (ablate.run.preemption).
    """

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        if stage == "fit":
            preemption.PREEMPTION.watch(trainer)
            CTRL_C.arm(trainer)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        preemption.PREEMPTION.rearm()  # Lightning resets its flag when it registers its handlers
        CTRL_C.rearm()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        state = preemption.PREEMPTION
        state.disarm()
        CTRL_C.disarm()
        if (state.signum is not None and not state.requeuing) or CTRL_C.received:
            # The signal came after the loop's last check: training is done and saved; stop.
            raise SIGTERMException

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        try:
            if isinstance(exception, SIGTERMException):  # raised between two batches
                self._save(trainer, exception)
            elif isinstance(exception, KeyboardInterrupt):  # anywhere: last.ckpt as it was holds
                CTRL_C.hard = True
        finally:
            preemption.PREEMPTION.disarm()  # a preemption signal after this point requeues at once
            CTRL_C.disarm()

    @staticmethod
    def _save(trainer: L.Trainer, exception: BaseException) -> None:
        path = last_checkpoint_path(trainer)
        if path is None or not between_training_batches(trainer):
            return  # last.ckpt as it is (saved at a step or at the epoch's end) resumes exactly
        trainer.save_checkpoint(path)
        why = "Ctrl-C" if CTRL_C.received else type(exception).__name__
        log.warning("%s at step %d: saved %s", why, trainer.global_step, path)


def between_training_batches(trainer: L.Trainer) -> bool:
    """Whether the fit stands between two training batches: where a resumed fit continues exactly.

    Not while validating or testing (testing holds the best checkpoint's weights), and not after an
    epoch was closed: Lightning's restore would count that epoch twice.
    """
    epoch = trainer.fit_loop.epoch_progress.current
    return (
        trainer.state.fn == TrainerFn.FITTING
        and trainer.training
        and epoch.completed < epoch.started
        and not getattr(trainer.lightning_module, "in_chunk", False)  # mid-chunk: see chunks.py
    )


def last_checkpoint_path(trainer: L.Trainer) -> Path | None:
    """Where the run keeps its last.ckpt (None when no checkpoint callback keeps one)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
            return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    return None
