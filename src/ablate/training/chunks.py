"""Several optimizer steps per Lightning batch: `steps_per_call` amortizes the loop's per-batch cost.

A small net (the Ioffe & Szegedy MLP: 3 x 100 units, batch 60) spends ~1 ms per step in arithmetic
and 2-3 ms in Lightning's loop, callbacks and metrics (benchmarks/ioffe_mlp.py). With
steps_per_call=S the training loader hands Lightning a `Chunk` of S batches, and the Classifier
steps through them with manual optimization: the same forward, zero_grad, backward, hooks, optimizer
step, max-norm and scheduler step, in the same order, so the weights are bitwise those of S=1.

Lightning then counts batches in chunks. Every event that it schedules by batches must fall on a
chunk's end, so S divides the steps between validations, log writes, step checkpoints, max_steps and
an epoch's batches; `auto` picks the largest such S up to AUTO_MAX. The loggers' x-axis
(its count of batches that stepped) is kept in optimizer steps by `ChunkSteps`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import lightning as L
import torch

AUTO_MAX = 32  # a cap: a diverged run stops, and Ctrl-C takes effect, only at a chunk's end


class Chunk(list):
    """Consecutive training batches that one `training_step` trains on, one optimizer step each."""


def n_images(batch: Any) -> int:
    """Images in a training batch or a chunk of them."""
    if isinstance(batch, Chunk):
        return sum(len(b[1]) for b in batch)
    return len(batch[1])


def step_events(trainer_cfg: Mapping[str, Any], callbacks_cfg: Mapping[str, Any],
                batches_per_epoch: int) -> dict[str, int]:  # fmt: skip
    """The step intervals a chunk's end must fall on, by the setting that fixes each."""
    events = {"batches per epoch": batches_per_epoch}
    val = trainer_cfg.get("val_check_interval")
    if isinstance(val, int) and not isinstance(val, bool):
        events["trainer.val_check_interval"] = val
    if (every := trainer_cfg.get("log_every_n_steps")) and every > 0:
        events["trainer.log_every_n_steps"] = int(every)
    if (max_steps := trainer_cfg.get("max_steps")) and max_steps > 0:
        events["trainer.max_steps"] = int(max_steps)
    for name, cb in (callbacks_cfg or {}).items():
        if isinstance(cb, Mapping) and (n := cb.get("every_n_train_steps")):
            events[f"callbacks.{name}.every_n_train_steps"] = int(n)
    return events


def blockers(trainer_cfg: Mapping[str, Any], diagnostics_cfg: Mapping[str, Any]) -> list[str]:
    """Settings that need one Lightning batch per optimizer step, as `key=value`."""
    found = []
    if trainer_cfg.get("gradient_clip_val"):
        found.append(f"trainer.gradient_clip_val={trainer_cfg['gradient_clip_val']}")
    val = trainer_cfg.get("val_check_interval")
    if isinstance(val, float) and val != 1.0:  # Lightning takes the fraction of an epoch's chunks
        found.append(f"trainer.val_check_interval={val}")
    if (acc := trainer_cfg.get("accumulate_grad_batches")) not in (None, 1):
        found.append(f"trainer.accumulate_grad_batches={acc}")
    if isinstance(limit := trainer_cfg.get("limit_train_batches"), int) and limit != 1:
        found.append(f"trainer.limit_train_batches={limit}")
    if any(isinstance(v, Mapping) and "_target_" in v for v in (diagnostics_cfg or {}).values()):
        found.append("diagnostics (per-step hooks)")  # activations and probes hook single batches
    return found


def resolve(
    requested: int | str, events: Mapping[str, int], blocked: list[str]
) -> tuple[int, str | None]:
    """(S, problem): `auto` -> the largest S <= AUTO_MAX dividing every event (1 when blocked); an
    integer -> itself, or a one-line problem when an event or a blocker refuses it."""
    if requested == "auto":
        if blocked:
            return 1, None
        g = math.gcd(*events.values())
        return max(d for d in range(1, min(g, AUTO_MAX) + 1) if g % d == 0), None
    s = int(requested)
    if s == 1:
        return 1, None
    if blocked:
        return 1, (f"steps_per_call={s}: {blocked[0]} needs one optimizer step per batch; "
                   "use steps_per_call=1 (or auto)")  # fmt: skip
    for key, every in events.items():
        if every % s:
            return 1, (f"steps_per_call={s} does not divide {key} ({every}): a chunk's end must "
                       f"fall on it; use steps_per_call=auto or a divisor of {every}")  # fmt: skip
    return s, None


def trainer_overrides(trainer_cfg: Mapping[str, Any], s: int) -> dict[str, Any]:
    """Trainer arguments counted in batches, recounted in chunks of `s` batches."""
    val = trainer_cfg.get("val_check_interval")
    if s > 1 and isinstance(val, int) and not isinstance(val, bool):
        return {"val_check_interval": val // s}
    return {}


def chunked(batches: Iterable[Any], s: int) -> Iterable[Any]:
    """`batches` grouped into Chunks of `s` (the last one shorter if the count is not a multiple)."""
    chunk = Chunk()
    for batch in batches:
        chunk.append(batch)
        if len(chunk) == s:
            yield chunk
            chunk = Chunk()
    if chunk:
        yield chunk


class ChunkSteps(L.Callback):
    """Keeps Lightning's logging counter in optimizer steps while a batch is a chunk of them.

    First among the callbacks: the learning-rate monitor asks at a batch's start whether loggers
    write at this step, and validation logs at this counter too.
    """

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        if isinstance(batch, Chunk):  # Lightning adds the last 1 itself, after validation
            trainer.fit_loop.epoch_loop._batches_that_stepped += len(batch) - 1


def recorded(checkpoint: Path) -> int:
    """The steps_per_call a checkpoint's run trained with (1 before the setting existed): a resumed
    run keeps it, since Lightning's loop counters in the checkpoint count its batches."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False, mmap=True)
    return next((int(s["steps_per_call"]) for s in state.get("callbacks", {}).values()
                 if isinstance(s, dict) and "steps_per_call" in s), 1)  # fmt: skip


def step_numbers(end: int, n: int, device: torch.device) -> torch.Tensor:
    """The global steps (1-based, as trainer.global_step reads after each) of a chunk ending at `end`."""
    return torch.arange(end - n + 1, end + 1, device=device)
