"""What each seed of a group writes, as its solo run writes it: summary.json (with the learning curve
and the techniques' record), TensorBoard scalars, and the best checkpoint's weights."""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig

from ablate.run.atomic import write_bytes_atomic
from ablate.run.record import Status
from ablate.run.results import final_metrics
from ablate.run.summary import RunSummary
from ablate.techniques.reg import Reg
from ablate.training.acted import TechniqueUse, dropout_modules

log = logging.getLogger(__name__)


@dataclass
class Member:
    """One seed's run of a group: its config and the Hydra job facts a solo run's summary records."""

    cfg: DictConfig
    run_dir: str
    cfg_hash: str
    seed: int
    overrides: list[str] = field(default_factory=list)
    swept: list[str] = field(default_factory=list)
    choices: dict[str, str] = field(default_factory=dict)


class SeedRecord:
    """Seed k's curve, best checkpoint, metrics, technique counts and summary.json."""

    def __init__(self, member: Member, k: int, reg: Reg, solo_net: torch.nn.Module,
                 tensorboard: bool) -> None:  # fmt: skip
        self.member, self.k = member, k
        self.summary = RunSummary(member.run_dir, member.cfg, member.seed,
                                  overrides=member.overrides, swept=member.swept,
                                  choices=member.choices, config_hash=member.cfg_hash)  # fmt: skip
        self.history: list[dict[str, float]] = []
        self.best = {"acc": -math.inf, "epoch": 0, "step": 0}
        self.best_state: dict[str, torch.Tensor] | None = None
        self.diverged_at: int | None = None
        self.steps, self.epochs = 0, 0
        self.metrics: dict[str, float] = {}
        self.use = TechniqueUse(reg)
        self.use.dropout = {
            k: m for k, m in dropout_modules(solo_net).items() if m and getattr(reg, k)
        }
        self._tensorboard = tensorboard
        self._writer: Any = None

    @property
    def alive(self) -> bool:
        """Whether this seed still trains (it has not diverged)."""
        return self.diverged_at is None

    def scalars(self, values: dict[str, float], step: int) -> None:
        """Log scalars to this run's TensorBoard (event files in its run directory, as solo)."""
        values = {k: _f32(v) for k, v in values.items()}  # as a solo run's float32 metrics read
        self.metrics.update(values)
        if not self._tensorboard:
            return
        if self._writer is None:
            from torch.utils.tensorboard import SummaryWriter

            self._writer = SummaryWriter(self.member.run_dir)
        for name, value in values.items():
            self._writer.add_scalar(name, value, step)

    def validated(self, step: int, epoch: int, acc: float, loss: float, train_loss: float,
                  state: Callable[[], dict[str, torch.Tensor]]) -> None:  # fmt: skip
        """One point of the curve; a strictly better val/acc makes `state()` the best checkpoint."""
        acc, loss, train_loss = _f32(acc), _f32(loss), _f32(train_loss)
        self.history.append({"step": step, "epoch": epoch, "val/acc": acc, "val/loss": loss,
                             "train/loss": train_loss})  # fmt: skip
        if acc > self.best["acc"]:  # ModelCheckpoint(mode=max) keeps the first of equal scores
            self.best, self.best_state = {"acc": acc, "epoch": epoch, "step": step}, state()
        self.scalars({"val/acc": acc, "val/loss": loss, "val/acc_best": self.best["acc"]}, step)

    def best_checkpoint(self) -> str | None:
        """Write the best weights where a solo run's ModelCheckpoint puts them; their path."""
        if self.best_state is None:
            return None
        name = f"best-epoch{self.best['epoch']:02d}-val_acc{self.best['acc']:.4f}.ckpt"
        path = Path(self.member.run_dir) / "checkpoints" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        state = {f"net.{k}": v for k, v in self.best_state.items()}  # the Classifier's key names
        buffer = io.BytesIO()
        torch.save({"state_dict": state, "epoch": self.best["epoch"],
                    "global_step": self.best["step"], "group_trained": True}, buffer)  # fmt: skip
        write_bytes_atomic(path, buffer.getvalue())
        return str(path)

    def finish(self, k: int, data_path: str, splits: dict[str, int], threads: int,
               wall_time_s: float) -> None:  # fmt: skip
        """Write summary.json: completed or diverged, with this seed's share of the group's time."""
        status = Status.COMPLETED if self.alive else Status.DIVERGED
        metrics = final_metrics(self.metrics)
        self.summary.finish(
            status, metrics, history=self.history, steps=self.steps, epochs=self.epochs,
            splits=splits, best_checkpoint=self.best_checkpoint() if self.alive else None,
            diverged_at_step=self.diverged_at, threads=threads, diagnostics=None,
            data_path=data_path, techniques=self.use.record(), steps_per_call=1,
            group={"size": k, "wall_time_s": round(wall_time_s, 3)},
            wall_time_s=round(wall_time_s / k, 3),
        )  # fmt: skip
        if self._writer is not None:
            self._writer.close()
        log.info("%s: %s (seed %d of a group of %d): test/acc=%.4f val/acc_best=%.4f",
                 self.member.run_dir, status, self.member.seed, k,
                 metrics.get("test/acc", math.nan), metrics.get("val/acc_best", math.nan))  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        """What a group checkpoint keeps of this seed."""
        return {"history": list(self.history), "best": dict(self.best),
                "best_state": self.best_state, "diverged_at": self.diverged_at,
                "steps": self.steps, "epochs": self.epochs, "metrics": dict(self.metrics),
                "use": self.use.state_dict()}  # fmt: skip

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Carry on from a group checkpoint."""
        self.history, self.best = list(state["history"]), dict(state["best"])
        self.best_state, self.diverged_at = state["best_state"], state["diverged_at"]
        self.steps, self.epochs, self.metrics = (
            state["steps"],
            state["epochs"],
            dict(state["metrics"]),
        )
        self.use._fitting = True
        self.use.load_state_dict(state["use"])


def _f32(value: float) -> float:
    """value rounded to float32, the precision a solo run's metrics have."""
    return float(torch.tensor(value, dtype=torch.float32))
