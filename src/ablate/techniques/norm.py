"""Normalization layers for conv blocks: one factory per `conf/norm/<option>.yaml`."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ablate.schema.fields import (
    Bool,
    NonNegative,
    OptionalFraction,
    OptionalNonNegativePair,
    Positive,
    PositiveInt,
    PositiveRange,
    checked,
    one_of,
)

PLACEMENTS = ("before_act", "after_act")
Placement = one_of(*PLACEMENTS)


@dataclass(frozen=True)
class Norm:
    """A normalization choice: how to build the layer for C channels, and where it goes."""

    name: str
    make: Callable[[int], nn.Module]
    placement: str = "before_act"
    learned_shift: bool = (
        True  # has a per-channel beta, which makes a preceding layer's bias redundant
    )
    vectors: bool = True  # can normalize (N, C) feature vectors (InstanceNorm has no extent to use)

    def __call__(self, channels: int) -> nn.Module:
        return self.make(channels)

    @property
    def bias_redundant(self) -> bool:
        """Whether the layer feeding this norm needs no bias: the norm's learned shift replaces it."""
        return self.learned_shift and self.placement == "before_act"

    def for_vectors(self, features: int) -> nn.Module:
        """The norm for (N, C) feature vectors: the conv-block layer applied to (N, C, 1, 1) maps."""
        if not self.vectors:
            raise ValueError(
                f"norm={self.name} cannot normalize a feature vector (it has no spatial extent): "
                "use norm=batch, layer or group for a model with normalized linear layers"
            )
        layer = self.make(features)
        return layer if isinstance(layer, nn.Identity) else AsVectors(layer)


class AsVectors(nn.Module):
    """Applies a conv-block norm to (N, C) features as (N, C, 1, 1) maps: BatchNorm2d is then
    BatchNorm1d per feature, GroupNorm(G) normalizes groups of features per sample, and GroupNorm(1)
    (norm=layer) is LayerNorm over the features."""

    def __init__(self, norm: nn.Module) -> None:
        super().__init__()
        self.norm = norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(x[:, :, None, None]).flatten(1)


@checked
def none(placement: Placement = "before_act") -> Norm:
    """No normalization (identity)."""
    return Norm("none", lambda c: nn.Identity(), placement, learned_shift=False)


@checked
def batch(
    placement: Placement = "before_act", eps: Positive = 1e-5, momentum: OptionalFraction = 0.1
) -> Norm:
    """BatchNorm (Ioffe & Szegedy 2015): batch mean/var per channel, running stats at eval."""
    return Norm("batch", lambda c: nn.BatchNorm2d(c, eps=eps, momentum=momentum), placement)


class NoisyShift(nn.Module):
    """Per-step random scale and shift of each channel in training, identity at eval.

    Santurkar et al. 2018, "How Does Batch Normalization Help Optimization?", Sec. 2.1: noise with
    non-zero mean and non-unit variance, redrawn at every step, injected after BatchNorm so the next
    layer's input distribution keeps moving. y = s * x + m with s ~ U(scale) and m ~ U(-shift, shift),
    drawn per sample and channel (per_sample=true) or per channel only. With `jitter` = (r_m, r_s),
    their Algorithm 1 (App. A.2.1): each element (sample, channel, position) then draws
    m ~ U(mu - r_m, mu + r_m) and s ~ N(sigma, r_s) around its channel's step draw (mu, sigma).
    """

    def __init__(self, shift: float = 1.0, scale: tuple[float, float] = (0.5, 2.0),
                 per_sample: bool = True, jitter: tuple[float, float] | None = None) -> None:  # fmt: skip
        super().__init__()
        low, high = scale
        self.shift, self.scale, self.per_sample = (
            float(shift),
            (float(low), float(high)),
            per_sample,
        )
        self.jitter = None if jitter is None else (float(jitter[0]), float(jitter[1]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        shape = (x.shape[0] if self.per_sample else 1, x.shape[1]) + (1,) * (x.dim() - 2)
        low, high = self.scale
        s = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(low, high)
        m = torch.empty(shape, device=x.device, dtype=x.dtype).uniform_(-self.shift, self.shift)
        if self.jitter is not None:
            r_m, r_s = self.jitter
            m = m + torch.empty_like(x).uniform_(-r_m, r_m)
            s = s + torch.empty_like(x).normal_() * r_s
        return x * s + m

    def extra_repr(self) -> str:
        return f"shift={self.shift}, scale={self.scale}, per_sample={self.per_sample}, jitter={self.jitter}"


@checked
def batch_noisy(
    placement: Placement = "before_act",
    eps: Positive = 1e-5,
    momentum: OptionalFraction = 0.1,
    shift: NonNegative = 1.0,
    scale: PositiveRange = (0.5, 2.0),
    per_sample: Bool = True,
    jitter: OptionalNonNegativePair = None,
) -> Norm:
    """BatchNorm followed by NoisyShift: BN's output distribution made unstable on purpose."""
    spread = None if jitter is None else tuple(jitter)

    def make(c: int) -> nn.Module:
        bn = nn.BatchNorm2d(c, eps=eps, momentum=momentum)
        return nn.Sequential(bn, NoisyShift(shift, tuple(scale), per_sample, spread))

    return Norm("batch_noisy", make, placement)


@checked
def layer(placement: Placement = "before_act", eps: Positive = 1e-5) -> Norm:
    """LayerNorm over (C, H, W) per sample, with a per-channel affine (Wu & He 2018: GN with G=1)."""
    return Norm("layer", lambda c: nn.GroupNorm(1, c, eps=eps), placement)


@checked
def group(
    groups: PositiveInt = 8, placement: Placement = "before_act", eps: Positive = 1e-5
) -> Norm:
    """GroupNorm (Wu & He 2018): per-sample statistics over groups of channels; batch-size free."""
    return Norm("group", lambda c: nn.GroupNorm(groups, c, eps=eps), placement)


@checked
def instance(placement: Placement = "before_act", eps: Positive = 1e-5) -> Norm:
    """InstanceNorm (Ulyanov et al. 2016): per-sample, per-channel statistics over (H, W)."""
    make = lambda c: nn.InstanceNorm2d(c, eps=eps, affine=True)  # noqa: E731
    return Norm("instance", make, placement, vectors=False)


NORM_TYPES = (nn.BatchNorm2d, nn.GroupNorm, nn.InstanceNorm2d, nn.LayerNorm, nn.BatchNorm1d)
