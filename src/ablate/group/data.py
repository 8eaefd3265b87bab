"""The K seeds' datamodules, their batches stacked on a leading seed axis: (K, B, ...)."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from types import SimpleNamespace
from typing import Any

import torch
from omegaconf import DictConfig

from ablate.data.datamodule import ImageDataModule
from ablate.training.fit import load_data


class Clock(SimpleNamespace):
    """What a datamodule reads from its trainer: the epoch (augmentation seeds), device, rank."""

    def __init__(self) -> None:
        super().__init__(current_epoch=0, global_rank=0, world_size=1,
                         strategy=SimpleNamespace(root_device=torch.device("cpu")))  # fmt: skip


class GroupData:
    """One datamodule per seed (its own split, subset, standardization and order), read in lockstep."""

    def __init__(self) -> None:
        self.clock = Clock()
        self.modules: list[ImageDataModule] = []
        self.train: list[Any] = []  # ResumableLoaders: each saves and restores its position
        self.val: list[Any] = []

    def add(self, cfg: DictConfig, seed: int) -> ImageDataModule:
        """Load seed's data as its solo run does; the datamodule reads the group's clock."""
        dm = load_data(cfg, seed)
        dm.trainer = self.clock
        self.modules.append(dm)
        self.train.append(dm.train_dataloader())
        self.val.append(dm.val_dataloader())
        if len(self.train[-1]) != len(self.train[0]):
            raise ValueError("the seeds' training splits differ in size: they cannot step together")
        return dm

    def batches(self, loaders: Iterable[Any]) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """The loaders' batches, each made ready by its own datamodule, stacked: (K, B, ...)."""
        for parts in zip(*loaders, strict=True):
            ready = [
                dm.on_after_batch_transfer(b, 0) for dm, b in zip(self.modules, parts, strict=True)
            ]
            yield torch.stack([x for x, _ in ready]), torch.stack([y for _, y in ready])

    def test_loaders(self) -> list[tuple[str, list[Any]]]:
        """("test", the official test split per seed), then ("train_eval", ...) when it is on."""
        per_seed = [dm.test_dataloader() for dm in self.modules]
        names = ("test", "train_eval")
        return [(names[i], [loaders[i] for loaders in per_seed]) for i in range(len(per_seed[0]))]
