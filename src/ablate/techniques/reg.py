"""Regularization (conf/reg): weight penalties, decoupled weight decay, dropout rates, label smoothing.

One `Reg` holds every key of a conf/reg/<option>.yaml. Penalties and decay touch conv/linear weights
only (dim >= 2), never biases or normalization parameters; the model reads the dropout rates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ablate.techniques.norm import NORM_TYPES


def split_decay(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter], list[str]]:
    """Split parameters into penalized weights (conv/linear, dim >= 2) and the rest (biases, norms).

    Returns (weights, others, names of the weights).
    """
    weights, others, names = [], [], []
    for mod_name, module in model.named_modules():
        for p_name, p in module.named_parameters(recurse=False):
            if not p.requires_grad:
                continue
            if p.dim() >= 2 and not isinstance(module, NORM_TYPES):
                weights.append(p)
                names.append(f"{mod_name}.{p_name}" if mod_name else p_name)
            else:
                others.append(p)
    return weights, others, names


def penalty(weights: list[torch.Tensor], l1: float = 0.0, l2: float = 0.0) -> torch.Tensor:
    """l1 * sum|w| + l2 * sum w^2 over the given weights (a scalar; zero when both are 0)."""
    device = weights[0].device if weights else None
    total = torch.zeros((), device=device)
    if l1:
        total = total + l1 * sum(w.abs().sum() for w in weights)
    if l2:
        total = total + l2 * sum(w.pow(2).sum() for w in weights)
    return total


_RANGES = {  # key -> (test, what is allowed)
    "l1": (lambda v: v >= 0, "a number >= 0"),
    "l2": (lambda v: v >= 0, "a number >= 0"),
    "weight_decay": (lambda v: v >= 0, "a number >= 0"),
    "dropout": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "dropout2d": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
    "label_smoothing": (lambda v: 0 <= v < 1, "a number in [0, 1)"),
}


@dataclass(frozen=True)
class Reg:
    """The regularizers of a run; every field off (0) by default and each combines with the others."""

    l1: float = 0.0  # loss += l1 * sum|w|
    l2: float = 0.0  # loss += l2 * sum w^2
    weight_decay: float = (
        0.0  # decoupled: w <- w - lr * weight_decay * w (Loshchilov & Hutter 2019)
    )
    dropout: float = (
        0.0  # inverted Dropout before each linear layer of a head (Srivastava et al. 2014)
    )
    dropout2d: float = 0.0  # Dropout2d after each conv block: whole channels (Tompson et al. 2015)
    label_smoothing: float = 0.0  # training loss only (Szegedy et al. 2016, Sec. 7)

    def __post_init__(self) -> None:
        for key, (test, allowed) in _RANGES.items():
            v = getattr(self, key)
            ok = isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
            if not (ok and test(v)):
                raise ValueError(f"reg.{key}={v!r} is not allowed: {allowed}")

    def criterion(self) -> nn.Module:
        """The training loss: cross-entropy, label-smoothed if asked (val/test stay plain)."""
        return nn.CrossEntropyLoss(label_smoothing=self.label_smoothing)

    def penalty(self, weights: list[torch.Tensor]) -> torch.Tensor:
        """The explicit penalty added to the training loss."""
        return penalty(weights, self.l1, self.l2)

    def param_groups(
        self, weights: list[nn.Parameter], others: list[nn.Parameter]
    ) -> list[dict[str, object]]:
        """Optimizer groups: the weights carry the decoupled decay, biases and norms are exempt."""
        groups = [
            {"name": "weights", "params": weights, "decoupled_weight_decay": self.weight_decay},
            {"name": "biases_norms", "params": others, "decoupled_weight_decay": 0.0},
        ]
        return [g for g in groups if g["params"]]

    @staticmethod
    def decay_(optimizer: torch.optim.Optimizer) -> None:
        """Decoupled weight decay, w <- w * (1 - lr * wd), outside the gradient (not scaled by Adam)."""
        with torch.no_grad():
            for group in optimizer.param_groups:
                wd = group.get("decoupled_weight_decay", 0.0)
                if wd:
                    torch._foreach_mul_(group["params"], 1.0 - group["lr"] * wd)
