"""Exact resume: a run restarted from any checkpoint, even mid-epoch, continues as if never stopped.

Lightning's checkpoint restores the weights, optimizer, scheduler, loop counters and callback
states, but not
- the global RNG streams (torch, numpy, python) that dropout and other layers draw from;
- the training loader: Lightning restarts an interrupted epoch with a fresh iterator, so the batches
  already trained on would be trained again, in the order of the first epoch.
ResumableLoader records where the epoch's order started and how many batches were used; ResumeState puts that and the RNG states into checkpoints and back.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Iterator
from typing import Any

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader

from ablate.training.chunks import chunked


class ResumeState(L.Callback):
    """Puts the global RNG states and the loader's position into checkpoints and back on resume.

    The loader's own state_dict reaches Lightning's loop state too, but Lightning applies it only
    when it builds the loader after restoring, not when a scheduler counted the steps earlier;
    this callback applies it just before the first batch of a resumed fit.
    """

    def __init__(self) -> None:
        self._trainer: L.Trainer | None = None
        self._restored: dict[str, Any] | None = None

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        self._trainer = trainer

    def state_dict(self) -> dict[str, Any]:
        loader = _training_loader(self._trainer)
        return {"rng": rng_states(), "loader": loader.state_dict() if loader else {},
                "steps_per_call": loader.steps_per_call if loader else 1}  # fmt: skip

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._restored = state_dict

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._restored is None:
            return
        set_rng_states(self._restored["rng"])
        if loader := _training_loader(trainer):
            loader.load_state_dict(self._restored["loader"])
        self._restored = None


def _training_loader(trainer: L.Trainer | None) -> ResumableLoader | None:
    loader = trainer.train_dataloader if trainer is not None else None
    return loader if isinstance(loader, ResumableLoader) else None


def rng_states() -> dict[str, Any]:
    """The global torch (CPU and CUDA), numpy and python RNG states."""
    name, keys, pos, has_gauss, gauss = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "numpy": (name, keys.tolist(), pos, has_gauss, gauss),  # lists: loadable with weights_only
        "python": random.getstate(),
    }


def set_rng_states(states: dict[str, Any]) -> None:
    """Restore what rng_states() returned."""
    torch.set_rng_state(states["torch"])
    if states["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])
    name, keys, pos, has_gauss, gauss = states["numpy"]
    np.random.set_state((name, np.asarray(keys, dtype=np.uint32), pos, has_gauss, gauss))
    random.setstate(states["python"])


class ResumableLoader:
    """Wraps the training DataLoader so Lightning saves its position and resumes it mid-epoch.

    load_state_dict() takes effect at the next iteration. Skipped batches are drawn again (not
    trained on): the device path's per-epoch augmentation stream then stands where the uninterrupted
    run's stood. The CPU path seeds each augmented batch from (seed, epoch, rank, batch number), so
    only the order's generators need restoring, and resuming is exact with DataLoader workers too.
    """

    def __init__(self, loader: DataLoader | Iterable[Any], steps_per_call: int = 1) -> None:
        self.loader = loader
        self.steps_per_call = (
            steps_per_call  # > 1: Chunks of that many batches (training/chunks.py)
        )
        self._epoch_start: dict[str, Any] | None = None  # stream states when this epoch began
        self._used = 0  # batches handed out in this epoch (a sized loader is not prefetched)
        self._pending: dict[str, Any] | None = None

    def __len__(self) -> int:
        return -(-len(self.loader) // self.steps_per_call)  # in Lightning's batches: chunks

    def __getattr__(self, name: str) -> Any:
        if name == "loader":  # not set yet (e.g. during unpickling)
            raise AttributeError(name)
        return getattr(self.loader, name)

    @property
    def worker_init_fn(self) -> Any:
        return self.loader.worker_init_fn

    @worker_init_fn.setter
    def worker_init_fn(self, fn: Any) -> None:  # Lightning sets it when seeding workers
        self.loader.worker_init_fn = fn

    def __iter__(self) -> Iterator[Any]:
        if self.steps_per_call == 1:
            return self._batches()
        return chunked(self._batches(), self.steps_per_call)  # positions stay counted in batches

    def _batches(self) -> Iterator[Any]:
        skip, pending, self._pending = 0, self._pending, None
        if pending and pending["used"] >= len(self.loader):  # saved at the epoch's end: go on
            set_streams(self.loader, pending["now"])
        elif pending:  # mid-epoch: draw the epoch's order again, then pass the used batches
            set_streams(self.loader, pending["streams"])
            skip = pending["used"]
        self._epoch_start, self._used = stream_states(self.loader), 0
        for batch in self.loader:
            self._used += 1
            if self._used > skip:
                yield batch

    def state_dict(self) -> dict[str, Any]:
        if not self._epoch_start:
            return {}
        return {"streams": self._epoch_start, "now": stream_states(self.loader), "used": self._used}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict or None


def _generators(loader: Any) -> list[torch.Generator]:
    """The loader's generator and its samplers' (shuffle order, worker base seed), each once."""
    found, node = [getattr(loader, "generator", None)], getattr(loader, "sampler", None)
    while node is not None:  # a batch sampler wraps the index sampler as .sampler or .base
        found.append(getattr(node, "generator", None))
        node = getattr(node, "sampler", None) or getattr(node, "base", None)
    unique = {id(g): g for g in found if isinstance(g, torch.Generator)}
    return list(unique.values())


def stream_states(loader: Any) -> dict[str, Any]:
    """Current states of the generators that decide the loader's order (and worker seeds)."""
    return {"generators": [g.get_state() for g in _generators(loader)]}


def set_streams(loader: Any, states: dict[str, Any]) -> None:
    """Put the loader's generators back to `states` (an older checkpoint's "augment" entry is unused)."""
    for g, s in zip(_generators(loader), states["generators"], strict=True):
        g.set_state(s)
