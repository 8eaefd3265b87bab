"""When a group validates, logs, checkpoints and stops: Lightning's rules, for the settings a group takes."""

from __future__ import annotations

import math
from typing import Any

import torch

LOGGERS = ("TensorBoardLogger",)  # what a group writes per seed (other loggers: the runs go solo)


def blockers(trainer: dict[str, Any], callbacks: dict[str, Any], diagnostics: dict[str, Any],
             logger: dict[str, Any] | None) -> list[str]:  # fmt: skip
    """Settings that couple the seeds or that the group loop does not run: each makes the runs solo."""
    found = []
    if trainer.get("gradient_clip_val"):
        found.append("trainer.gradient_clip_val (a global norm clip would couple the seeds)")
    if (trainer.get("accumulate_grad_batches") or 1) != 1:
        found.append("trainer.accumulate_grad_batches")
    if trainer.get("limit_train_batches", 1.0) not in (None, 1.0):
        found.append("trainer.limit_train_batches")
    if trainer.get("check_val_every_n_epoch", 1) not in (1, None):
        found.append("trainer.check_val_every_n_epoch")
    if isinstance(trainer.get("val_check_interval"), dict):
        found.append("trainer.val_check_interval (a time interval)")
    if str(trainer.get("precision", "32-true")) not in ("32", "32-true"):
        found.append(
            f"trainer.precision={trainer.get('precision')} (an fp16 loss scaler is global)"
        )
    accelerator = trainer.get("accelerator", "auto")
    on_cpu = accelerator == "cpu" or (accelerator == "auto" and not torch.cuda.is_available())
    if not on_cpu or trainer.get("devices", 1) not in (1, "1", "auto"):
        found.append("trainer.accelerator/devices (the group loop runs on one CPU)")
    for name, cb in (callbacks or {}).items():
        if isinstance(cb, dict) and "EarlyStopping" in str(cb.get("_target_", "")):
            found.append(f"callbacks.{name} (early stopping is per run)")
    if any(isinstance(v, dict) and v.get("_target_") for v in (diagnostics or {}).values()):
        found.append("diagnostics (per-layer monitors hook a solo net)")
    for name, lg in (logger or {}).items():
        if isinstance(lg, dict) and not str(lg.get("_target_", "")).endswith(LOGGERS):
            found.append(f"logger.{name} (a group writes TensorBoard only)")
    return found


class Schedule:
    """max_steps/max_epochs, val_check_interval, log_every_n_steps and step checkpoints of a run."""

    def __init__(self, trainer: dict[str, Any], callbacks: dict[str, Any], batches: int) -> None:
        self.max_steps = int(trainer.get("max_steps", -1) or -1)
        epochs = trainer.get("max_epochs")
        self.max_epochs = (1000 if self.max_steps == -1 else -1) if epochs is None else int(epochs)
        interval = trainer.get("val_check_interval")
        interval = 1.0 if interval is None else interval
        self.val_every = interval if isinstance(interval, int) else max(1, int(batches * interval))
        # check_val_every_n_epoch=null: Lightning counts val_check_interval over all batches
        self.across_epochs = (
            "check_val_every_n_epoch" in trainer and trainer["check_val_every_n_epoch"] is None
        )
        self.log_every = int(trainer.get("log_every_n_steps", 50) or 0)
        every = [cb.get("every_n_train_steps") for cb in (callbacks or {}).values()
                 if isinstance(cb, dict) and cb.get("every_n_train_steps")]  # fmt: skip
        self.checkpoint_every = min(every) if every else 0
        per_epochs = batches * max(self.max_epochs, 1) if self.max_epochs != -1 else math.inf
        self.total_steps = min(per_epochs, self.max_steps) if self.max_steps != -1 else per_epochs

    def done(self, step: int, epoch: int) -> bool:
        """Whether the fit is over before another epoch starts."""
        return self.stop(step) or (self.max_epochs != -1 and epoch >= self.max_epochs)

    def stop(self, step: int) -> bool:
        """Whether max_steps is reached (Lightning then validates and stops mid-epoch)."""
        return 0 < self.max_steps <= step

    def validate_now(self, batch_idx: int, step: int, stopping: bool) -> bool:
        """Lightning's rule: every val_check_interval batches of the epoch (of the fit with
        check_val_every_n_epoch=null: one step per batch), and on a stop."""
        done = step if self.across_epochs else batch_idx + 1
        return done % self.val_every == 0 or stopping

    def log_now(self, step: int) -> bool:
        """Whether the loggers write the step just taken (every log_every_n_steps)."""
        return self.log_every > 0 and step % self.log_every == 0

    def checkpoint_now(self, step: int) -> bool:
        """Whether a step checkpoint is due (the callbacks' every_n_train_steps)."""
        return self.checkpoint_every > 0 and step % self.checkpoint_every == 0
