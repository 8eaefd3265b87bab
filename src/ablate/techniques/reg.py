"""Explicit weight penalties (L1, L2) and the parameter split used for decoupled weight decay."""

from __future__ import annotations

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
