"""Loss-landscape probes along the gradient (Santurkar et al. 2018, Fig. 4)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import lightning as L
import numpy as np
import torch
from torch import nn

from ablate.diagnostics.base import due, log_scalars
from ablate.schema.fields import NonNegativeInt, Positive, PositiveInt


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
        every_n_steps: NonNegativeInt = 100,
        min_factor: Positive = 0.5,
        max_factor: Positive = 4.0,
        points: PositiveInt = 4,
    ) -> None:
        if min_factor > max_factor:
            raise ValueError(
                f"diagnostics.landscape.min_factor={min_factor} > max_factor={max_factor}: "
                "swap them"
            )
        self.every_n_steps = every_n_steps
        self.factors = np.geomspace(min_factor, max_factor, points).tolist()
        self.records: list[dict[str, float]] = []
        self._batch: Any = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        self._batch = batch if due(trainer.global_step, self.every_n_steps) else None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        if self._batch is None:
            return
        x, y = self._batch
        self._batch = None
        lr = float(optimizer.param_groups[0]["lr"])
        record = {"step": trainer.global_step, "lr": lr, **probe(pl_module, x, y, lr, self.factors)}
        self.records.append(record)
        log_scalars(trainer, {f"landscape/{k}": v for k, v in record.items() if k != "step"},
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
