"""Surviving faults: atomic checkpoints, a checkpoint on SIGTERM/Ctrl-C, and test-only fault injection."""

from __future__ import annotations

import logging
import os
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

from ablate.atomic import write_atomic

log = logging.getLogger(__name__)

# Exit code of a run stopped by SIGTERM after saving its checkpoint: 128 + 15, what a shell reports for
# a process ended by SIGTERM. Non-zero, so SLURM/submitit/job chains do not count the run as done;
# re-running the same command resumes it.
EXIT_INTERRUPTED = 128 + signal.SIGTERM
FAULT_ENV = "ABLATE_FAULT"  # test-only, e.g. ABLATE_FAULT=kill_at_step:7


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
    """On SIGTERM (SLURM preemption) or Ctrl-C, save checkpoints/last.ckpt before the run exits."""

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if not isinstance(exception, SIGTERMException | KeyboardInterrupt):
            return
        path = last_checkpoint_path(trainer)
        if path is None or not between_training_batches(trainer):
            return  # last.ckpt as it is (saved at a step or at the epoch's end) resumes exactly
        trainer.save_checkpoint(path)
        log.warning("%s at step %d: saved %s", type(exception).__name__, trainer.global_step, path)


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
    )


def last_checkpoint_path(trainer: L.Trainer) -> Path | None:
    """Where the run keeps its last.ckpt (None when no checkpoint callback keeps one)."""
    for cb in trainer.checkpoint_callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.save_last and cb.dirpath:
            return Path(cb.dirpath) / f"{cb.CHECKPOINT_NAME_LAST}{cb.FILE_EXTENSION}"
    return None


class FaultInjection(L.Callback):
    """Test-only: at the start of training step `step`, kill/terminate this process or raise."""

    ACTIONS = ("kill", "term", "raise")

    def __init__(self, action: str, step: int) -> None:
        if action not in self.ACTIONS:
            raise ValueError(
                f"{FAULT_ENV}={action}_at_step:{step}: action must be one of {self.ACTIONS}"
            )
        self.action, self.step = action, step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step != self.step:
            return
        log.warning("fault injection (%s): %s at step %d", FAULT_ENV, self.action, self.step)
        if self.action == "raise":
            raise RuntimeError(f"injected fault at step {self.step}")
        os.kill(os.getpid(), signal.SIGKILL if self.action == "kill" else signal.SIGTERM)


def injected_faults() -> list[L.Callback]:
    """The FaultInjection asked for by $ABLATE_FAULT (`<kill|term|raise>_at_step:<N>`), else none."""
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return []
    action, _, step = spec.partition("_at_step:")
    if not step.isdigit():
        raise ValueError(f"{FAULT_ENV}={spec}: expected <kill|term|raise>_at_step:<N>")
    return [FaultInjection(action, int(step))]
