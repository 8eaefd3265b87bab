"""`train_group(members)`: K seeds of one cell trained as one stacked model, each recorded as its solo
run would be. The loop is a plain one: the group pays the framework's per-step cost once for K seeds.

What makes a seed that seed is its own: data split, subset and order (its datamodule), initial
weights (its solo net, built after seeding as a solo run builds it), dropout masks (its generator),
BatchNorm statistics, and divergence (a diverged seed stops counting; the others go on).
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F  # noqa: N812
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.evaluation import build, of_state
from ablate.group.data import GroupData
from ablate.group.resume import Resumable, checkpoint_path
from ablate.group.seeds import Member, SeedRecord
from ablate.group.stack import StackedNet
from ablate.group.step import StackedStep, StepValues
from ablate.group.steps import Schedule
from ablate.models import build_model
from ablate.run.stop_request import StopRequest
from ablate.run.threads import set_threads
from ablate.testing.faults import injected_faults
from ablate.training.acted import SAMPLE_EVERY

log = logging.getLogger("ablate.train")


class GroupFit(Resumable):
    """The stacked model, its optimizer and schedule, the seeds' data and records."""

    def __init__(self, members: list[Member]) -> None:
        cfg = members[0].cfg
        self.k = len(members)
        self.evaluation = build(cfg.eval)  # its extras score each seed's solo net, after training
        self.threads = set_threads(cfg.threads)
        self.solo, self.generators, self.data = [], [], GroupData()  # solo nets, as built solo
        for m in members:  # each seed as its solo run sets up: seeded, its data, its init
            L.seed_everything(m.seed, workers=True)
            dm = self.data.add(m.cfg, m.seed)
            self.solo.append(build_model(m.cfg.model, m.cfg.norm, m.cfg.reg, m.cfg.init,
                                         in_channels=dm.channels, num_classes=dm.num_classes,
                                         image_size=dm.image_size))  # fmt: skip
            self.generators.append(torch.Generator().set_state(torch.get_rng_state()))
        self.net = StackedNet(self.solo)
        self.net.set_generators(self.generators)
        self.reg = instantiate(cfg.reg)
        self.schedule = Schedule(OmegaConf.to_container(cfg.trainer, resolve=True),
                                 OmegaConf.to_container(cfg.callbacks, resolve=True),
                                 len(self.data.train[0]))  # fmt: skip
        self.stepper = StackedStep(self.net, self.reg, instantiate(cfg.optim),
                                   instantiate(cfg.scheduler) or None, self.schedule.total_steps)  # fmt: skip
        self.stepper.before_step.append(self._count_decay)
        tensorboard = any("TensorBoard" in str(v.get("_target_", ""))
                          for v in (OmegaConf.to_container(cfg.logger, resolve=True) or {}).values()
                          if isinstance(v, dict))  # fmt: skip
        self.records = [SeedRecord(m, i, self.reg, self.solo[i], tensorboard)
                        for i, m in enumerate(members)]  # fmt: skip
        self.max_loss = float(cfg.max_loss)
        self.step, self.epoch, self.batch = 0, 0, 0
        # per seed: the curve's running train loss since that seed's last point, and its count
        self.since_val = torch.zeros(self.k, dtype=torch.float64)
        self.since_val_n = torch.zeros(self.k, dtype=torch.float64)
        self.sums = self.zero_sums()
        self.path = checkpoint_path(members)
        self.faults = injected_faults(cfg)  # test-only ($ABLATE_FAULT), as a solo run has them

    @property
    def global_step(self) -> int:  # what the fault injection reads
        return self.step

    def zero_sums(self) -> dict[str, torch.Tensor]:
        return {n: torch.zeros(self.k, dtype=torch.float64) for n in
                ("loss", "data_loss", "penalty", "correct", "count")}  # fmt: skip

    def alive(self) -> torch.Tensor:
        """(K,) bool: the seeds that have not diverged."""
        return torch.tensor([r.alive for r in self.records])

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """One optimizer step for every seed still training; then the per-seed bookkeeping."""
        sampled = self.step % SAMPLE_EVERY == 0  # TechniqueUse's sampled steps (global_step)
        for d in self.net.dropouts():
            d.measure = sampled
        alive = self.alive()
        values = self.stepper(x, y, alive)
        self.step += 1
        self._count(values, y.shape[1], alive)

    def _count_decay(self, optimizer: torch.optim.Optimizer) -> None:
        for r in self.records:  # TechniqueUse.on_before_optimizer_step, per seed
            if r.alive:
                r.use.on_before_optimizer_step(None, None, optimizer)

    def _count(self, v: StepValues, b: int, alive: torch.Tensor) -> None:
        """Epoch means, the curve's running train loss, technique counts, divergence: per seed."""
        loss, data_loss, penalty, projected = v.loss, v.data_loss, v.penalty, v.projected
        live = alive.double()  # a diverged seed's values count no more
        for name, value in (("loss", loss), ("data_loss", data_loss), ("penalty", penalty)):
            self.sums[name] += torch.where(alive, value.double() * b, 0.0)
        self.sums["correct"] += v.correct.double() * live
        self.sums["count"] += b * live
        self.since_val += torch.where(alive, loss.double(), 0.0)
        self.since_val_n += live
        self.last = (loss, data_loss, penalty)
        for d in self.net.dropouts():
            for dropped, seen in d.counts:
                for i, r in enumerate(self.records):
                    if alive[i]:
                        r.use._add(f"{d.kind}_dropped", dropped[i])
                        r.use._add(f"{d.kind}_seen", seen[i])
            d.counts = []
        bad = ~torch.isfinite(loss) | (loss > self.max_loss)
        for i, r in enumerate(self.records):
            if not alive[i]:
                continue
            r.steps = self.step
            if projected is not None:
                r.use._add("max_norm_projections", projected[i])
                r.use.state["max_norm_steps"] += 1
            if self.reg.l1 or self.reg.l2:
                r.use._add("penalty", penalty[i])
                r.use._add("loss", loss[i])
            if bad[i]:
                r.diverged_at = self.step
                log.warning("seed %d: training loss above max_loss=%g (or not finite) at step %d: "
                            "this seed stops as diverged, the group goes on", r.member.seed,
                            self.max_loss, self.step)  # fmt: skip

    @torch.no_grad()
    def evaluate(self, loaders: list[Any], prepare) -> tuple[torch.Tensor, torch.Tensor]:
        """(accuracy, mean cross-entropy) per seed over the zipped eval loaders."""
        self.net.eval()
        loss = torch.zeros(self.k, dtype=torch.float64)
        correct, n = torch.zeros(self.k, dtype=torch.float64), 0
        for x, y in prepare(loaders):
            logits = self.net(x)
            k, b = y.shape
            loss += F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none") \
                .view(k, b).double().sum(1)  # fmt: skip
            correct += (logits.argmax(-1) == y).sum(1).double()
            n += b
        self.net.train()
        return correct / n, loss / n

    def validate(self, who: list[int]) -> None:
        """Validate every seed; record the point for the seeds in `who`."""
        acc, loss = self.evaluate(self.data.val, self.data.batches)
        for i in who:
            n = float(self.since_val_n[i])
            mean = float(self.since_val[i]) / n if n else math.nan
            self.records[i].validated(self.step, self.epoch, float(acc[i]), float(loss[i]), mean,
                                      lambda i=i: self.net.unstack(i))  # fmt: skip
            self.since_val[i] = self.since_val_n[i] = 0.0

    def log_step(self, loss: torch.Tensor, data_loss: torch.Tensor, penalty: torch.Tensor) -> None:
        """train/*_step scalars every log_every_n_steps (the steps Lightning's loggers write)."""
        for i, r in enumerate(self.records):
            if r.alive:
                r.scalars({"train/loss_step": float(loss[i]), "train/data_loss_step":
                           float(data_loss[i]), "train/penalty_step": float(penalty[i])}, self.step)  # fmt: skip

    def end_epoch(self, who: list[int] | None = None) -> None:
        """The epoch's means (train/loss_epoch, train/acc, ...) of the seeds `who` (default: those
        still training; a seed that diverged closes its epoch there, as its solo run stops)."""
        who = [i for i, r in enumerate(self.records) if r.alive] if who is None else who
        count = self.sums["count"].clamp(min=1)
        for i in who:
            self.records[i].epochs = self.epoch + 1  # trainer.current_epoch after a fit: begun
            self.records[i].scalars(
                {f"train/{n}_epoch": float(self.sums[n][i] / count[i])
                 for n in ("loss", "data_loss", "penalty")}
                | {"train/acc": float(self.sums["correct"][i] / count[i])}, self.step)  # fmt: skip

    def fit(self, request: StopRequest) -> None:
        """Train until max_steps or max_epochs (or every seed diverged), validating on schedule."""
        start = time.perf_counter()
        self.load()
        schedule = self.schedule
        while not schedule.done(self.step, self.epoch) and self.alive().any():
            if self.run_epoch(schedule, request):  # a signal, even one while setting up: saved at
                self.epoch += 1  # the next step, then stopped there
        if request.signum is not None:  # came after the last step: the last checkpoint holds
            request.stop(self.step)
        self.wall_time_s = time.perf_counter() - start

    def run_epoch(self, schedule: Schedule, request: StopRequest) -> bool:
        """Train the epoch's batches (validating, checkpointing); whether the fit goes on after it."""
        self.data.clock.current_epoch = self.epoch
        batch0, stop = self.batch, False
        for i, (x, y) in enumerate(self.data.batches(self.data.train), start=batch0):
            for fault in self.faults:
                fault.on_train_batch_start(self, None, None, i)
            alive_before = self.alive()
            self.train_step(x, y)
            self.batch = i + 1
            newly = [j for j in range(self.k) if alive_before[j] and not self.records[j].alive]
            if schedule.log_now(self.step):
                self.log_step(*self.last)
            stop = schedule.stop(self.step) or not self.alive().any()
            if schedule.validate_now(i, self.step, stop):
                self.validate([j for j in range(self.k) if alive_before[j]])
            elif newly:  # Lightning validates a run its divergence test stopped
                self.validate(newly)
            if newly:
                self.end_epoch(newly)
            signalled = request.signum is not None and not stop
            if schedule.checkpoint_now(self.step) or signalled:
                self.save()
            if signalled:  # saved where a step checkpoint would be: stop here
                request.stop(self.step)
            if stop:
                break
        self.end_epoch()
        self.sums, self.batch = self.zero_sums(), 0
        return not stop

    def test(self) -> None:
        """Score each completed seed's best checkpoint on the test split (and the train re-scoring)."""
        for fault in self.faults:
            fault.on_test_start(self, None)
        for i, r in enumerate(self.records):
            if r.alive and r.best_state is not None:
                self.net.load_seed(i, r.best_state)
                r.scalars(of_state(self.evaluation, self.solo[i], r.best_state,
                                   self.data.modules[i], r.member.seed), self.step)  # fmt: skip
        for name, loaders in self.data.test_loaders():
            acc, loss = self.evaluate(loaders, self.data.batches)
            for i, r in enumerate(self.records):
                if r.alive:
                    r.scalars({f"{name}/acc": float(acc[i]), f"{name}/loss": float(loss[i])},
                              self.step)  # fmt: skip

    def finish(self) -> None:
        """Write every seed's summary.json; the group's checkpoint has served its purpose."""
        for r, dm in zip(self.records, self.data.modules, strict=True):
            r.finish(self.k, dm.data_path, dm.split_sizes(), self.threads, self.wall_time_s)
        self.path.unlink(missing_ok=True)


def train_group(members: list[Member]) -> None:
    """Train the members (one cell, K seeds) as one model and record each as its solo run would.

    SIGTERM or Ctrl-C at any point is noted (StopRequest): while setting up or training, the group
    saves at its next step and every seed is recorded `interrupted`; while testing, the test and the
    summaries are finished first (the seeds are `completed`), then the process stops as asked.
    """
    with StopRequest() as request:
        group = GroupFit(members)
        try:
            group.fit(request)
            group.test()
        except BaseException as e:
            for r in group.records:  # the group's checkpoint holds: the same command resumes it
                if isinstance(e, Exception):
                    r.summary.failed(e)
                else:
                    r.summary.interrupted(group.step, group.epoch)
            raise
        group.finish()
    if request.signum is not None:  # came while testing: every seed is recorded, the sweep stops
        request.stop(group.step)
