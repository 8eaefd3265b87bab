"""Training and eval batches: stratified picks, seeded batch samplers sharded over ranks, device batches."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from typing import NamedTuple

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, RandomSampler, Sampler, SequentialSampler

from ablate.data.augment import BatchAugment
from ablate.data.device_aug import (
    DeviceAugment,
    generator,
)


def spread_over_classes(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices drawn across the classes (a few of every class), sorted: previews of image
    folders, whose training split is sorted by class, would otherwise show one class."""
    pick = rng.permutation(len(y))
    per_class = -(-n // len(np.unique(y)))  # ceil
    return np.sort([i for c in np.unique(y) for i in pick[y[pick] == c][:per_class]][:n])


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


BINARY_THRESHOLD = 127  # data.binarize: a uint8 pixel above it is 1, else 0 (half intensity)


def channel_stats(
    x: np.ndarray, channels: int, binarize: bool = False
) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and population std of uint8 images (..., channels), in [0, 1] units (of
    the 0/1 pixels when binarized)."""
    # From a 256-bin count per channel: the float64 values of a float copy of every pixel, without
    # it (CIFAR-10's 10,000-image subset: 0.05 s against 0.4-5 s and 245 MB at every run's start).
    pixels = x.reshape(-1, channels)
    values = np.arange(256, dtype=np.float64) / 255.0
    if binarize:
        values = (np.arange(256) > BINARY_THRESHOLD).astype(np.float64)
    # torch.bincount counts uint8 directly; np.bincount casts every pixel to int64 first (MNIST's
    # 42M training pixels: ~0.03 s against ~0.5-1 s, once per run). The counts are the same integers.
    counts = np.stack([_count_values(pixels[:, c]) for c in range(channels)])
    n = counts.sum(1)
    mean = counts @ values / n
    var = (counts * (values[None, :] - mean[:, None]) ** 2).sum(1) / n
    return mean, np.sqrt(var)


def _count_values(column: np.ndarray) -> np.ndarray:
    """How often each uint8 value occurs in one channel (one contiguous copy at a time)."""
    return torch.bincount(torch.from_numpy(np.ascontiguousarray(column)), minlength=256).numpy()


def split_indices(
    y: np.ndarray, val_fraction: float, train_subset: int | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(train, val) indices of the official training split: a stratified, seeded validation split,
    then an optional stratified subset of what is left for training."""
    val_idx = stratified_pick(y, round(val_fraction * len(y)), np.random.default_rng([seed, 1]))
    train_idx = np.setdiff1d(np.arange(len(y)), val_idx)
    if train_subset is not None:
        if train_subset > len(train_idx):
            raise ValueError(
                f"data.train_subset={train_subset} exceeds the {len(train_idx)} training images "
                "left after the validation split"
            )
        train_idx = train_idx[
            stratified_pick(y[train_idx], train_subset, np.random.default_rng([seed, 2]))
        ]
    return train_idx, val_idx


def train_count(n: int, val_fraction: float, train_subset: int | None) -> int:
    """How many training images split_indices leaves of n."""
    return train_subset or n - round(val_fraction * n)


def split_problems(
    n: int, val_fraction: float, train_subset: int | None, batch_size: int, source: str
) -> list[str]:
    """The data.* values that n training images cannot satisfy (at most one line; `source` names
    the n images, e.g. mnist's 60000)."""
    val, held = round(val_fraction * n), f"data.val_fraction={val_fraction}"
    if val == 0:
        return [
            f"{held} holds out no validation image of {source} training images: "
            f"use data.val_fraction>={1 / n:.2g}"
        ]
    left, split = n - val, f"{source} less the {val} held out by {held}"
    if train_subset is not None and train_subset > left:
        return [
            f"data.train_subset={train_subset} is more than the {left} training images left "
            f"({split}): use data.train_subset<={left} (or null: all of them)"
        ]
    train = train_count(n, val_fraction, train_subset)
    if batch_size > train:
        split = f"data.train_subset={train_subset}" if train_subset is not None else split
        return [
            f"data.batch_size={batch_size} is larger than the {train} training images "
            f"({split}): use data.batch_size<={train}"
        ]
    return []


class SeededBatch(NamedTuple):
    """A training batch's indices and the seed its augmentation draws from."""

    indices: list[int]
    seed: int


def batch_seed(seed: int, epoch: int, rank: int, number: int) -> int:
    """The augmentation seed of batch `number` of `epoch` on `rank`: a pure function of the four."""
    return int(np.random.SeedSequence([seed, epoch, rank, number]).generate_state(1)[0])


class BatchDataset(Dataset):
    """Uint8 images (N, H, W, C) and labels, indexed a whole batch at a time, augmented on the fly."""

    def __init__(self, x: np.ndarray, y: np.ndarray, augment: BatchAugment | None = None) -> None:
        self.x, self.y, self.augment = x, torch.from_numpy(y), augment

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: list[int] | SeededBatch) -> tuple[torch.Tensor, torch.Tensor]:
        seed = None
        if isinstance(idx, SeededBatch):
            idx, seed = idx.indices, idx.seed
        idx = np.asarray(idx)
        images = self.x[idx]
        if self.augment is not None:
            if seed is not None:
                # Every batch draws from its own seed: the same augmentation whichever worker
                # process makes it, with any num_workers, and after resuming mid-epoch.
                self.augment.reseed(seed)
            images = self.augment(images)
        x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2)
        return x, self.y[idx]


def shard(order: Sequence[int], rank: int, world: int, pad: bool) -> Sequence[int]:
    """This rank's share of `order`: every world-th item from `rank` (DistributedSampler's split).

    pad=True repeats the first items so every rank gets the same count (training: DDP needs the same
    number of steps on every rank); eval leaves it uneven so each image is scored exactly once.
    """
    if world == 1:
        return order
    if pad and len(order) % world:
        extra = order[: world - len(order) % world]
        order = torch.cat([order, extra]) if torch.is_tensor(order) else [*order, *extra]
    return order[rank::world]


class ShardedBatchSampler(Sampler[list[int]]):
    """Batches of this rank's share of the base sampler's order (BatchSampler when world=1)."""

    def __init__(
        self,
        base: Sampler[int],
        batch_size: int,
        rank: int = 0,
        world: int = 1,
        pad: bool = False,
        seed: int | None = None,
        epoch: Callable[[], int] | None = None,
    ) -> None:
        """With `seed`, batches come as SeededBatch, seeded from (seed, epoch, rank, batch number);
        `epoch` says which epoch it is (default: count the passes over the sampler)."""
        self.base, self.batch_size, self.rank, self.world, self.pad = (
            base,
            batch_size,
            rank,
            world,
            pad,
        )
        self.seed, self._epoch_source, self._passes = seed, epoch, 0

    def __iter__(self) -> Iterator[list[int] | SeededBatch]:
        order = shard(list(self.base), self.rank, self.world, self.pad)
        epoch = self._epoch_source() if self._epoch_source else self._passes
        self._passes += 1
        for number, i in enumerate(range(0, len(order), self.batch_size)):
            batch = order[i : i + self.batch_size]
            if self.seed is None:
                yield batch
            else:
                yield SeededBatch(batch, batch_seed(self.seed, epoch, self.rank, number))

    def __len__(self) -> int:
        n = len(shard(range(len(self.base)), self.rank, self.world, self.pad))
        return -(-n // self.batch_size)


class DeviceBatches:
    """Batches sliced by index from uint8 (N, C, H, W) images on one device and augmented there.

    Shuffling and augmentation draw from generators on that device seeded from (seed, epoch) and
    (seed, epoch, rank): an epoch's batches are reproducible given the seed, also after resuming.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        batch_size: int,
        shuffle: bool,
        seed: int,
        augment: DeviceAugment | None = None,
        rank: int = 0,
        world: int = 1,
        epoch: Callable[[], int] | None = None,
    ) -> None:
        self.x, self.y, self.batch_size, self.shuffle, self.seed = x, y, batch_size, shuffle, seed
        self.augment, self.rank, self.world = augment, rank, world
        self._epoch_source = epoch
        self._iterations = 0  # the epoch when no trainer says which one it is

    def __len__(self) -> int:
        n = len(shard(range(len(self.y)), self.rank, self.world, pad=self.shuffle))
        return -(-n // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        epoch = self._epoch_source() if self._epoch_source else self._iterations
        self._iterations += 1
        device = self.x.device
        if (
            self.shuffle
        ):  # the same permutation on every rank: only the augmentation differs by rank
            order = torch.randperm(
                len(self.y), generator=generator(device, self.seed, epoch, 0), device=device
            )
        else:
            order = torch.arange(len(self.y), device=device)
        order = shard(order, self.rank, self.world, pad=self.shuffle)
        g = generator(device, self.seed, epoch, 1, self.rank) if self.augment else None
        for i in range(0, len(order), self.batch_size):
            idx = order[i : i + self.batch_size]
            x = self.x[idx]
            yield (self.augment(x, g) if self.augment else x), self.y[idx]


def cpu_loader(ds: BatchDataset, size: int, shuffle: bool, seed: int, rank: int, world: int,
               num_workers: int, epoch: Callable[[], int] | None) -> DataLoader:  # fmt: skip
    """The CPU path's loader: seeded batches of ds sharded over ranks, sliced in num_workers processes."""
    # The shuffle order has a generator of its own: the loader's (worker base seeds) is drawn
    # from once per iterator, and persistent workers keep theirs, so sharing one generator
    # would make the order depend on data.num_workers.
    order = torch.Generator().manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    base = RandomSampler(ds, generator=order) if shuffle else SequentialSampler(ds)
    augmented = ds.augment is not None
    sampler = ShardedBatchSampler(base, size, rank, world, pad=shuffle, epoch=epoch,
                                  seed=seed if augmented else None)  # fmt: skip
    return DataLoader(ds, batch_size=None, sampler=sampler, num_workers=num_workers,
                      generator=gen, persistent_workers=num_workers > 0)  # fmt: skip
