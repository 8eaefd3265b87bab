"""The grouped trainer's resume state: one file for the whole group, written atomically, and the
way back into the loop from it (mid-epoch, at an epoch's last batch, or at the last step)."""

from __future__ import annotations

import io
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from ablate.run.atomic import write_bytes_atomic

if TYPE_CHECKING:
    from ablate.group.seeds import Member

log = logging.getLogger("ablate.train")


def checkpoint_path(members: list[Member]) -> Path:
    """Where the group's resume state lives: the first member's checkpoints/, named by its seeds."""
    seeds = "-".join(str(m.seed) for m in members)
    return Path(members[0].run_dir) / "checkpoints" / f"group-{seeds}.ckpt"


class Resumable:
    """GroupFit's save and load: every piece of state the loop carries between steps."""

    def save(self) -> None:
        """The group's resume state, written atomically (a kill at any moment leaves a whole one)."""
        state = {"net": self.net.state_dict(), "optimizer": self.stepper.optimizer.state_dict(),
                 "scheduler": self.stepper.scheduler.state_dict() if self.stepper.scheduler else None,
                 "step": self.step, "epoch": self.epoch, "batch": self.batch,
                 "loaders": [ld.state_dict() for ld in self.data.train],
                 "generators": [gen.get_state() for gen in self.generators],
                 "since_val": self.since_val, "since_val_n": self.since_val_n, "sums": self.sums,
                 "records": [r.state_dict() for r in self.records]}  # fmt: skip
        buffer = io.BytesIO()
        torch.save(state, buffer)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        write_bytes_atomic(self.path, buffer.getvalue())

    def load(self) -> bool:
        """Carry on from the group's checkpoint if there is one; whether there was."""
        if not self.path.exists():
            return False
        state = torch.load(self.path, map_location="cpu", weights_only=False)
        self.net.load_state_dict(state["net"])
        self.stepper.optimizer.load_state_dict(state["optimizer"])
        if self.stepper.scheduler is not None:
            self.stepper.scheduler.load_state_dict(state["scheduler"])
        self.step, self.epoch, self.batch = state["step"], state["epoch"], state["batch"]
        for loader, s in zip(self.data.train, state["loaders"], strict=True):
            loader.load_state_dict(s)
        for gen, s in zip(self.generators, state["generators"], strict=True):
            gen.set_state(s)
        self.since_val, self.since_val_n = state["since_val"], state["since_val_n"]
        self.sums = state["sums"]
        for r, s in zip(self.records, state["records"], strict=True):
            r.load_state_dict(s)
        if self.schedule.stop(self.step):  # saved at the last step: only the epoch's close is left
            self.end_epoch()
        elif self.batch >= len(self.data.train[0]):  # saved at an epoch's last batch
            self.end_epoch()
            self.sums, self.batch, self.epoch = self.zero_sums(), 0, self.epoch + 1
        log.info("group of %d resumed at step %d from %s", self.k, self.step, self.path)
        return True
