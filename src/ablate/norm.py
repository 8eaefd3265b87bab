"""Normalization layers for conv blocks: one factory per `conf/norm/<option>.yaml`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

PLACEMENTS = ("before_act", "after_act")


@dataclass(frozen=True)
class Norm:
    """A normalization choice: how to build the layer for C channels, and where it goes."""

    name: str
    make: Callable[[int], nn.Module]
    placement: str = "before_act"

    def __post_init__(self) -> None:
        if self.placement not in PLACEMENTS:
            raise ValueError(f"norm.placement={self.placement!r}: allowed values are {PLACEMENTS}")

    def __call__(self, channels: int) -> nn.Module:
        return self.make(channels)


def none(placement: str = "before_act") -> Norm:
    """No normalization (identity)."""
    return Norm("none", lambda c: nn.Identity(), placement)


def batch(placement: str = "before_act", eps: float = 1e-5, momentum: float = 0.1) -> Norm:
    """BatchNorm (Ioffe & Szegedy 2015): batch mean/var per channel, running stats at eval."""
    return Norm("batch", lambda c: nn.BatchNorm2d(c, eps=eps, momentum=momentum), placement)


def layer(placement: str = "before_act", eps: float = 1e-5) -> Norm:
    """LayerNorm over (C, H, W) per sample, with a per-channel affine (Wu & He 2018: GN with G=1)."""
    return Norm("layer", lambda c: nn.GroupNorm(1, c, eps=eps), placement)


def group(groups: int = 8, placement: str = "before_act", eps: float = 1e-5) -> Norm:
    """GroupNorm (Wu & He 2018): per-sample statistics over groups of channels; batch-size free."""
    return Norm("group", lambda c: nn.GroupNorm(groups, c, eps=eps), placement)


def instance(placement: str = "before_act", eps: float = 1e-5) -> Norm:
    """InstanceNorm (Ulyanov et al. 2016): per-sample, per-channel statistics over (H, W)."""
    return Norm("instance", lambda c: nn.InstanceNorm2d(c, eps=eps, affine=True), placement)


NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.BatchNorm1d)
