"""One data source per dataset, each the `_target_` of its conf/data/<option>.yaml."""

from __future__ import annotations

from hydra.utils import get_class
from omegaconf import OmegaConf

from ablate.config import CONF_DIR


def source(option: str) -> type:
    """The source class that conf/data/<option>.yaml names as its `_target_` (the config is the registry)."""
    path = CONF_DIR / "data" / f"{option}.yaml"
    if not path.is_file():
        known = sorted(p.stem for p in path.parent.glob("*.yaml"))
        raise ValueError(f"data={option!r} is not a data option: one of {known}")
    return get_class(OmegaConf.load(path)["_target_"])
