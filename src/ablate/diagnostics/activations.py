"""Activation statistics per layer (Ioffe & Szegedy 2015, Fig. 1): percentiles, saturation, dead units."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Annotated, Any

import lightning as L
import torch
from pydantic import Field
from torch import nn

from ablate.diagnostics.base import (
    MAX_QUANTILE_ELEMENTS,
    MEASURED_LAYERS,
    PERCENTILES,
    due,
    log_histograms,
    log_scalars,
)
from ablate.schema.fields import NonNegativeInt, allowed

Percentiles = Annotated[
    list[Annotated[float, Field(ge=0, le=100)]], allowed("a list of numbers in [0, 100]")
]


def tensor_stats(x: torch.Tensor, percentiles: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """Mean, std and the given percentiles of all elements of x."""
    flat = x.detach().float().flatten()
    stride = max(1, math.ceil(flat.numel() / MAX_QUANTILE_ELEMENTS))
    sample = flat[::stride]  # strided, not random: the measurement must not touch the RNG
    q = torch.quantile(sample, torch.tensor([p / 100 for p in percentiles], device=flat.device))
    stats = {"mean": flat.mean(), "std": flat.std(unbiased=False)}
    stats.update({f"p{p:g}": v for p, v in zip(percentiles, q, strict=True)})
    return {k: float(v) for k, v in stats.items()}


def dead_fraction(out: torch.Tensor) -> float:
    """Fraction of units (channels of a conv map, features of a vector) that are <= 0 for every
    sample and position of the batch: a ReLU unit that passes no gradient for this batch."""
    alive = (out.detach() > 0).transpose(0, 1).reshape(out.shape[1], -1).any(dim=1)
    return float(1.0 - alive.float().mean())


class ActivationStats(L.Callback):
    """Per conv/linear layer: mean, std and percentiles of its pre-activation output (Wx + b);
    per ReLU: the fraction of dead units. Histograms of the pre-activations every
    `histogram_every_n_steps` (0: never)."""

    def __init__(
        self,
        every_n_steps: NonNegativeInt = 50,
        histogram_every_n_steps: NonNegativeInt = 0,
        percentiles: Percentiles = PERCENTILES,
    ) -> None:
        self.every_n_steps, self.histogram_every_n_steps = every_n_steps, histogram_every_n_steps
        self.percentiles = tuple(percentiles)
        self._handles: list[Any] = []
        self._scalars: dict[str, float] = {}
        self._histograms: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        step = trainer.global_step
        scalars, hists = due(step, self.every_n_steps), due(step, self.histogram_every_n_steps)
        if not (scalars or hists):
            return
        seen: set[str] = set()  # only the training forward: later forwards (probes) are ignored

        def record(name: str, kind: str):
            def hook(module, inputs, output):
                if (name, kind) in seen:
                    return
                seen.add((name, kind))
                if kind == "dead":
                    self._scalars[f"dead_relu/{name}"] = dead_fraction(output)
                    return
                if scalars:
                    stats = tensor_stats(output, self.percentiles)
                    self._scalars.update({f"activations/{name}/{k}": v for k, v in stats.items()})
                if hists:
                    self._histograms[f"activations/{name}"] = output.detach()

            return hook

        for name, m in pl_module.named_modules():
            if isinstance(m, MEASURED_LAYERS):
                self._handles.append(m.register_forward_hook(record(name, "stats")))
            elif isinstance(m, nn.ReLU) and scalars:
                self._handles.append(m.register_forward_hook(record(name, "dead")))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        self._remove()
        step = trainer.global_step - 1  # the step these activations belong to
        if self._scalars:
            log_scalars(trainer, self._scalars, step)
        if self._histograms:
            log_histograms(trainer, self._histograms, step)
        self._scalars, self._histograms = {}, {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []
