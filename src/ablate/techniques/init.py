"""Weight initializations: one function per `conf/init/<option>.yaml`, applied to conv/linear weights."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Annotated, Literal

import torch
from pydantic import Field
from torch import nn

from ablate.schema.fields import Number, Positive, allowed, one_of

# Gain = the factor that keeps activation variance constant through the nonlinearity
# (He et al. 2015; torch.nn.init.calculate_gain). GELU/SiLU/ELU have no closed form and
# behave like ReLU for positive inputs, so they take ReLU's sqrt(2).
GAINS: dict[str, float] = {
    "linear": 1.0,
    "relu": math.sqrt(2.0),
    "leaky_relu": nn.init.calculate_gain("leaky_relu", 0.01),
    "tanh": nn.init.calculate_gain("tanh"),  # 5/3
    "sigmoid": nn.init.calculate_gain("sigmoid"),  # 1
    "gelu": math.sqrt(2.0),
    "silu": math.sqrt(2.0),
    "elu": math.sqrt(2.0),
}

InitFn = Callable[[torch.Tensor, str], None]
Distribution = one_of("normal", "uniform")
Gain = Annotated[Literal["auto"] | Annotated[float, Field(gt=0)], allowed("auto or a number > 0")]


def gain_for(activation: str) -> float:
    """The variance-preserving gain for an activation name."""
    if activation not in GAINS:
        raise ValueError(f"no init gain for activation {activation!r}; known: {sorted(GAINS)}")
    return GAINS[activation]


def _fans(weight: torch.Tensor) -> tuple[int, int]:
    receptive = weight[0][0].numel() if weight.dim() > 2 else 1
    return weight.size(1) * receptive, weight.size(0) * receptive


def _sample(weight: torch.Tensor, std: float, distribution: str) -> None:
    if distribution == "normal":
        nn.init.normal_(weight, 0.0, std)
    elif distribution == "uniform":
        bound = math.sqrt(3.0) * std  # Var(U(-b, b)) = b^2 / 3
        nn.init.uniform_(weight, -bound, bound)
    else:
        raise ValueError(f"init.distribution={distribution!r}: allowed values are normal, uniform")


def he(
    weight: torch.Tensor,
    activation: str,
    distribution: Distribution = "normal",
    mode: one_of("fan_in", "fan_out") = "fan_in",
) -> None:
    """He/Kaiming (He et al. 2015): std = gain / sqrt(fan), gain from the activation."""
    fan_in, fan_out = _fans(weight)
    fan = {"fan_in": fan_in, "fan_out": fan_out}[mode]
    _sample(weight, gain_for(activation) / math.sqrt(fan), distribution)


def xavier(
    weight: torch.Tensor, activation: str, distribution: Distribution = "normal", gain: Gain = 1.0
) -> None:
    """Xavier/Glorot (Glorot & Bengio 2010): std = gain * sqrt(2 / (fan_in + fan_out))."""
    g = gain_for(activation) if gain == "auto" else float(gain)
    fan_in, fan_out = _fans(weight)
    _sample(weight, g * math.sqrt(2.0 / (fan_in + fan_out)), distribution)


def lecun(weight: torch.Tensor, activation: str, distribution: Distribution = "normal") -> None:
    """LeCun (LeCun et al. 1998): std = 1 / sqrt(fan_in), the SELU/tanh-regime choice."""
    fan_in, _ = _fans(weight)
    _sample(weight, 1.0 / math.sqrt(fan_in), distribution)


def orthogonal(weight: torch.Tensor, activation: str, gain: Gain = "auto") -> None:
    """Orthogonal (Saxe et al. 2014): a (flattened) orthogonal matrix scaled by the gain."""
    g = gain_for(activation) if gain == "auto" else float(gain)
    nn.init.orthogonal_(weight, gain=g)


def gaussian(weight: torch.Tensor, activation: str, std: Positive = 0.01) -> None:
    """N(0, std^2) whatever the layer's size: the "small random Gaussian values" of papers before
    variance-preserving inits (Ioffe & Szegedy 2015, Sec. 4.1, state no std; Krizhevsky et al.
    2012 used 0.01). Unlike He or Xavier, the activations' scale shrinks or grows with width."""
    nn.init.normal_(weight, 0.0, std)


def constant(weight: torch.Tensor, activation: str, value: Number = 0.01) -> None:
    """Every weight the same value: all units of a layer stay identical (the symmetry problem)."""
    nn.init.constant_(weight, value)


def default(weight: torch.Tensor, activation: str) -> None:
    """PyTorch's own init (kaiming_uniform with a=sqrt(5)), left as the layer made it."""


def apply_init(model: nn.Module, init_fn: InitFn | None, activation: str) -> list[str]:
    """Initialize every conv/linear weight with `init_fn` and zero its bias; returns the names touched.

    The classifier's last layer feeds no activation, so it gets the linear gain.
    """
    if init_fn is None or getattr(init_fn, "func", init_fn) is default:
        return []
    layers = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)]
    touched = []
    for i, (name, module) in enumerate(layers):
        act = "linear" if i == len(layers) - 1 else activation
        with torch.no_grad():
            init_fn(module.weight, act)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        touched.append(name)
    return touched
