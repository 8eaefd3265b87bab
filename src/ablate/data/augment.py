"""Data augmentation: albumentations pipelines from the Hydra `aug` group, for uint8 batches."""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from typing import Any

import numpy as np

# albumentations checks PyPI for a newer version at import time unless told not to.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import hydra.utils  # noqa: E402

FAMILIES = ("digits", "fashion", "natural")


class BatchAugment:
    """Applies an albumentations pipeline image by image to a uint8 (N, H, W, C) batch."""

    def __init__(self, transform: A.Compose, seed: int):
        self.transform = transform
        self.reseed(seed)

    def reseed(self, seed: int) -> None:
        """Restart the pipeline's random stream from `seed` (call once per DataLoader worker)."""
        # Compose(seed=s) seeds every child transform with the *same* s, so their draws are
        # identical: two p=0.5 transforms would always fire together. Global np/random seeding
        # does not reach albumentations at all. One generator pair shared by the whole
        # pipeline gives a single reproducible stream with independent decisions.
        self.transform.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def __call__(self, images: np.ndarray) -> np.ndarray:
        """Augment a uint8 (N, H, W, C) batch; returns a new array of the same shape."""
        if images.ndim != 4 or images.dtype != np.uint8:
            raise ValueError(
                f"expected a uint8 batch of shape (N, H, W, C), got {images.dtype} {images.shape}"
            )
        out = np.empty_like(images)
        for i, image in enumerate(images):
            result = self.transform(image=image)["image"]
            if result.ndim == 2:  # some OpenCV paths drop a trailing channel of size 1
                result = result[..., None]
            if result.shape != image.shape:
                raise ValueError(
                    f"augmentation changed image shape {image.shape} -> {result.shape}; "
                    "check that data.image_size matches the images"
                )
            out[i] = result
        return out

    def __repr__(self) -> str:
        return f"BatchAugment({self.transform!r})"


def build_augment(aug_cfg: Mapping[str, Any] | None, family: str, seed: int) -> BatchAugment | None:
    """Instantiate the `aug` preset for a dataset family; None if it has no pipeline for it."""
    if family not in FAMILIES:
        raise ValueError(f"unknown augmentation family {family!r}; expected one of {FAMILIES}")
    node = None if aug_cfg is None else aug_cfg.get(family)
    if node is None:
        return None
    # _convert_="all" so Compose holds a plain list of transforms rather than a ListConfig.
    transform = hydra.utils.instantiate(node, _convert_="all")
    if not isinstance(transform, A.Compose):
        transform = A.Compose([transform])
    return BatchAugment(transform, seed)
