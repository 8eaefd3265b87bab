"""LightningDataModule over decoded uint8 arrays: seeded split, stratified subset, standardization, augmentation.

Two data paths give the same batches (eval) or batches from the same distribution (train):
- CPU (`data.on_device=false`, the default on CPU): a DataLoader slices numpy arrays and runs the
  albumentations pipeline image by image (`ablate.data.augment`), optionally in worker processes.
- device (`data.on_device=true`, the default on a GPU): the uint8 splits live on the training device,
  batches are sliced there by index and augmented batched (`ablate.data.device_aug`), in the manner of
  airbench. Presets with an op that has no batched version fall back to the CPU path (auto) or are
  a config error (`true`); the table of which preset runs where is in `ablate.data.device_aug`.
Both shard batches over DDP ranks the way DistributedSampler does (rank r takes every world-th
image of one permutation shared by all ranks), so a DDP step sees the same images as one process
with batch size `devices * data.batch_size`.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import ClassVar

import lightning as L
import numpy as np
import torch
from omegaconf import DictConfig
from torch.utils.data import DataLoader

from ablate.data import cache
from ablate.data.augment import BatchAugment, build_augment
from ablate.data.decode import DataSizeError, ImageData, Size
from ablate.data.device_aug import (
    DeviceAugment,
    NoDeviceEquivalent,
    build_device_augment,
    generator,
)
from ablate.data.loaders import (
    BINARY_THRESHOLD,
    BatchDataset,
    DeviceBatches,
    channel_stats,
    cpu_loader,
    split_indices,
    split_problems,
    spread_over_classes,
    stratified_pick,
    train_count,
)
from ablate.run.resume import ResumableLoader
from ablate.schema.fields import (
    Bool,
    ImageSize,
    NonNegativeInt,
    OpenFraction,
    OptionalBool,
    OptionalNonNegativeInt,
    OptionalPositiveInt,
    PositiveInt,
    Text,
    one_of,
)
from ablate.training.chunks import Chunk

log = logging.getLogger(__name__)


class ImageDataModule(L.LightningDataModule):
    """A dataset split into train/val (seeded) plus the official test split; a source subclass reads it."""

    name: str | None = None  # the data.dataset a source reads (None: any label, e.g. image_folder)
    images: ClassVar[dict[str, int] | None] = None  # images per official split, when known unread

    def __init__(
        self,
        dataset: Text,
        root: Text,
        cache_dir: Text,
        batch_size: PositiveInt = 128,
        eval_batch_size: PositiveInt = 512,
        val_fraction: OpenFraction = 0.1,
        train_subset: OptionalPositiveInt = None,
        standardize: Bool = True,
        binarize: OptionalBool = None,
        num_workers: NonNegativeInt = 0,
        channels: one_of(1, 3) = 1,
        image_size: ImageSize = (28, 28),
        num_classes: PositiveInt = 10,
        aug_family: one_of("digits", "fashion", "natural") = "natural",
        eval_train_max: OptionalNonNegativeInt = 10000,
        download: Bool = True,
        aug: DictConfig | None = None,
        seed: int = 0,
        on_device: OptionalBool = None,
    ) -> None:
        super().__init__()
        self.dataset, self.root, self.cache_dir, self.download = dataset, root, cache_dir, download
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.num_workers, self.val_fraction = num_workers, val_fraction
        self.train_subset, self.standardize, self.binarize = (
            train_subset,
            standardize,
            bool(binarize),
        )
        self.channels, self.image_size, self.num_classes = channels, tuple(image_size), num_classes
        self.aug_family, self.aug_cfg, self.seed = aug_family, aug, seed
        self.eval_train_max = eval_train_max
        self.on_device = on_device
        self.steps_per_call = 1  # set by the fit (training/chunks.py), not a data setting
        self._device_aug, self._device_aug_problem = self._device_augment()
        if on_device and self._device_aug_problem:
            raise ValueError(
                f"data.on_device=true but aug for {aug_family} has no batched device version: "
                f"{self._device_aug_problem}. Use data.on_device=null (falls back to the CPU path) "
                "or an aug preset that runs on the device (table in src/ablate/device_aug.py)"
            )
        self._use_device: bool | None = None  # resolved once the training device is known
        self._device_splits: dict[tuple[str, int | None], tuple[torch.Tensor, torch.Tensor]] = {}
        self._stats_on: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}
        self.classes: list[str] = []
        self.mean = torch.zeros(channels)
        self.std = torch.ones(channels)
        self._splits: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    @classmethod
    def locate(cls, root: Path, *, download: bool) -> None:
        """Raise DatasetNotFoundError unless the files are under root (or downloadable); decodes nothing."""
        raise NotImplementedError(f"{cls.__name__} is not a source: see ablate.data.sources")

    @classmethod
    def read(
        cls, root: Path, *, download: bool, channels: int | None, image_size: Size | None
    ) -> ImageData:
        """Decode the train and test splits from root (called on a cache miss only)."""
        raise NotImplementedError(f"{cls.__name__} is not a source: see ablate.data.sources")

    def _load(self) -> ImageData:
        root, cache_dir = Path(self.root), Path(self.cache_dir)
        return cache.load(
            self.dataset, type(self).read, root, cache_dir, download=self.download,
            channels=self.channels, image_size=self.image_size,
        )  # fmt: skip

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
            log.info("data.num_classes=%d replaced by the %d classes found", self.num_classes,
                     len(self.classes))  # fmt: skip
            self.num_classes = len(self.classes)
        x, y = data.train.x, data.train.y
        if problems := self.size_problems(len(y), where=f"in {self.root}"):
            raise DataSizeError(problems)  # before any split is made or anything trained
        train_idx, val_idx = split_indices(y, self.val_fraction, self.train_subset, self.seed)
        self._splits = {
            "train": (x[train_idx], y[train_idx]),
            "val": (x[val_idx], y[val_idx]),
            "test": (data.test.x, data.test.y),
        }
        if self.standardize:
            # Per-channel statistics of the training split only, in [0, 1] units.
            mean, std = channel_stats(self._splits["train"][0], self.channels, self.binarize)
            self.mean = torch.tensor(mean, dtype=torch.float32)
            self.std = torch.tensor(std.clip(1e-6), dtype=torch.float32)
            self._stats_on.clear()
        log.info("%s: %d train / %d val / %d test images, mean %s std %s", self.dataset,
                 len(train_idx), len(val_idx), len(data.test.y), self.mean.tolist(),
                 self.std.tolist())  # fmt: skip

    def train_images(self, n: int | None = None) -> int | None:
        """The training split's size for n official training images (default: the known count)."""
        n = n if n is not None else (self.images or {}).get("train")
        return None if n is None else train_count(n, self.val_fraction, self.train_subset)

    def size_problems(self, n: int | None = None, where: str = "") -> list[str]:
        """This node's values that n official training images cannot satisfy, one line each
        (n: the source's known count by default; none known: nothing to check until loaded)."""
        n = n if n is not None else (self.images or {}).get("train")
        if n is None:
            return []
        source = f"{self.dataset}'s {n}{' ' + where if where else ''}"
        return split_problems(n, self.val_fraction, self.train_subset, self.batch_size, source)

    def split_sizes(self) -> dict[str, int]:
        """Number of images in each split."""
        return {k: len(v[1]) for k, v in self._splits.items()}

    def _augment(self, seed: int) -> BatchAugment | None:
        return build_augment(self.aug_cfg, self.aug_family, seed) if self.aug_cfg else None

    def _device_augment(self) -> tuple[DeviceAugment | None, str | None]:
        """The batched version of the aug pipeline, or why there is none."""
        try:
            return build_device_augment(self.aug_cfg, self.aug_family, self.image_size), None
        except NoDeviceEquivalent as e:
            return None, str(e)

    @property
    def device(self) -> torch.device:
        """The device the trainer trains on (CPU without a trainer)."""
        return self.trainer.strategy.root_device if self.trainer else torch.device("cpu")

    def _rank_world(self) -> tuple[int, int]:
        return (self.trainer.global_rank, self.trainer.world_size) if self.trainer else (0, 1)

    @property
    def data_path(self) -> str:
        """`device` or `cpu`: where batches are sliced and augmented (decided once per run)."""
        if self._use_device is None:
            self._use_device = self._choose_path(self.device)
        return "device" if self._use_device else "cpu"

    def _choose_path(self, device: torch.device) -> bool:
        want = self.on_device if self.on_device is not None else device.type == "cuda"
        if want and self._device_aug_problem:  # only reachable with on_device=null (auto)
            log.warning("data path: CPU (albumentations), not the device: %s",
                        self._device_aug_problem)  # fmt: skip
            return False
        if want:
            log.info("data path: device (%s), augmentation %s", device, self._device_aug)
        else:
            log.info("data path: CPU (albumentations, %d workers)", self.num_workers)
        return want

    def _split(self, split: str, limit: int | None) -> tuple[np.ndarray, np.ndarray]:
        x, y = self._splits[split]
        if limit is not None and limit < len(y):
            keep = stratified_pick(y, limit, np.random.default_rng([self.seed, 3]))
            x, y = x[keep], y[keep]
        return x, y

    def _loader(self, split: str, shuffle: bool, augment: BatchAugment | None = None,
                limit: int | None = None) -> DataLoader | DeviceBatches:  # fmt: skip
        rank, world = self._rank_world()
        size = self.batch_size if shuffle else self.eval_batch_size
        if self.data_path == "device":
            return self._device_loader(split, shuffle, limit, size, rank, world)
        # DDP on this path needs trainer.use_distributed_sampler=false: a config check (validate)
        epoch = (lambda: self.trainer.current_epoch) if self.trainer else None
        x, y = self._split(split, limit)
        return cpu_loader(BatchDataset(x, y, augment), size, shuffle, self.seed, rank, world,
                          self.num_workers, epoch)  # fmt: skip

    def _device_loader(
        self, split: str, shuffle: bool, limit: int | None, size: int, rank: int, world: int
    ) -> DeviceBatches:
        key, device = (split, limit), self.device
        if key not in self._device_splits or self._device_splits[key][0].device != device:
            x, y = self._split(split, limit)
            self._device_splits[key] = (
                torch.from_numpy(x).permute(0, 3, 1, 2).contiguous().to(device),
                torch.from_numpy(y).to(device),
            )
        x, y = self._device_splits[key]
        epoch = (lambda: self.trainer.current_epoch) if self.trainer else None
        augment = self._device_aug if shuffle else None
        return DeviceBatches(x, y, size, shuffle, self.seed, augment, rank, world, epoch)

    def train_dataloader(self) -> ResumableLoader:
        """The training batches; checkpoints record the position in the epoch (exact resume)."""
        # the device path augments with its own batched ops (self._device_aug)
        augment = None if self.data_path == "device" else self._augment(self.seed)
        loader = self._loader("train", shuffle=True, augment=augment)
        return ResumableLoader(loader, self.steps_per_call)

    def val_dataloader(self) -> DataLoader | DeviceBatches:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> list[DataLoader | DeviceBatches]:
        loaders = [self._loader("test", shuffle=False)]
        if self.eval_train_max != 0:
            loaders.append(self._loader("train", shuffle=False, limit=self.eval_train_max))
        return loaders

    def on_after_batch_transfer(self, batch, dataloader_idx: int):
        if isinstance(batch, Chunk):  # steps_per_call > 1: several training batches at once
            return Chunk(self.on_after_batch_transfer(b, dataloader_idx) for b in batch)
        x, y = batch
        return self.standardized(self.pixels(x)), y

    def pixels(self, x: torch.Tensor) -> torch.Tensor:
        """A stored uint8 batch as float pixels in [0, 1] (binary with data.binarize)."""
        # binarize: Ioffe & Szegedy 2015 Sec. 4.1 feed "a 28x28 binary image": pixel > 127 -> 1, else 0
        return x.gt(BINARY_THRESHOLD).float() if self.binarize else x.float().div_(255.0)

    def standardized(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] as the network's input: standardized in place with data.standardize."""
        if not self.standardize:
            return x
        if x.device not in self._stats_on:  # copied once: a per-batch copy syncs with the host
            self._stats_on[x.device] = (self.mean.to(x.device).view(1, -1, 1, 1),
                                        self.std.to(x.device).view(1, -1, 1, 1))  # fmt: skip
        mean, std = self._stats_on[x.device]
        return x.sub_(mean).div_(std)

    def preview(self, n: int = 32) -> tuple[np.ndarray, np.ndarray | None]:
        """n training images drawn across the classes (seeded: image folders store theirs sorted by
        class), as stored and through the augmentation."""
        x, y = self._splits["train"]
        images = x[spread_over_classes(y, n, np.random.default_rng([self.seed, 4]))]
        if self.data_path == "device":  # show what the device ops do, computed on the CPU
            if self._device_aug is None:
                return images, None
            out = self._device_aug(
                torch.from_numpy(images).permute(0, 3, 1, 2), generator("cpu", self.seed, 0, 2)
            )  # its own stream
            return images, out.permute(0, 2, 3, 1).numpy()
        augment = self._augment(self.seed + 1)  # its own stream: previewing must not shift training
        return images, (augment(images) if augment is not None else None)
