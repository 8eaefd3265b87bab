"""Blocks the networks share: activations by name, the conv block, the dense (linear) block."""

from __future__ import annotations

from torch import nn

from ablate.schema.fields import one_of
from ablate.techniques.init import GAINS
from ablate.techniques.norm import Norm

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
    "sigmoid": nn.Sigmoid,
}

Activation = one_of(*sorted(set(ACTIVATIONS) & set(GAINS)))  # every one has an init gain


def activation_layer(name: str) -> nn.Module:
    """A fresh activation module by name."""
    if name not in ACTIVATIONS:
        raise ValueError(f"model.activation={name!r}: allowed values are {sorted(ACTIVATIONS)}")
    return ACTIVATIONS[name]()


def conv_block(
    c_in: int,
    c_out: int,
    norm: Norm,
    activation: str,
    pool: bool,
    dropout2d: float,
    convs: int = 1,
) -> nn.Sequential:
    """`convs` x [conv 3x3, norm, activation] (norm before or after the activation), optional 2x2 max-pool, Dropout2d."""
    bias = not norm.bias_redundant
    layers: list[nn.Module] = []
    for i in range(convs):
        layers.append(nn.Conv2d(c_in if i == 0 else c_out, c_out, 3, padding=1, bias=bias))
        act_and_norm = [activation_layer(activation), norm(c_out)]
        if norm.placement == "before_act":
            act_and_norm.reverse()
        layers += [m for m in act_and_norm if not isinstance(m, nn.Identity)]
    if pool:
        layers.append(nn.MaxPool2d(2))
    if dropout2d > 0:
        layers.append(nn.Dropout2d(dropout2d))
    return nn.Sequential(*layers)


def hidden_norm_and_activation(features: int, norm: Norm, activation: str) -> list[nn.Module]:
    """[norm, activation] for the head's hidden layer, in the order norm.placement says."""
    layers = [norm.for_vectors(features), activation_layer(activation)]
    layers = layers if norm.placement == "before_act" else layers[::-1]
    return [m for m in layers if not isinstance(m, nn.Identity)]


def dense_block(
    f_in: int, f_out: int, norm: Norm, activation: str, dropout: float = 0.0
) -> list[nn.Module]:
    """[Linear, norm, activation] (norm before or after the activation), then Dropout if dropout > 0."""
    layers: list[nn.Module] = [nn.Linear(f_in, f_out, bias=not norm.bias_redundant)]
    layers += hidden_norm_and_activation(f_out, norm, activation)
    if dropout > 0:
        layers.append(nn.Dropout(dropout))
    return layers


def input_batchnorm(channels: int, on: bool | None) -> list[nn.Module]:
    """[BatchNorm2d over the raw input's channels] when on, else []: the lecture notes' BatchNorm on
    the raw input (per channel over the batch and the pixels, learned scale and shift)."""
    return [nn.BatchNorm2d(channels)] if on else []
