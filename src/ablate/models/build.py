"""The networks: `cnn` (conv blocks + MLP head) and `plain_deep` (N identical 3x3 convs, no shortcuts)."""

from __future__ import annotations

import logging

from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf
from torch import nn

from ablate.models.speed import apply_speed, split_speed_keys
from ablate.techniques.init import apply_init

log = logging.getLogger(__name__)


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
