"""`build_model`: a conf/model network built with the chosen norm, dropout rates and init."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ablate.models.speed import apply_speed, split_speed_keys
from ablate.techniques.init import apply_init
from ablate.techniques.reg import Reg

log = logging.getLogger(__name__)
# What build_model passes every network itself (the rest of its arguments are model.* keys).
NET_ARGS = (
    "in_channels",
    "num_classes",
    "image_size",
    "norm",
    "dropout",
    "dropout2d",
    "input_dropout",
)


def build_model(
    model: DictConfig,
    norm: DictConfig,
    reg: DictConfig,
    init: DictConfig,
    *,
    in_channels: int,
    num_classes: int,
    image_size: tuple[int, int],
) -> nn.Module:
    """The network of the model node, with the norm, the dropout rates of reg, and the init applied."""
    arch, speed = split_speed_keys(OmegaConf.to_container(model, resolve=True))
    rates: Reg = instantiate(reg)
    net = instantiate(arch)(
        in_channels=in_channels,
        num_classes=num_classes,
        image_size=tuple(image_size),
        norm=instantiate(norm),
        dropout=rates.dropout,
        dropout2d=rates.dropout2d,
        input_dropout=rates.input_dropout,
    )
    touched = apply_init(net, instantiate(init), arch["activation"])
    log.info("init: %d conv/linear layers re-initialized", len(touched))
    return apply_speed(net, **speed)
