"""Diagnostics callbacks (`conf/diagnostics/<option>.yaml`): activation statistics, gradient and
weight health, and the loss-landscape probes of Santurkar et al. 2018.

Each callback measures only every `every_n_steps` optimizer steps and writes straight to the
run's loggers (scalars) and TensorBoard (histograms), so the steps in between cost nothing and the
per-layer numbers stay out of `summary.json`'s final metrics. None of them changes training.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

MEASURED_LAYERS = (nn.Conv2d, nn.Linear)
PERCENTILES = (15, 50, 85)  # Ioffe & Szegedy 2015, Fig. 1: the {15, 50, 85}th percentiles
MAX_QUANTILE_ELEMENTS = 1 << 20  # torch.quantile's input limit is 2**24; a strided sample suffices


def due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def log_scalars(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    for lg in trainer.loggers:
        lg.log_metrics(metrics, step=step)


def log_histograms(trainer: L.Trainer, tensors: dict[str, torch.Tensor], step: int) -> None:
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            for tag, t in tensors.items():
                lg.experiment.add_histogram(tag, t.detach().float().cpu(), global_step=step)


def measured_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers of a network by module name."""
    return {name: m for name, m in net.named_modules() if isinstance(m, MEASURED_LAYERS)}


def collect(callbacks: Sequence[L.Callback]) -> tuple[dict[str, float], dict[str, Any]]:
    """Summary metrics and series from the diagnostics callbacks that have any."""
    metrics: dict[str, float] = {}
    series: dict[str, Any] = {}
    for cb in callbacks:
        if hasattr(cb, "summary"):
            found = cb.summary()
            metrics.update(found.get("metrics", {}))
            series.update(found.get("series", {}))
    return metrics, series
