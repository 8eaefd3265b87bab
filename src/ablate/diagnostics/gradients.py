"""Gradient and weight health per layer: norms, update ratios, vanishing/exploding gradients."""

from __future__ import annotations

import math
from typing import Any

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
        self._ratios: list[float] = []  # log10 ||grad first layer|| / ||grad last layer||, per look

    def state_dict(self) -> dict[str, Any]:
        return {"ratios": self._ratios}  # a resumed run keeps the steps it measured

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._ratios = list(state_dict.get("ratios", []))

    def summary(self) -> dict[str, Any]:
        """The first layer's gradient norm over the last layer's, log10, averaged over the steps it
        measured: far below 0 when gradients vanish towards the input, far above when they explode."""
        if not self._ratios:
            return {}
        mean = sum(self._ratios) / len(self._ratios)
        absolute = sum(abs(r) for r in self._ratios) / len(self._ratios)
        return {"metrics": {"grads/first_over_last_log10": mean,
                            "grads/first_over_last_log10_abs": absolute}}  # fmt: skip

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
            norms = []
            for name, w in weights.items():
                g = w.grad
                metrics[f"weights/{name}/norm"] = float(w.detach().norm())
                if g is not None:
                    gn = float(g.detach().norm())
                    metrics[f"grads/{name}/norm"] = gn
                    norms.append(gn)
                    total += gn**2
            if len(norms) >= 2 and norms[0] > 0 and norms[-1] > 0:
                self._ratios.append(math.log10(norms[0] / norms[-1]))
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
