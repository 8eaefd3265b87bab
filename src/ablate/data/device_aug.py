"""Batched augmentation of uint8 (N, C, H, W) tensors on the training device, mirroring albumentations ops.

The albumentations pipeline (`ablate.data.augment`) is the reference; an op runs here only if its batched
version draws from the same distribution with the same pixel semantics (checked in
tests/test_device_path.py). Each op draws per-image parameters from one `torch.Generator` on the
batch's device, so a batch is reproducible given the generator's seed.

| albumentations op                                        | device equivalent                     |
| -------------------------------------------------------- | ------------------------------------- |
| `HorizontalFlip`, `VerticalFlip`                         | `Flip`                                |
| `Pad(int, border 0 or 4)` then `RandomCrop` to the input size | `Shift` by up to ±pad px (zero or reflect fill) |
| `Affine` with `translate_px` only (no rotate/scale/shear), border 0 or 4 | `Shift`                |
| `CoarseDropout` with a numeric `fill`                    | `Erase`                               |
| anything else (rotation, scale, shear, `GaussianBlur`, ...) | none: the run uses the CPU path    |

Where each preset runs with `data.on_device=null` (auto) on a GPU; `data.on_device=true` with a CPU-only
preset is a config error:

| preset   | digits                          | fashion                    | natural                      |
| -------- | ------------------------------- | -------------------------- | ---------------------------- |
| `none`   | device (nothing to do)          | device                     | device                       |
| `light`  | CPU (Affine rotates ±8°)        | device (flip, shift ±2)    | device (flip, pad-4 crop)    |
| `strong` | CPU (rotate/scale/shear, blur)  | CPU (same)                 | CPU (same)                   |
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np
import torch

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402

from ablate.data.augment import build_augment  # noqa: E402

# OpenCV border codes albumentations uses -> how a Shift fills the uncovered border.
BORDERS = {
    0: "constant",
    4: "reflect",
}  # BORDER_CONSTANT, BORDER_REFLECT_101 (edge pixel not repeated)


class NoDeviceEquivalent(ValueError):
    """An albumentations op (or setting) without an exact batched device version."""


class DeviceOp(Protocol):
    """One batched op: uint8 (N, C, H, W) in, same shape out, randomness from `g`."""

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor: ...


def _coin(n: int, p: float, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """A (n,) bool tensor, True with probability p."""
    return torch.rand(n, generator=g, device=device) < p


def _randint(lo: int, hi: int, n: int, g: torch.Generator, device: torch.device) -> torch.Tensor:
    """(n,) integers uniform on [lo, hi], both ends included (as random.randint)."""
    return torch.randint(lo, hi + 1, (n,), generator=g, device=device)


@dataclass(frozen=True)
class Flip:
    """Mirror each image with probability p along the last axis (horizontal) or the one before (vertical)."""

    p: float = 0.5
    dim: int = -1

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        flip = _coin(len(x), self.p, g, x.device).view(-1, 1, 1, 1)
        return torch.where(flip, x.flip(self.dim), x)


def _source_index(
    shift: torch.Tensor, size: int, mode: str
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per image (N, size) source coordinates of a shift by `shift` px, and where they fall outside."""
    src = torch.arange(size, device=shift.device).view(1, -1) - shift.view(-1, 1)
    if mode == "reflect":  # reflect-101 about the edge pixels, as cv2.BORDER_REFLECT_101 / F.pad
        src = src.abs()
        src = torch.where(src > size - 1, 2 * (size - 1) - src, src)
        return src, None
    outside = (src < 0) | (src > size - 1)
    return src.clamp(0, size - 1), outside


@dataclass(frozen=True)
class Shift:
    """Translate each image by integers dy in [y_lo, y_hi], dx in [x_lo, x_hi]; the border is `fill` or reflected."""

    y: tuple[int, int]
    x: tuple[int, int]
    mode: str = "constant"
    fill: float = 0.0
    p: float = 1.0

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, c, h, w = x.shape
        dy = _randint(*self.y, n, g, x.device)
        dx = _randint(*self.x, n, g, x.device)
        if self.p < 1:
            keep = _coin(n, self.p, g, x.device)
            dy, dx = dy * keep, dx * keep
        if max(abs(v) for v in (*self.y, *self.x)) >= min(h, w) and self.mode == "reflect":
            raise ValueError(
                f"a reflected shift needs |shift| < image side, got {self} for {h}x{w}"
            )
        rows, rows_out = _source_index(dy, h, self.mode)
        cols, cols_out = _source_index(dx, w, self.mode)
        # Two gathers (rows, then columns) build every image's shifted view without padding a copy.
        out = x.gather(2, rows.view(n, 1, h, 1).expand(n, c, h, w))
        out = out.gather(3, cols.view(n, 1, 1, w).expand(n, c, h, w))
        if rows_out is not None:
            outside = rows_out.view(n, 1, h, 1) | cols_out.view(n, 1, 1, w)
            out = out.masked_fill(outside, self.fill)
        return out


@dataclass(frozen=True)
class Erase:
    """CoarseDropout: with probability p, fill 1 to several rectangles per image (sizes as albumentations draws them)."""

    holes: tuple[int, int]
    height: tuple[float, float]
    width: tuple[float, float]
    fill: float = 0.0
    p: float = 0.5

    @staticmethod
    def _sizes(
        rng: tuple[float, float], side: int, shape: tuple[int, int], g: torch.Generator, device
    ) -> torch.Tensor:
        # albumentations: a range ending at >= 1 is in pixels (inclusive), else a fraction of the side.
        if rng[1] >= 1:
            lo, hi = int(rng[0]), int(min(rng[1], side))
            return torch.randint(lo, hi + 1, shape, generator=g, device=device)
        u = torch.rand(shape, generator=g, device=device, dtype=torch.float64)
        return (side * (rng[0] + (rng[1] - rng[0]) * u)).long()

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        n, _, h, w = x.shape
        k = self.holes[1]
        active = _coin(n, self.p, g, x.device).view(n, 1) & (
            torch.arange(k, device=x.device).view(1, k)
            < _randint(*self.holes, n, g, x.device).view(n, 1)
        )
        hh = self._sizes(self.height, h, (n, k), g, x.device)
        ww = self._sizes(self.width, w, (n, k), g, x.device)
        # Top-left corner uniform over the positions where the hole fits: integers in [0, side - size].
        y0 = (torch.rand((n, k), generator=g, device=x.device) * (h - hh + 1)).long()
        x0 = (torch.rand((n, k), generator=g, device=x.device) * (w - ww + 1)).long()
        ys = torch.arange(h, device=x.device).view(1, 1, h)
        xs = torch.arange(w, device=x.device).view(1, 1, w)
        in_rows = (ys >= y0[..., None]) & (ys < (y0 + hh)[..., None])  # (n, k, h)
        in_cols = (xs >= x0[..., None]) & (xs < (x0 + ww)[..., None])  # (n, k, w)
        mask = (in_rows[..., :, None] & in_cols[..., None, :] & active[..., None, None]).any(1)
        return x.masked_fill(mask[:, None], self.fill)


class DeviceAugment:
    """A sequence of batched ops applied in order to uint8 (N, C, H, W) batches."""

    def __init__(self, ops: Sequence[DeviceOp]) -> None:
        self.ops = list(ops)

    def __call__(self, x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """Augment a uint8 (N, C, H, W) batch on its own device; returns a new tensor."""
        if x.ndim != 4 or x.dtype != torch.uint8:
            raise ValueError(f"expected a uint8 (N, C, H, W) batch, got {x.dtype} {tuple(x.shape)}")
        for op in self.ops:
            x = op(x, g)
        return x

    def __repr__(self) -> str:
        return f"DeviceAugment({self.ops!r})"


def _border(t: A.BasicTransform) -> str:
    if t.border_mode not in BORDERS:
        raise NoDeviceEquivalent(
            f"{type(t).__name__}(border_mode={t.border_mode}): only {sorted(BORDERS)} are batched"
        )
    return BORDERS[t.border_mode]


def _numeric_fill(t: A.BasicTransform) -> float:
    if not isinstance(t.fill, int | float):
        raise NoDeviceEquivalent(f"{type(t).__name__}(fill={t.fill!r}): only a number is batched")
    return float(t.fill)


def _affine(t: A.Affine) -> Shift:
    identity = (
        tuple(t.rotate) == (0, 0)
        and all(tuple(v) == (1, 1) for v in t.scale.values())
        and all(tuple(v) == (0, 0) for v in t.shear.values())
        and t.translate_percent is None
        and not t.fit_output
    )
    if not identity:
        raise NoDeviceEquivalent(
            f"Affine(rotate={t.rotate}, scale={t.scale}, shear={t.shear}) is more than an integer "
            "translation (translate_px)"
        )
    tx, ty = (tuple(int(v) for v in t.translate_px[a]) for a in ("x", "y"))
    return Shift(y=ty, x=tx, mode=_border(t), fill=_numeric_fill(t), p=t.p)


def _pad_crop(pad: A.Pad, crop: A.RandomCrop | None, size: tuple[int, int]) -> Shift:
    """Pad(p) followed by RandomCrop back to the input size is a shift by up to ±p px."""
    if crop is None or (crop.height, crop.width) != tuple(size) or not isinstance(pad.padding, int):
        raise NoDeviceEquivalent(
            "Pad is batched only as Pad(<int>) directly followed by RandomCrop back to the input size"
        )
    if pad.p < 1 or crop.p < 1:
        raise NoDeviceEquivalent("Pad/RandomCrop with p < 1 change the image size")
    p = pad.padding
    return Shift(y=(-p, p), x=(-p, p), mode=_border(pad), fill=_numeric_fill(pad))


def device_ops(transform: A.Compose, size: tuple[int, int]) -> list[DeviceOp]:
    """The batched equivalent of an albumentations Compose; raises NoDeviceEquivalent naming the op."""
    if transform.p < 1:
        raise NoDeviceEquivalent(f"Compose(p={transform.p}): only p=1 is batched")
    ops: list[DeviceOp] = []
    items = list(transform.transforms)
    i = 0
    while i < len(items):
        t = items[i]
        if isinstance(t, A.HorizontalFlip | A.VerticalFlip):
            ops.append(Flip(p=t.p, dim=-1 if isinstance(t, A.HorizontalFlip) else -2))
        elif isinstance(t, A.Affine):
            ops.append(_affine(t))
        elif isinstance(t, A.Pad):
            nxt = items[i + 1] if i + 1 < len(items) else None
            ops.append(_pad_crop(t, nxt if isinstance(nxt, A.RandomCrop) else None, size))
            i += 1  # the crop is part of this op
        elif isinstance(t, A.CoarseDropout):
            ops.append(
                Erase(
                    holes=tuple(t.num_holes_range),
                    height=tuple(t.hole_height_range),
                    width=tuple(t.hole_width_range),
                    fill=_numeric_fill(t),
                    p=t.p,
                )
            )
        else:
            raise NoDeviceEquivalent(f"{type(t).__name__} has no batched device version")
        i += 1
    return ops


def build_device_augment(
    aug_cfg: Mapping[str, Any] | None, family: str, size: tuple[int, int]
) -> DeviceAugment | None:
    """The `aug` preset's pipeline for a family as batched device ops; None if it has no pipeline."""
    reference = build_augment(aug_cfg, family, seed=0)
    if reference is None:
        return None
    return DeviceAugment(device_ops(reference.transform, size))


def generator(device: torch.device | str, *key: int) -> torch.Generator:
    """A generator on `device` seeded from integers (e.g. run seed, epoch, rank): one stream per key."""
    # SeedSequence mixes the key into well-separated seeds (63 bits: manual_seed takes an int64).
    seed = (
        int(np.random.SeedSequence([int(k) % 2**64 for k in key]).generate_state(1, np.uint64)[0])
        >> 1
    )
    return torch.Generator(device=device).manual_seed(seed)
