"""Speed switches of the net that do not change what it computes: `model.channels_last`, `model.compile`."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from ablate.schema.fields import Bool

log = logging.getLogger(__name__)

SPEED_KEYS = ("channels_last", "compile")
EVAL_KEYS = ("tta_flip",)  # how the module predicts (module.py), not an argument of the net
SWITCHES = dict.fromkeys(SPEED_KEYS + EVAL_KEYS, Bool)  # model keys besides the net's arguments


def split_speed_keys(model_cfg: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, bool]]:
    """The model node without the speed switches (the architecture's arguments), and the switches."""
    arch = {k: v for k, v in model_cfg.items() if k not in SPEED_KEYS + EVAL_KEYS}
    return arch, {k: model_cfg.get(k, False) for k in SPEED_KEYS}


def _channels_last_input(module: nn.Module, args: tuple) -> tuple:
    return (args[0].contiguous(memory_format=torch.channels_last), *args[1:])


def apply_speed(net: nn.Module, channels_last: bool = False, compile: bool = False) -> nn.Module:
    """Make conv weights and inputs NHWC and/or torch.compile the net in place; returns the same net."""
    if channels_last:
        # Weights here, inputs by a pre-hook: cuDNN picks NHWC kernels (tensor cores) when both are.
        net.to(memory_format=torch.channels_last)
        net.register_forward_pre_hook(_channels_last_input)
        log.info("model: channels_last (NHWC) weights and inputs")
    if compile:
        # nn.Module.compile compiles in place, so state_dict keys and checkpoints stay as without it.
        net.compile()
        log.info("model: torch.compile (in place; the first steps include compilation)")
    return net
