"""A run stopped by trainer.max_steps mid-epoch is validated (and its best checkpoint written)."""

from __future__ import annotations

from typing import Any

import lightning as L


class ValidateAtMaxSteps(L.Callback):
    """Asks the trainer to stop at max_steps, which makes Lightning validate before it stops.

    Lightning ends a fit at max_steps without validating when that falls mid-epoch, unless a stop
    was requested (Trainer.should_stop); without this, step-limited runs (trainer.max_steps, the
    usual way to size a study) would have no val metrics and no best checkpoint to test.
    """

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True
