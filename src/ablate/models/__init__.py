"""The networks (conf/model): shared blocks, one module per architecture, and `build_model`."""

from ablate.models.build import build_model

__all__ = ["build_model"]
