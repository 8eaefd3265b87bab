"""Regularization (conf/reg): weight penalties, decoupled weight decay, max-norm, dropout rates,
label smoothing.

One `Reg` holds every key of a conf/reg/<option>.yaml. Penalties, decay and max-norm touch conv/linear
weights only (dim >= 2), never biases or normalization parameters; the model reads the dropout rates.
"""

from __future__ import annotations

import torch
from pydantic import ConfigDict
from pydantic.dataclasses import dataclass
from torch import nn

from ablate.schema.fields import NonNegative, OptionalPositive, OptionalProbability, Probability
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


@dataclass(frozen=True, config=ConfigDict(strict=True, allow_inf_nan=False))
class Reg:
    """The regularizers of a run; every field off (0) by default and each combines with the others.

    Its fields' types are the allowed ranges: the config check reads them, and building checks them.
    """

    l1: NonNegative = 0.0  # loss += l1 * sum|w|
    l2: NonNegative = 0.0  # loss += l2 * sum w^2
    weight_decay: NonNegative = (
        0.0  # decoupled: w <- w - lr * weight_decay * w (Loshchilov & Hutter 2019)
    )
    dropout: Probability = (
        0.0  # inverted Dropout before each linear layer of a head (Srivastava et al. 2014)
    )
    dropout2d: Probability = (
        0.0  # Dropout2d after each conv block: whole channels (Tompson et al. 2015)
    )
    label_smoothing: Probability = 0.0  # training loss only (Szegedy et al. 2016, Sec. 7)
    # null = off: keys added later, so earlier runs' identities (nulls dropped) hold
    input_dropout: OptionalProbability = None  # Dropout on the network's input (Srivastava: 0.2)
    max_norm: OptionalPositive = None  # ||incoming weights of a unit||_2 <= c after each step

    def __post_init__(self) -> None:
        if self.input_dropout is None:  # the model reads a rate: null means no input dropout
            object.__setattr__(self, "input_dropout", 0.0)

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

    def constrain_(self, weights: list[torch.Tensor]) -> torch.Tensor | None:
        """Max-norm (Srivastava et al. 2014, Sec. 5.1): rescale each unit's incoming weights to norm <= c.

        A unit's incoming weight vector is a row of a Linear weight, or an output channel's flattened
        kernel of a Conv2d. Rows with norm <= c are multiplied by exactly 1, so they stay bitwise equal.
        Returns how many rows were rescaled (a tensor on the weights' device: no host sync), or None
        when max-norm is off.
        """
        if self.max_norm is None:
            return None
        projected = torch.zeros((), dtype=torch.long, device=weights[0].device if weights else None)
        with torch.no_grad():
            for w in weights:
                norms = torch.linalg.vector_norm(w.flatten(1), dim=1)
                projected += (norms > self.max_norm).sum()
                scale = (self.max_norm / norms).clamp_(max=1.0)  # a zero row: inf -> 1
                w.mul_(scale.view(-1, *(1,) * (w.dim() - 1)))
        return projected
