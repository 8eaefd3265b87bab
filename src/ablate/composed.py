"""Each job of a sweep composed once per process (a composition takes ~0.2 s on 2 cores).

The command-line check (ablate.preflight) composes a sweep's first job and one job per other swept
value, with the overrides Hydra's sweeper will give them; the sweeper then composes every job to
check its batch, and the launcher composes each again. `keep` holds the check's compositions and
`compose_once` makes the sweep's config loader take them, then compose each other job once.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from omegaconf import DictConfig, OmegaConf, open_dict

_KEPT: dict[tuple[str, ...], DictConfig] = {}


def keep(overrides: Sequence[str], cfg: DictConfig) -> None:
    """A copy of `cfg`, composed from `overrides` (the hydra.* ones first, as a sweep composes)."""
    _KEPT[tuple(overrides)] = copy.deepcopy(cfg)


def compose_once(loader: Any) -> None:
    """Make a sweep's config loader compose each job once, or not at all where `keep` holds it."""
    compose, composed = loader.load_sweep_config, {}

    def load_sweep_config(master_config: DictConfig, sweep_overrides: list[str]) -> DictConfig:
        key = (id(master_config), tuple(sweep_overrides))
        if key in composed:  # the launcher's request, after the sweeper's check: it takes it
            return composed.pop(key)
        kept = _KEPT.pop((*master_config.hydra.overrides.hydra, *sweep_overrides), None)
        if kept is None:
            composed[key] = compose(master_config, sweep_overrides)
        else:  # as Hydra's own: the job's name is the app's (the check's was Hydra's compose API's)
            with open_dict(kept):
                kept.hydra.job.name = master_config.hydra.job.name
            OmegaConf.copy_cache(from_config=master_config, to_config=kept)  # as load_sweep_config
            composed[key] = kept
        return copy.deepcopy(composed[key])  # the check's copy: what it does stays there

    loader.load_sweep_config = load_sweep_config
