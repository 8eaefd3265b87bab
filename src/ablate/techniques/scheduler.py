"""Learning-rate schedules stepped once per optimizer step: one function per `conf/scheduler/<option>.yaml`."""

from __future__ import annotations

import math

from torch.optim import Optimizer
from torch.optim.lr_scheduler import LambdaLR, LRScheduler, OneCycleLR

from ablate.schema.fields import Fraction, Fractions, NonNegativeInt, OpenFraction, Positive


def cosine(
    optimizer: Optimizer,
    total_steps: int,
    warmup_steps: NonNegativeInt = 0,
    min_ratio: Fraction = 0.0,
) -> LRScheduler:
    """Linear warm-up, then cosine decay to min_ratio * lr at the last step (Loshchilov & Hutter 2017)."""

    def factor(step: int) -> float:
        if step < warmup_steps:
            return (step + 1) / warmup_steps
        t = (step - warmup_steps) / max(1, total_steps - warmup_steps)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(t, 1.0)))

    return LambdaLR(optimizer, factor)


def onecycle(
    optimizer: Optimizer,
    total_steps: int,
    pct_start: OpenFraction = 0.25,
    div_factor: Positive = 25.0,
    final_div_factor: Positive = 1e4,
) -> LRScheduler:
    """One-cycle (Smith & Topin 2019): warm up to optim.lr over pct_start of training, anneal to ~0."""
    max_lr = [g["lr"] for g in optimizer.param_groups]
    # torch divides by the warm-up length (pct_start * total - 1 steps): a very short run would
    # make it zero. Such a run then simply ends inside a stretched schedule.
    total_steps = max(total_steps, math.ceil(2 / pct_start) + 2)
    return OneCycleLR(
        optimizer,
        max_lr=max_lr,
        total_steps=total_steps,
        pct_start=pct_start,
        div_factor=div_factor,
        final_div_factor=final_div_factor,
        cycle_momentum="momentum" in optimizer.defaults or "betas" in optimizer.defaults,
    )


def step(
    optimizer: Optimizer,
    total_steps: int,
    milestones: Fractions = (0.5, 0.75),
    gamma: Positive = 0.1,
) -> LRScheduler:
    """Multiply the lr by gamma at the given fractions of training (e.g. 50% and 75%)."""
    bounds = sorted(int(m * total_steps) for m in milestones)
    return LambdaLR(optimizer, lambda s: gamma ** sum(s >= b for b in bounds))
