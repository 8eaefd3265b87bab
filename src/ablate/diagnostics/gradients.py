"""Gradient and weight health per layer: norms, update ratios, vanishing/exploding gradients."""

from __future__ import annotations

import lightning as L
import torch

from ablate.diagnostics.base import due, log_histograms, log_scalars, measured_layers
from ablate.schema.fields import NonNegativeInt


class GradientHealth(L.Callback):
    """Per conv/linear layer: gradient L2 norm, weight L2 norm and the update-to-weight ratio
    ||w_after - w_before|| / ||w_before|| of the optimizer step (decay included); histograms of
    weights and gradients every `histogram_every_n_steps` (0: never)."""

    def __init__(
        self, every_n_steps: NonNegativeInt = 50, histogram_every_n_steps: NonNegativeInt = 0
    ) -> None:
        self.every_n_steps, self.histogram_every_n_steps = every_n_steps, histogram_every_n_steps
        self._before: dict[str, torch.Tensor] = {}
        self._step: int | None = None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        scalars, hists = due(step, self.every_n_steps), due(step, self.histogram_every_n_steps)
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
            log_scalars(trainer, metrics, step)
            # Snapshot before the module's own hook applies decoupled decay (callbacks run first).
            self._before = {name: w.detach().clone() for name, w in weights.items()}
            self._step = step
        if hists:
            tensors = {f"weights/{n}": w for n, w in weights.items()}
            tensors.update({f"grads/{n}": w.grad for n, w in weights.items() if w.grad is not None})
            log_histograms(trainer, tensors, step)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if not self._before:
            return
        weights = {f"{n}.weight": m.weight for n, m in measured_layers(pl_module).items()}
        ratios = {
            f"update_ratio/{name}": float((weights[name].detach() - w0).norm() / w0.norm().clamp_min(1e-12))
            for name, w0 in self._before.items()
        }  # fmt: skip
        log_scalars(trainer, ratios, self._step)
        self._before, self._step = {}, None
