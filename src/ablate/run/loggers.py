"""Build lists of Lightning callbacks/loggers from config groups of `_target_` entries."""

from __future__ import annotations

import logging
from typing import Any

from hydra.utils import instantiate
from lightning.pytorch.callbacks import LearningRateMonitor
from omegaconf import DictConfig

from ablate.run.tracking import arguments

log = logging.getLogger(__name__)


def instantiate_all(group: DictConfig | None) -> list[Any]:
    """Instantiate every `_target_` entry of a group node (null entries are switched off)."""
    if not group:
        return []
    return [instantiate(arguments(e)) for e in group.values() if e and "_target_" in e]


def build_loggers_and_callbacks(
    logger_cfg: DictConfig | None,
    callbacks_cfg: DictConfig | None,
    diagnostics_cfg: DictConfig | None = None,
) -> tuple[list, list]:
    """Loggers and callbacks; callbacks that only write to a logger are dropped when there is none."""
    loggers = instantiate_all(logger_cfg)
    callbacks = instantiate_all(callbacks_cfg) + instantiate_all(diagnostics_cfg)
    if not loggers:
        dropped = [type(c).__name__ for c in callbacks if isinstance(c, LearningRateMonitor)]
        callbacks = [c for c in callbacks if not isinstance(c, LearningRateMonitor)]
        if dropped:
            log.info("logger=none: dropped %s (nothing to log to)", ", ".join(dropped))
    return loggers, callbacks
