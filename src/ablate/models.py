"""The networks: `cnn` (conv blocks + MLP head) and `plain_deep` (N identical 3x3 convs, no shortcuts)."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ablate.init import apply_init
from ablate.norm import Norm
from ablate.norm import none as no_norm
from ablate.speed import apply_speed, split_speed_keys

log = logging.getLogger(__name__)

ACTIVATIONS: dict[str, type[nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": nn.LeakyReLU,
    "gelu": nn.GELU,
    "silu": nn.SiLU,
    "elu": nn.ELU,
    "tanh": nn.Tanh,
}


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
    # A norm with a learned shift right after the conv makes the conv bias redundant.
    bias = norm.name == "none" or norm.placement == "after_act"
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


class _AsMap(nn.Module):
    """Applies a conv-block norm to (N, C) features as (N, C, 1, 1) maps (BatchNorm: per feature)."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x):
        return self.norm(x[:, :, None, None]).flatten(1)


def hidden_norm_and_activation(features: int, norm: Norm, activation: str) -> list[nn.Module]:
    """[norm, activation] for the head's hidden layer, in the order norm.placement says."""
    if norm.name == "none":
        return [activation_layer(activation)]
    if norm.name == "instance":
        raise ValueError(
            "model.head_norm=true with norm=instance: a feature vector has no spatial extent to "
            "normalize over; use norm=batch, layer or group, or model.head_norm=false"
        )
    layers = [_AsMap(norm(features)), activation_layer(activation)]
    return layers if norm.placement == "before_act" else layers[::-1]


class CNN(nn.Module):
    """Conv blocks with the given channel widths, then flatten -> hidden -> classes."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        channels: list[int] = (32, 64),
        hidden: int = 128,
        activation: str = "relu",
        pool: bool = True,
        norm: Norm | None = None,
        dropout: float = 0.0,
        dropout2d: float = 0.0,
        head_norm: bool = False,
        convs: int = 1,
    ) -> None:
        super().__init__()
        norm = norm or no_norm()
        blocks, c_prev, (h, w) = [], in_channels, image_size
        for c in channels:
            blocks.append(conv_block(c_prev, c, norm, activation, pool, dropout2d, convs))
            c_prev = c
            if pool:
                h, w = h // 2, w // 2
        if h < 1 or w < 1:
            raise ValueError(
                f"model.channels has {len(channels)} pooled blocks, too many for {image_size} images"
            )
        self.features = nn.Sequential(*blocks)
        head: list[nn.Module] = [nn.Flatten()]
        features = c_prev * h * w
        if hidden:
            head += [nn.Linear(features, hidden, bias=not head_norm or norm.name == "none")]
            head += hidden_norm_and_activation(hidden, norm if head_norm else no_norm(), activation)
            features = hidden
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(features, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(x))


class PlainDeep(nn.Module):
    """`depth` 3x3 conv layers of equal width without shortcuts (He et al. 2015's plain nets), GAP, linear."""

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        depth: int = 20,
        width: int = 16,
        activation: str = "relu",
        pool_stages: int = 2,
        norm: Norm | None = None,
        dropout: float = 0.0,
        dropout2d: float = 0.0,
    ) -> None:
        super().__init__()
        norm = norm or no_norm()
        # Max-pool after evenly spaced layers so deep nets stay affordable on CPU.
        pool_after = {round(depth * (k + 1) / (pool_stages + 1)) - 1 for k in range(pool_stages)}
        layers, c_prev = [], in_channels
        for i in range(depth):
            layers.append(conv_block(c_prev, width, norm, activation, i in pool_after, dropout2d))
            c_prev = width
        self.features = nn.Sequential(*layers)
        head: list[nn.Module] = [nn.AdaptiveAvgPool2d(1), nn.Flatten()]
        if dropout > 0:
            head.append(nn.Dropout(dropout))
        head.append(nn.Linear(width, num_classes))
        self.head = nn.Sequential(*head)

    def forward(self, x):
        return self.head(self.features(x))


def build_model(
    cfg: DictConfig, in_channels: int, num_classes: int, image_size: tuple[int, int]
) -> nn.Module:
    """The network from cfg.model, cfg.norm, cfg.reg (dropout) and cfg.init."""
    arch, speed = split_speed_keys(OmegaConf.to_container(cfg.model, resolve=True))
    model = instantiate(arch)(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=tuple(image_size),
        norm=instantiate(cfg.norm),
        dropout=cfg.reg.dropout,
        dropout2d=cfg.reg.dropout2d,
    )
    touched = apply_init(model, instantiate(cfg.init), cfg.model.activation)
    log.info("init: %d conv/linear layers re-initialized", len(touched))
    return apply_speed(model, **speed)
