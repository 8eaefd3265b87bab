"""The LightningModule: cross-entropy + explicit penalties, decoupled weight decay, accuracy metrics."""

from __future__ import annotations

import logging
from collections.abc import Callable

import lightning as L
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn
from torch import nn
from torchmetrics import MaxMetric, MeanMetric
from torchmetrics.classification import MulticlassAccuracy

from ablate.regularizers import penalty, split_decay

log = logging.getLogger(__name__)

# Names the HParams tab compares runs on; logged once up front so TensorBoard knows them.
HPARAM_METRICS = (
    "test/acc",
    "test/loss",
    "val/acc_best",
    "train_eval/acc",
    "gap/train_val",
    "gap/train_test",
)


class Classifier(L.LightningModule):
    """Image classifier trained with cross-entropy plus l1*sum|w| + l2*sum w^2 over weights."""

    def __init__(
        self,
        net: nn.Module,
        optimizer: Callable[..., torch.optim.Optimizer],
        scheduler: Callable[..., object] | None = None,
        num_classes: int = 10,
        l1: float = 0.0,
        l2: float = 0.0,
        weight_decay: float = 0.0,
        max_loss: float = float("inf"),
        label_smoothing: float = 0.0,
        tta_flip: bool = False,
    ) -> None:
        super().__init__()
        self.net = net
        self.optimizer_factory = optimizer
        self.scheduler_factory = scheduler
        self.l1, self.l2, self.weight_decay = l1, l2, weight_decay
        self.max_loss = max_loss
        self.tta_flip = tta_flip
        self.diverged_at_step: int | None = None
        self.decay_weights, self.other_params, self.decay_names = split_decay(net)
        # Label smoothing (Szegedy et al. 2016, Sec. 7) in the training loss only: val/test report
        # plain cross-entropy, comparable across runs with and without it.
        self.criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
        acc = lambda: MulticlassAccuracy(num_classes, average="micro")  # noqa: E731
        self.train_acc, self.val_acc, self.test_acc, self.train_eval_acc = (
            acc(),
            acc(),
            acc(),
            acc(),
        )
        self.val_loss, self.test_loss, self.train_eval_loss = (
            MeanMetric(),
            MeanMetric(),
            MeanMetric(),
        )
        self.val_acc_best = MaxMetric()
        self.history: list[dict[str, float]] = []  # one entry per validation: the learning curve
        self._train_loss_since_val = MeanMetric()
        # Epoch means as metrics (Lightning's own running means are not checkpointed). Persistent
        # metric states go into checkpoints: a run resumed mid-epoch reports the same numbers.
        self.train_loss, self.train_data_loss, self.train_penalty = (
            MeanMetric(),
            MeanMetric(),
            MeanMetric(),
        )
        for m in (
            self.train_acc,
            self.train_loss,
            self.train_data_loss,
            self.train_penalty,
            self._train_loss_since_val,
            self.val_acc_best,
        ):
            m.persistent(True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def predict_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Eval-time logits; with tta_flip, the mean over the image and its left-right mirror."""
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
        reg = penalty(self.decay_weights, self.l1, self.l2)
        return data_loss + reg, data_loss, reg, logits

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        x, y = batch
        loss, data_loss, reg, logits = self.objective(x, y)
        self._train_loss_since_val.update(loss.detach())
        self.train_acc(logits, y)
        for name, value in (("loss", loss), ("data_loss", data_loss), ("penalty", reg)):
            metric = getattr(self, f"train_{name}")
            metric(value.detach(), len(y))  # epoch mean weighted by batch size, like Lightning's
            self.log(f"train/{name}", metric, on_step=True, on_epoch=True, prog_bar=name == "loss")
        self.log("train/acc", self.train_acc, on_step=False, on_epoch=True, prog_bar=True)
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        loss = outputs["loss"].detach()
        if not torch.isfinite(loss) or loss > self.max_loss:  # diverged: a result, not a crash
            self.diverged_at_step = self.trainer.global_step
            log.warning(
                "training loss %s at step %d (bound max_loss=%g): stopping this run as diverged",
                float(loss),
                self.diverged_at_step,
                self.max_loss,
            )
            self.trainer.should_stop = True
            return
        # Lightning validates a run stopped by max_steps mid-epoch only when asked to stop:
        # without this, step-limited runs would have no val metrics and no best checkpoint.
        if 0 < self.trainer.max_steps <= self.trainer.global_step:
            self.trainer.should_stop = True

    def on_train_epoch_start(self) -> None:
        # Not called when a run resumes mid-epoch (the restored sums carry on); a run resumed from
        # an epoch-end checkpoint restored the closed epoch's sums, which must not carry over.
        for m in (self.train_acc, self.train_loss, self.train_data_loss, self.train_penalty):
            m.reset()

    def validation_step(self, batch, batch_idx: int) -> None:
        x, y = batch
        logits = self.predict_logits(x)
        self.val_loss(F.cross_entropy(logits, y))
        self.val_acc(logits, y)
        self.log("val/loss", self.val_loss, on_epoch=True, prog_bar=True)
        self.log("val/acc", self.val_acc, on_epoch=True, prog_bar=True)

    def on_validation_epoch_end(self) -> None:
        val_acc = self.val_acc.compute()
        if self.trainer.sanity_checking:  # sanity batches must not count towards the best score
            return
        self.val_acc_best(val_acc)
        # Equal on every rank (computed from the synced val/acc); sync_dist only states that.
        self.log("val/acc_best", self.val_acc_best.compute(), prog_bar=True, sync_dist=True)
        # Tested by weight: update_count is not checkpointed, the weight state is.
        since_val = self._train_loss_since_val
        train_loss = since_val.compute() if since_val.weight > 0 else None
        self.history.append(
            {
                "step": self.trainer.global_step,
                "epoch": self.current_epoch,
                "val/acc": float(val_acc),
                "val/loss": float(self.val_loss.compute()),
                "train/loss": float(train_loss) if train_loss is not None else float("nan"),
            }
        )
        since_val.reset()

    def test_step(self, batch, batch_idx: int, dataloader_idx: int = 0) -> None:
        # Loader 0 is the official test split; loader 1 (if any) the training split in eval mode,
        # without augmentation, which measures the generalization gap honestly.
        x, y = batch
        logits = self.predict_logits(x)
        loss = F.cross_entropy(logits, y)
        prefix, loss_metric, acc_metric = (
            ("test", self.test_loss, self.test_acc)
            if dataloader_idx == 0
            else ("train_eval", self.train_eval_loss, self.train_eval_acc)
        )
        loss_metric(loss)
        acc_metric(logits, y)
        self.log(f"{prefix}/loss", loss_metric, on_epoch=True, add_dataloader_idx=False)
        self.log(f"{prefix}/acc", acc_metric, on_epoch=True, add_dataloader_idx=False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint["history"] = self.history  # a resumed run keeps its learning curve

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        if (
            self._trainer is not None and self.trainer.state.fn == TrainerFn.FITTING
        ):  # resuming, not testing
            self.history = list(checkpoint.get("history", []))

    def configure_optimizers(self):
        groups = [
            {
                "name": "weights",
                "params": self.decay_weights,
                "decoupled_weight_decay": self.weight_decay,
            },
            {"name": "biases_norms", "params": self.other_params, "decoupled_weight_decay": 0.0},
        ]
        log.info(
            "weight decay %g and l1/l2 penalties apply to %d weight tensors (%s); %d biases/norm "
            "parameters are exempt",
            self.weight_decay,
            len(self.decay_names),
            ", ".join(self.decay_names),
            len(self.other_params),
        )
        optimizer = self.optimizer_factory(params=[g for g in groups if g["params"]])
        if not self.scheduler_factory:
            return optimizer
        scheduler = self.scheduler_factory(
            optimizer=optimizer, total_steps=int(self.trainer.estimated_stepping_batches)
        )
        return {
            "optimizer": optimizer,
            "lr_scheduler": {"scheduler": scheduler, "interval": "step"},
        }

    def on_before_optimizer_step(self, optimizer: torch.optim.Optimizer) -> None:
        # Decoupled weight decay (Loshchilov & Hutter 2019): w <- w - lr * wd * w, outside the
        # gradient, so it is not rescaled by Adam's moments; the same rule for every optimizer.
        with torch.no_grad():
            for group in optimizer.param_groups:
                wd = group.get("decoupled_weight_decay", 0.0)
                if wd:
                    torch._foreach_mul_(group["params"], 1.0 - group["lr"] * wd)
