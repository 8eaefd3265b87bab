"""LightningDataModule over decoded uint8 arrays: seeded split, stratified subset, standardization, augmentation."""

from __future__ import annotations

import logging
from pathlib import Path

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from ablate import datasets
from ablate.augment import BatchAugment, build_augment

log = logging.getLogger(__name__)


def stratified_pick(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of n items of y, each class represented in proportion to its frequency (largest remainder)."""
    classes, counts = np.unique(y, return_counts=True)
    quota = counts * n / len(y)
    take = np.floor(quota).astype(int)
    short = n - take.sum()
    take[np.argsort(-(quota - take), kind="stable")[:short]] += 1
    picked = [
        rng.permutation(np.flatnonzero(y == c))[:k] for c, k in zip(classes, take, strict=True)
    ]
    return np.sort(np.concatenate(picked))


class BatchDataset(Dataset):
    """Uint8 images (N, H, W, C) and labels, indexed a whole batch at a time, augmented on the fly."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: BatchAugment | None = None) -> None:
        self.x, self.y, self.augment = x, torch.from_numpy(y), augment
        self._worker_seeded = False

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        idx = np.asarray(idx)
        images = self.x[idx]
        if self.augment is not None:
            info = torch.utils.data.get_worker_info()
            if info is not None and not self._worker_seeded:
                # Each worker process draws from its own stream, derived from the loader's seeded generator.
                self.augment.reseed(info.seed % 2**32)
                self._worker_seeded = True
            images = self.augment(images)
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        return x, self.y[idx]


class ImageDataModule(L.LightningDataModule):
    """One dataset from `ablate.datasets`, split into train/val (seeded) plus the official test split."""

    def __init__(
        self,
        dataset: str,
        root: str,
        cache_dir: str,
        batch_size: int = 128,
        eval_batch_size: int = 512,
        val_fraction: float = 0.1,
        train_subset: int | None = None,
        standardize: bool = True,
        num_workers: int = 0,
        channels: int = 1,
        image_size: tuple[int, int] = (28, 28),
        num_classes: int = 10,
        aug_family: str = "natural",
        eval_train_max: int | None = 10000,
        download: bool = True,
        aug: DictConfig | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        self.dataset, self.root, self.cache_dir, self.download = dataset, root, cache_dir, download
        self.batch_size, self.eval_batch_size, self.num_workers = (
            batch_size,
            eval_batch_size,
            num_workers,
        )
        self.val_fraction, self.train_subset, self.standardize = (
            val_fraction,
            train_subset,
            standardize,
        )
        self.channels, self.image_size, self.num_classes = channels, tuple(image_size), num_classes
        self.aug_family, self.aug_cfg, self.seed = aug_family, aug, seed
        self.eval_train_max = eval_train_max
        self.classes: list[str] = []
        self.mean = torch.zeros(channels)
        self.std = torch.ones(channels)
        self._splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @property
    def input_shape(self) -> tuple[int, int, int]:
        """(C, H, W) of a batch element."""
        return (self.channels, *self.image_size)

    def _load(self) -> datasets.ImageData:
        return datasets.load(
            self.dataset,
            Path(self.root),
            Path(self.cache_dir),
            download=self.download,
            channels=self.channels,
            image_size=self.image_size,
        )

    def prepare_data(self) -> None:
        self._load()  # decodes and caches once; later loads read the cache

    def setup(self, stage: str | None = None) -> None:
        if self._splits:
            return
        data = self._load()
        shape = data.train.x.shape[1:]
        if shape != (*self.image_size, self.channels):
            raise ValueError(
                f"{self.dataset} images are {shape[:2]} with {shape[2]} channels but the config says "
                f"data.image_size={list(self.image_size)} data.channels={self.channels}"
            )
        self.classes = data.classes
        if len(self.classes) != self.num_classes:
            log.info(
                "data.num_classes=%d replaced by the %d classes found",
                self.num_classes,
                len(self.classes),
            )
            self.num_classes = len(self.classes)
        x, y = data.train.x, data.train.y
        val_idx = stratified_pick(
            y, round(self.val_fraction * len(y)), np.random.default_rng([self.seed, 1])
        )
        train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
        if self.train_subset is not None:
            if self.train_subset > len(train_idx):
                raise ValueError(
                    f"data.train_subset={self.train_subset} exceeds the {len(train_idx)} training images "
                    "left after the validation split"
                )
            sub = stratified_pick(
                y[train_idx], self.train_subset, np.random.default_rng([self.seed, 2])
            )
            train_idx = train_idx[sub]
        self._splits = {
            "train": (x[train_idx], y[train_idx]),
            "val": (x[val_idx], y[val_idx]),
            "test": (data.test.x, data.test.y),
        }
        if self.standardize:
            # Per-channel statistics of the training split only, in [0, 1] units.
            pixels = self._splits["train"][0].reshape(-1, self.channels).astype(np.float64) / 255.0
            self.mean = torch.tensor(pixels.mean(0), dtype=torch.float32)
            self.std = torch.tensor(pixels.std(0).clip(1e-6), dtype=torch.float32)
        log.info(
            "%s: %d train / %d val / %d test images, mean %s std %s",
            self.dataset,
            len(train_idx),
            len(val_idx),
            len(data.test.y),
            self.mean.tolist(),
            self.std.tolist(),
        )

    def split_sizes(self) -> dict[str, int]:
        """Number of images in each split."""
        return {k: len(v[1]) for k, v in self._splits.items()}

    def _augment(self, seed: int) -> BatchAugment | None:
        return build_augment(self.aug_cfg, self.aug_family, seed) if self.aug_cfg else None

    def _loader(
        self,
        split: str,
        shuffle: bool,
        augment: BatchAugment | None = None,
        limit: int | None = None,
    ) -> DataLoader:
        x, y = self._splits[split]
        if limit is not None and limit < len(y):
            keep = stratified_pick(y, limit, np.random.default_rng([self.seed, 3]))
            x, y = x[keep], y[keep]
        ds = BatchDataset(x, y, augment)
        generator = torch.Generator().manual_seed(self.seed)
        base = RandomSampler(ds, generator=generator) if shuffle else SequentialSampler(ds)
        size = self.batch_size if shuffle else self.eval_batch_size
        return DataLoader(
            ds,
            batch_size=None,
            sampler=BatchSampler(base, size, drop_last=False),
            num_workers=self.num_workers,
            generator=generator,
            persistent_workers=self.num_workers > 0,
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True, augment=self._augment(self.seed))

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> list[DataLoader]:
        loaders = [self._loader("test", shuffle=False)]
        if self.eval_train_max != 0:
            loaders.append(self._loader("train", shuffle=False, limit=self.eval_train_max))
        return loaders

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        x, y = batch
        x = x.float().div_(255.0)
        if self.standardize:
            x = x.sub_(self.mean.to(x.device).view(1, -1, 1, 1)).div_(
                self.std.to(x.device).view(1, -1, 1, 1)
            )
        return x, y

    def preview(self, n: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """The first n training images as stored, and the same images through the augmentation."""
        images = self._splits["train"][0][:n]
        augment = self._augment(self.seed + 1)  # its own stream: previewing must not shift training
        return images, (augment(images) if augment is not None else None)
