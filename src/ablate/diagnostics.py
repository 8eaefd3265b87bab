"""Diagnostics callbacks (`conf/diagnostics/<option>.yaml`): activation statistics, gradient and
weight health, and the loss-landscape probes of Santurkar et al. 2018.

Each callback measures only every `every_n_steps` optimizer steps and writes straight to the
run's loggers (scalars) and TensorBoard (histograms), so the steps in between cost nothing and the
per-layer numbers stay out of `summary.json`'s final metrics. None of them changes training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torch import nn

MEASURED_LAYERS = (nn.Conv2d, nn.Linear)
PERCENTILES = (15, 50, 85)  # Ioffe & Szegedy 2015, Fig. 1: the {15, 50, 85}th percentiles
_MAX_QUANTILE_ELEMENTS = 1 << 20  # torch.quantile's input limit is 2**24; a strided sample suffices


def _due(step: int, every: int) -> bool:
    return every > 0 and step % every == 0


def _log_scalars(trainer: L.Trainer, metrics: dict[str, float], step: int) -> None:
    for lg in trainer.loggers:
        lg.log_metrics(metrics, step=step)


def _log_histograms(trainer: L.Trainer, tensors: dict[str, torch.Tensor], step: int) -> None:
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            for tag, t in tensors.items():
                lg.experiment.add_histogram(tag, t.detach().float().cpu(), global_step=step)


def measured_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The conv and linear layers of a network by module name."""
    return {name: m for name, m in net.named_modules() if isinstance(m, MEASURED_LAYERS)}


def tensor_stats(x: torch.Tensor, percentiles: Sequence[float] = PERCENTILES) -> dict[str, float]:
    """Mean, std and the given percentiles of all elements of x."""
    flat = x.detach().float().flatten()
    stride = max(1, math.ceil(flat.numel() / _MAX_QUANTILE_ELEMENTS))
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
        every_n_steps: int = 50,
        histogram_every_n_steps: int = 0,
        percentiles: Sequence[float] = PERCENTILES,
    ) -> None:
        self.every_n_steps, self.histogram_every_n_steps = every_n_steps, histogram_every_n_steps
        self.percentiles = tuple(percentiles)
        self._handles: list[Any] = []
        self._scalars: dict[str, float] = {}
        self._histograms: dict[str, torch.Tensor] = {}

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        step = trainer.global_step
        scalars, hists = _due(step, self.every_n_steps), _due(step, self.histogram_every_n_steps)
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
            _log_scalars(trainer, self._scalars, step)
        if self._histograms:
            _log_histograms(trainer, self._histograms, step)
        self._scalars, self._histograms = {}, {}

    def on_train_end(self, trainer, pl_module) -> None:
        self._remove()

    def _remove(self) -> None:
        for h in self._handles:
            h.remove()
        self._handles = []


class GradientHealth(L.Callback):
    """Per conv/linear layer: gradient L2 norm, weight L2 norm and the update-to-weight ratio
    ||w_after - w_before|| / ||w_before|| of the optimizer step (decay included); histograms of
    weights and gradients every `histogram_every_n_steps` (0: never)."""

    def __init__(self, every_n_steps: int = 50, histogram_every_n_steps: int = 0) -> None:
        self.every_n_steps, self.histogram_every_n_steps = every_n_steps, histogram_every_n_steps
        self._before: dict[str, torch.Tensor] = {}
        self._step: int | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        scalars, hists = _due(step, self.every_n_steps), _due(step, self.histogram_every_n_steps)
        if not (scalars or hists):
            return
        weights = {
            f"{name}.weight": m.weight
            for name, m in measured_layers(pl_module).items()
            if m.weight.requires_grad
        }
        if scalars:
            metrics: dict[str, float] = {}
            total = 0.0
            for name, w in weights.items():
                g = w.grad
                metrics[f"weights/{name}/norm"] = float(w.detach().norm())
                if g is not None:
                    gn = float(g.detach().norm())
                    metrics[f"grads/{name}/norm"] = gn
                    total += gn**2
            all_grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            metrics["grads/total_norm"] = float(
                torch.linalg.vector_norm(torch.stack([g.detach().norm() for g in all_grads]))
            ) if all_grads else 0.0  # fmt: skip
            _log_scalars(trainer, metrics, step)
            # Snapshot before the module's own hook applies decoupled decay (callbacks run first).
            self._before = {name: w.detach().clone() for name, w in weights.items()}
            self._step = step
        if hists:
            tensors = {f"weights/{n}": w for n, w in weights.items()}
            tensors.update({f"grads/{n}": w.grad for n, w in weights.items() if w.grad is not None})
            _log_histograms(trainer, tensors, step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._before:
            return
        weights = {f"{n}.weight": m.weight for n, m in measured_layers(pl_module).items()}
        ratios = {
            f"update_ratio/{name}": float((weights[name].detach() - w0).norm() / w0.norm().clamp_min(1e-12))
            for name, w0 in self._before.items()
        }  # fmt: skip
        _log_scalars(trainer, ratios, self._step)
        self._before, self._step = {}, None


class LandscapeProbe(L.Callback):
    """Santurkar et al. 2018, Fig. 4: how the loss and its gradient change along the gradient.

    Every `every_n_steps`, on the training batch at the current parameters theta, with g the
    gradient there and eta = factor * lr for each factor on the grid, it computes
    L(theta - eta*g) and g' = grad L(theta - eta*g), then logs
      landscape/loss_min, loss_max   (the "loss landscape" band),
      landscape/grad_diff_min, max   (||g - g'||: "gradient predictiveness"),
      landscape/beta_smoothness      (max over the grid of ||g - g'|| / ||eta*g||).
    The loss is the training objective (cross-entropy + L1/L2 penalty). Normalization stays in
    training mode (batch statistics, as in the step itself), but parameters, buffers (BN running
    statistics) and the RNG state are restored, so training goes on exactly as without the probe.
    Every point on the grid sees the same random state (the same dropout masks and BN noise).
    """

    def __init__(
        self,
        every_n_steps: int = 100,
        min_factor: float = 0.5,
        max_factor: float = 4.0,
        points: int = 4,
    ) -> None:
        if not (0 < min_factor <= max_factor and points >= 1):
            raise ValueError(
                f"LandscapeProbe needs 0 < min_factor <= max_factor and points >= 1, got "
                f"min_factor={min_factor}, max_factor={max_factor}, points={points}"
            )
        self.every_n_steps = every_n_steps
        self.factors = np.geomspace(min_factor, max_factor, points).tolist()
        self.records: list[dict[str, float]] = []
        self._batch: Any = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch = batch if _due(trainer.global_step, self.every_n_steps) else None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._batch is None:
            return
        x, y = self._batch
        self._batch = None
        lr = float(optimizer.param_groups[0]["lr"])
        record = {"step": trainer.global_step, "lr": lr, **probe(pl_module, x, y, lr, self.factors)}
        self.records.append(record)
        _log_scalars(trainer, {f"landscape/{k}": v for k, v in record.items() if k != "step"},
                     trainer.global_step)  # fmt: skip

    def state_dict(self) -> dict[str, Any]:
        return {"records": self.records}  # a resumed run keeps its probe history

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.records = list(state_dict.get("records", []))

    def summary(self) -> dict[str, Any]:
        """Means over the run's probes (for summary.json's metrics) and the probe series."""
        if not self.records:
            return {}
        keys = [k for k in self.records[0] if k not in ("step", "lr")]
        means = {f"landscape/{k}_mean": float(np.mean([r[k] for r in self.records])) for k in keys}
        return {"metrics": means, "series": {"landscape": self.records}}


def _objective(module: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The training loss: the module's own objective when it has one, else cross-entropy."""
    if hasattr(module, "objective"):
        return module.objective(x, y)[0]
    return nn.functional.cross_entropy(module(x), y)


def probe(
    module: nn.Module, x: torch.Tensor, y: torch.Tensor, lr: float, factors: Sequence[float]
) -> dict[str, float]:
    """The landscape numbers at the module's current parameters; leaves it exactly as it was."""
    params = [p for p in module.parameters() if p.requires_grad]
    saved = [p.detach().clone() for p in params]
    buffers = [b.detach().clone() for b in module.buffers()]
    devices = sorted({p.device.index for p in params if p.device.type == "cuda"})
    losses, diffs, betas = [], [], []
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad():
            cpu_state = torch.get_rng_state()
            cuda_states = [torch.cuda.get_rng_state(d) for d in devices]

            def loss_and_grad() -> tuple[float, list[torch.Tensor]]:
                torch.set_rng_state(cpu_state)
                for d, s in zip(devices, cuda_states, strict=True):
                    torch.cuda.set_rng_state(s, d)
                loss = _objective(module, x, y)
                grads = torch.autograd.grad(loss, params, allow_unused=True)
                grads = [
                    torch.zeros_like(p) if g is None else g
                    for p, g in zip(params, grads, strict=True)
                ]
                return float(loss.detach()), grads

            _, g = loss_and_grad()
            g_norm = float(torch.linalg.vector_norm(torch.stack([t.norm() for t in g])))
            for factor in factors:
                eta = factor * lr
                with torch.no_grad():
                    for p, p0, gi in zip(params, saved, g, strict=True):
                        p.copy_(p0 - eta * gi)
                loss, g2 = loss_and_grad()
                diff = float(
                    torch.linalg.vector_norm(
                        torch.stack([(a - b).norm() for a, b in zip(g, g2, strict=True)])
                    )
                )
                losses.append(loss)
                diffs.append(diff)
                betas.append(diff / (eta * g_norm) if eta * g_norm > 0 else math.nan)
    finally:
        with torch.no_grad():
            for p, p0 in zip(params, saved, strict=True):
                p.copy_(p0)
            for b, b0 in zip(module.buffers(), buffers, strict=True):
                b.copy_(b0)
    return {
        "loss_min": min(losses),
        "loss_max": max(losses),
        "loss_range": max(losses) - min(losses),
        "grad_diff_min": min(diffs),
        "grad_diff_max": max(diffs),
        "beta_smoothness": max(betas),
        "grad_norm": g_norm,
    }


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
