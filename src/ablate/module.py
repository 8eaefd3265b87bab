"""The LightningModule: the training objective of `reg`, its steps and accuracy metrics.

What a run watches besides its steps (learning curve, divergence, step limit): ablate.training.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ablate.techniques.reg import Reg, split_decay
from ablate.training.chunks import Chunk
from ablate.training.curve import upgrade_checkpoint

log = logging.getLogger(__name__)


class Classifier(L.LightningModule):
    """Image classifier trained on cross-entropy plus the penalties and decay of `reg` (conf/reg)."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None = None,
        num_classes: int = 10,
        reg: Reg | None = None,
        tta_flip: bool = False,
        steps_per_call: int = 1,
    ) -> None:
        super().__init__()
        # > 1: a training batch is a Chunk of that many batches, stepped through by hand
        # (training/chunks.py); the steps are those of automatic optimization, in its order.
        self.steps_per_call = steps_per_call
        self.automatic_optimization = steps_per_call == 1
        self.in_chunk = False  # between a chunk's first and last step: no exact resume point
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.reg = reg or Reg()
        self.tta_flip = tta_flip
        self.step_values: dict[str, torch.Tensor] = {}  # the last training step's detached values
        self.decay_weights, self.other_params, self.decay_names = split_decay(net)
        # A net's own per-layer penalties, e.g. Keras' kernel_regularizer (models/layers.py).
        self.net_penalty = getattr(net, "penalty", None)
        # Val/test report plain cross-entropy, comparable across runs with and without smoothing.
        self.criterion = self.reg.criterion()
        # No argument checks: the inputs are this module's logits and the loader's labels, and
        # each check reads from the device.
        acc = lambda: MulticlassAccuracy(num_classes, average="micro", validate_args=False)  # noqa: E731
        self.val_acc, self.test_acc, self.train_eval_acc = acc(), acc(), acc()
        self.val_loss, self.test_loss, self.train_eval_loss = (
            MeanMetric(),
            MeanMetric(),
            MeanMetric(),
        )
        self.val_acc_best = MaxMetric()
        # Epoch means as metrics (Lightning's own running means are not checkpointed). Persistent
        # metric states go into checkpoints: a run resumed mid-epoch reports the same numbers.
        # Updated every step: no NaN check (torchmetrics' check reads a flag from the device, a
        # host sync per step; a NaN loss is caught by ablate.training.divergence) and no argument
        # checks.
        step_mean = lambda: MeanMetric(nan_strategy="disable")  # noqa: E731
        self.train_loss, self.train_data_loss, self.train_penalty = (
            step_mean(),
            step_mean(),
            step_mean(),
        )
        self.train_acc = MulticlassAccuracy(num_classes, average="micro", validate_args=False)
        for m in (
            self.train_acc,
            self.train_loss,
            self.train_data_loss,
            self.train_penalty,
            self.val_acc_best,
        ):
            m.persistent(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-time logits; with tta_flip, the mean over the image and its left-right mirror."""
        # Part of the val/test steps, not a wrapper around the net: a wrapper would rename every
        # parameter (checkpoints, the diagnostics' layer names) for what is a choice of evaluation.
        logits = self(x)
        if self.tta_flip:
            logits = (logits + self(x.flip(-1))) / 2
        return logits

    def objective(
        self, x: torch.Tensor, y: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
        """The training loss on a batch: (loss, data loss, penalty, logits)."""
        logits = self(x)
        data_loss = self.criterion(logits, y)
        reg = self.reg.penalty(self.decay_weights)
        if self.net_penalty is not None:
            reg = reg + self.net_penalty()
        return data_loss + reg, data_loss, reg, logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor | dict[str, torch.Tensor]:
        if isinstance(batch, Chunk):
            return self._train_chunk(batch)
        x, y = batch
        loss, logits, values = self._step_values(x, y)
        self.step_values = values  # this step's, for the callbacks (ablate.training.acted)
        # Each self.log costs ~0.1-1 ms of Lightning bookkeeping, so step values are logged only on
        # the steps the loggers write (every trainer.log_every_n_steps) and epoch means once, at
        # the epoch's end. Tensors stay on the device until then: no host sync per step.
        if self._loggers_write_this_step():
            self._log_step(values)
        return loss

    def _step_values(self, x: torch.Tensor, y: torch.Tensor):
        """(loss, logits, detached values) of one batch, counted towards the epoch's means."""
        loss, data_loss, reg, logits = self.objective(x, y)
        values = {"loss": loss.detach(), "data_loss": data_loss.detach(), "penalty": reg.detach()}
        self.train_acc.update(logits, y)
        for name, value in values.items():  # epoch means weighted by batch size, like Lightning's
            getattr(self, f"train_{name}").update(value, len(y))
        return loss, logits, values

    def _log_step(self, values: dict[str, torch.Tensor]) -> None:
        for name, value in values.items():
            self.log(f"train/{name}_step", value, on_step=True, on_epoch=False,
                     prog_bar=name == "loss")  # fmt: skip

    def _train_chunk(self, chunk: Chunk) -> dict[str, torch.Tensor]:
        """One optimizer step per batch of `chunk`, as automatic optimization takes it: forward,
        zero_grad, backward, the before-step hooks (decoupled decay), step, max-norm, scheduler."""
        opt, sched = self.optimizers(), self.lr_schedulers()
        losses, penalties, projected = [], [], []
        self.in_chunk = True
        for x, y in chunk:
            loss, _, values = self._step_values(x, y)
            opt.zero_grad()
            self.manual_backward(loss)
            opt.step()  # Lightning's wrapper: counts global_step, runs on_before_optimizer_step
            if (p := self.reg.constrain_(self.decay_weights)) is not None:
                projected.append(p)
            if sched is not None:
                sched.step()
            losses.append(values["loss"])
            penalties.append(values["penalty"])
        self.in_chunk = False
        losses_t = torch.stack(losses)
        self.step_values = {"loss": losses_t.sum(), "penalty": torch.stack(penalties).sum(),
                            "steps": len(chunk)}  # fmt: skip
        if projected:
            self.step_values["max_norm_projected"] = torch.stack(projected).sum()
        every = self.trainer.log_every_n_steps
        if every > 0 and (self.trainer.global_step % every == 0 or self.trainer.should_stop):
            self._log_step(values)  # the chunk's last step: a multiple of every (chunks.resolve)
        return {"loss": losses_t[-1], "losses": losses_t}

    def on_train_epoch_end(self) -> None:
        for name in ("loss", "data_loss", "penalty"):
            metric = getattr(self, f"train_{name}")
            self.log(f"train/{name}_epoch", metric, prog_bar=name == "loss")
        self.log("train/acc", self.train_acc, prog_bar=True)

    def _loggers_write_this_step(self) -> bool:
        """Whether Lightning's loggers write at this training step (every trainer.log_every_n_steps)."""
        try:
            trainer = self.trainer
        except RuntimeError:  # not attached to a Trainer: a step called directly
            return False
        every = trainer.log_every_n_steps
        # Lightning's own test (its logger connector, not public): the step about to complete,
        # counted in optimizer steps, or a stop request. global_step equals its count of batches
        # that stepped, on resume too.
        return every > 0 and ((trainer.global_step + 1) % every == 0 or trainer.should_stop)

    def on_train_epoch_start(self) -> None:
        # Not called when a run resumes mid-epoch (the restored sums carry on); a run resumed from
        # an epoch-end checkpoint restored the closed epoch's sums, which must not carry over.
        for m in (self.train_acc, self.train_loss, self.train_data_loss, self.train_penalty):
            m.reset()

    def on_validation_epoch_start(self) -> None:
        self.val_loss.reset()
        self.val_acc.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        # Metrics are updated per batch and logged once per validation: each self.log costs
        # Lightning ~0.8 ms, and a metric's forward also computes the batch's own value.
        x, y = batch
        logits = self.predict_logits(x)
        self.val_loss.update(F.cross_entropy(logits, y), len(y))  # weighted: batching-independent
        self.val_acc.update(logits, y)

    def on_validation_epoch_end(self) -> None:
        self.log("val/loss", self.val_loss, prog_bar=True)
        self.log("val/acc", self.val_acc, prog_bar=True)
        val_acc = self.val_acc.compute()
        if self.trainer.sanity_checking:  # sanity batches must not count towards the best score
            return
        self.val_acc_best(val_acc)
        # Equal on every rank (computed from the synced val/acc); sync_dist only states that.
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)

    def on_test_epoch_start(self) -> None:
        for m in (self.test_loss, self.test_acc, self.train_eval_loss, self.train_eval_acc):
            m.reset()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Loader 0 is the official test split; loader 1 (if any) the training split in eval mode,
        # without augmentation, which measures the generalization gap honestly.
        x, y = batch
        logits = self.predict_logits(x)
        loss_metric, acc_metric = self._test_metrics(dataloader_idx)
        loss_metric.update(F.cross_entropy(logits, y), len(y))  # weighted: a per-image mean
        acc_metric.update(logits, y)

    def on_test_epoch_end(self) -> None:
        for prefix, idx in (("test", 0), ("train_eval", 1)):
            loss_metric, acc_metric = self._test_metrics(idx)
            if acc_metric.update_called:  # the train-set re-scoring is off with eval_train_max=0
                self.log(f"{prefix}/loss", loss_metric)
                self.log(f"{prefix}/acc", acc_metric)

    def _test_metrics(self, dataloader_idx: int) -> tuple[MeanMetric, MulticlassAccuracy]:
        if dataloader_idx == 0:
            return self.test_loss, self.test_acc
        return self.train_eval_loss, self.train_eval_acc

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        upgrade_checkpoint(checkpoint)  # one written when the learning curve lived in this module

    def configure_optimizers(self):
        groups = self.reg.param_groups(self.decay_weights, self.other_params)
        log.info(
            "weight decay %g and l1/l2 penalties apply to %d weight tensors (%s); %d biases/norm "
            "parameters are exempt",
            self.reg.weight_decay,
            len(self.decay_names),
            ", ".join(self.decay_names),
            len(self.other_params),
        )
        optimizer = self.optimizer_factory(params=groups)
        if not self.scheduler_factory:
            return optimizer
        scheduler = self.scheduler_factory(optimizer=optimizer, total_steps=self._total_steps())
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def _total_steps(self) -> int:
        """Optimizer steps the fit will take (Lightning's estimate counts chunks as one each)."""
        trainer, estimate = self.trainer, self.trainer.estimated_stepping_batches
        if self.steps_per_call == 1 or trainer.max_epochs == -1:
            return int(estimate)  # step- or batch-counted: max_steps, or one step per batch
        per_epoch = trainer.num_training_batches * self.steps_per_call  # chunks divide epochs
        epochs = per_epoch * max(trainer.max_epochs, 1)
        return min(epochs, trainer.max_steps) if trainer.max_steps != -1 else epochs

    def optimizer_step(self, epoch, batch_idx, optimizer, optimizer_closure=None) -> None:
        super().optimizer_step(epoch, batch_idx, optimizer, optimizer_closure)
        # Max-norm right after the step, before any callback (a checkpoint) sees the weights.
        projected = self.reg.constrain_(self.decay_weights)
        if projected is not None:
            self.step_values["max_norm_projected"] = projected

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        self.reg.decay_(
            optimizer
        )  # decoupled: not rescaled by Adam's moments, same for every optimizer
