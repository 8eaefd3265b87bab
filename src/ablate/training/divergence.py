"""Divergence as a result: a NaN/inf training loss, or one above max_loss, stops the run as `diverged`."""

from __future__ import annotations

import logging
from typing import Any

import lightning as L
import torch

from ablate.training.chunks import step_numbers

log = logging.getLogger(__name__)

READ_EVERY = 25  # steps between host syncs of the divergence test on an accelerator


def read_interval(device: torch.device) -> int:
    """Steps between reads of a device-side flag: 1 on CPU (free), else READ_EVERY."""
    return 1 if device.type == "cpu" else READ_EVERY


NOT_BAD = torch.iinfo(torch.long).max


class DivergenceStop(L.Callback):
    """Stops the fit once the training loss is NaN/inf or above max_loss; records the first bad step.

    The test runs on the device; reading its result is a host sync, so on an accelerator it is read
    every READ_EVERY steps and at an epoch's last batch (on CPU every step, where reading is free).
    The first bad step is kept on the device, so diverged_at_step is exact either way.
    """

    def __init__(self, max_loss: float = float("inf"), read_every: int | None = None) -> None:
        self.max_loss = max_loss
        self.read_every = read_every  # None: read_interval(the loss's device)
        self.diverged_at_step: int | None = None
        self._first_bad_step: torch.Tensor | None = None  # on the loss's device; -1 while none

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        last = trainer.is_last_batch or 0 < trainer.max_steps <= trainer.global_step
        losses = outputs.get("losses", outputs["loss"])  # a chunk's: one per step (chunks.py)
        if self.check(losses.detach(), trainer.global_step, last):
            trainer.should_stop = True

    def check(self, loss: torch.Tensor, step: int, last: bool = False) -> bool:
        """Note `loss` at `step` (a vector: the steps up to `step`); True once a bad step was read
        (then diverged_at_step is set)."""
        loss = loss.reshape(-1)
        bad = ~torch.isfinite(loss) | (loss > self.max_loss)
        if self._first_bad_step is None or self._first_bad_step.device != loss.device:
            self._first_bad_step = torch.full((), -1, dtype=torch.long, device=loss.device)
        first = self._first_bad_step
        if len(loss) == 1:
            first.copy_(torch.where(bad[0] & (first < 0), step, first))
        else:
            steps = step_numbers(step, len(loss), loss.device)
            here = torch.where(bad, steps, NOT_BAD).min()
            first.copy_(torch.where((here < NOT_BAD) & (first < 0), here, first))
        every = self.read_every or read_interval(loss.device)
        if step // every == (step - len(loss)) // every and not last:  # no multiple crossed
            return False
        first_bad = int(first)
        if first_bad < 0:
            return False
        self.diverged_at_step = first_bad
        log.warning(
            "training loss above max_loss=%g (or not finite) at step %d: stopping this run as "
            "diverged",
            self.max_loss,
            first_bad,
        )
        return True
