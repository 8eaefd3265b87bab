"""The learning curve: one entry per validation (step, epoch, val/acc, val/loss, mean train/loss since the
previous one), kept in checkpoints so that a resumed run's curve is the uninterrupted run's."""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
from torchmetrics import MeanMetric

# Where checkpoints written before the curve was a callback of its own kept it: the history at the
# top level, the running train loss in the LightningModule's state_dict.
_OLD_HISTORY = "history"
_OLD_PREFIX = "_train_loss_since_val."


class LearningCurve(L.Callback):
    """Records the learning curve (`history`, summary.json's "history") at each validation's end."""

    def __init__(self) -> None:
        self.history: list[dict[str, float]] = []
        # A metric, not a float: the sum stays on the device (no host sync per step), and its
        # arithmetic is what the curve always used. nan_strategy="disable": no per-step NaN check
        # (a host sync); a NaN loss is caught by the divergence test.
        self._since_val = MeanMetric(nan_strategy="disable")
        self._since_val.persistent(True)
        self._fitting = False

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # trainer.test(ckpt_path=best) restores callbacks too: it must not swap in an older curve.
        self._fitting = stage == "fit"

    def on_train_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
    ) -> None:
        for loss in outputs.get("losses", outputs["loss"]).detach().reshape(-1):  # a chunk: each
            self.add_train_loss(loss)

    def add_train_loss(self, loss: torch.Tensor) -> None:
        """Count one step's training loss towards the next entry's train/loss."""
        if self._since_val.device != loss.device:
            self._since_val.to(loss.device)
        self._since_val.update(loss)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:  # sanity batches are no point of the curve
            return
        # on_validation_end: val/acc and val/loss are the epoch's values by now, and checkpoint
        # callbacks (Lightning runs them last) save the curve with this entry.
        metrics = trainer.callback_metrics
        self.add_entry(
            trainer.global_step,
            trainer.current_epoch,
            metrics.get("val/acc"),
            metrics.get("val/loss"),
        )

    def add_entry(self, step: int, epoch: int, val_acc: Any, val_loss: Any) -> None:
        """Append one validation's point; train/loss is the mean since the previous point (nan if none)."""
        # Tested by weight: update_count is not checkpointed, the weight state is.
        since_val = self._since_val
        train_loss = float(since_val.compute()) if since_val.weight > 0 else math.nan
        self.history.append(
            {
                "step": step,
                "epoch": epoch,
                "val/acc": _float(val_acc),
                "val/loss": _float(val_loss),
                "train/loss": train_loss,
            }
        )
        since_val.reset()

    def state_dict(self) -> dict[str, Any]:
        return {
            "history": list(self.history),
            "train_loss_since_val": dict(self._since_val.state_dict()),
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if not self._fitting:
            return
        self.history = list(state_dict.get("history", []))
        if since_val := state_dict.get("train_loss_since_val"):
            self._since_val.load_state_dict(since_val)


def _float(value: Any) -> float:
    return math.nan if value is None else float(value)


def upgrade_checkpoint(checkpoint: dict[str, Any]) -> None:
    """Move the curve of a checkpoint written before LearningCurve (in the module) to its callback state.

    Called from the module's on_load_checkpoint, before its weights load: the old running-loss keys
    would fail the strict state_dict load. A checkpoint without them is left as it is.
    """
    weights = checkpoint.get("state_dict", {})
    old = {
        k[len(_OLD_PREFIX) :]: weights.pop(k) for k in list(weights) if k.startswith(_OLD_PREFIX)
    }
    history = checkpoint.pop(_OLD_HISTORY, None)
    if not old and history is None:
        return
    callbacks = checkpoint.setdefault("callbacks", {})
    callbacks.setdefault(
        LearningCurve.__qualname__,
        {"history": list(history or []), "train_loss_since_val": old},
    )
