"""Values this machine cannot hold, refused before they cost anything: devices and worker processes
it does not have, and a training batch whose activations alone exceed its memory.

Why the last one: a batch is sliced from the training split, so `data.batch_size=50000` on MNIST
runs the network on 50,000 images at once; the default CNN keeps about 0.5 MB of layer outputs per
image for the backward pass, 25 GB in all, and the kernel kills the process without a message.
The counts the data sets hold are checked by the datamodule (ImageDataModule.size_problems).
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from omegaconf import DictConfig

from ablate.config import on_gpu

GB = 1024**3


def _memory() -> tuple[int, str]:
    """Bytes of memory this process may use at most (the machine's, or its cgroup's limit)."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit.isdigit() and int(limit) < total:
            return int(limit), "memory limit"
    except OSError:
        pass
    return total, "memory"


def hardware_problems(cfg: DictConfig) -> list[str]:
    """Devices and worker processes the config asks for that this machine does not have."""
    problems = []
    accelerator, devices = str(cfg.trainer.get("accelerator", "auto")), cfg.trainer.get("devices")
    gpus, cores = torch.cuda.device_count(), os.cpu_count() or 1
    if accelerator in ("gpu", "cuda") and not gpus:
        problems.append(
            f"trainer.accelerator={accelerator} but this machine has no CUDA GPU "
            "(torch.cuda.is_available() is false): use trainer.accelerator=cpu or auto"
        )
    elif on_gpu(accelerator) and isinstance(devices, int) and devices > gpus:
        problems.append(
            f"trainer.devices={devices} but this machine has {gpus} GPU(s): use "
            f"trainer.devices<={gpus} (or -1: all of them)"
        )
    elif on_gpu(accelerator) and not isinstance(devices, int | str) and max(devices) >= gpus:
        problems.append(
            f"trainer.devices={list(devices)} names a GPU this machine does not have (it has "
            f"{gpus}: indices 0 to {gpus - 1})"
        )
    elif accelerator in ("cpu", "auto") and isinstance(devices, int) and devices > cores:
        problems.append(
            f"trainer.devices={devices} asks for {devices} CPU processes but this machine has "
            f"{cores} cores: use trainer.devices<={cores}"
        )
    workers = cfg.data.get("num_workers", 0)
    if isinstance(workers, int) and workers > cores:
        problems.append(
            f"data.num_workers={workers} is more worker processes than this machine's {cores} "
            f"CPU cores: use data.num_workers<={cores} (0: batches are sliced in the main process)"
        )
    return problems


def interval_problems(cfg: DictConfig, train_images: int | None) -> list[str]:
    """A validation interval longer than an epoch, where Lightning counts it within one epoch."""
    interval, trainer = cfg.trainer.get("val_check_interval"), cfg.trainer
    per_epoch = trainer.get("check_val_every_n_epoch", 1) is not None
    if not (isinstance(interval, int) and per_epoch and train_images and
            trainer.get("limit_train_batches") is None):  # fmt: skip
        return []
    batches = -(-train_images // cfg.data.batch_size)
    if interval <= batches:
        return []
    return [
        f"trainer.val_check_interval={interval} is more than the {batches} training batches of "
        f"an epoch ({train_images} images / data.batch_size={cfg.data.batch_size}): use "
        f"trainer.val_check_interval<={batches}, or add +trainer.check_val_every_n_epoch=null "
        "to count it across epochs"
    ]


def image_bytes(net: torch.nn.Module, shape: tuple[int, ...]) -> int:
    """Bytes of layer outputs one image leaves for the backward pass: a lower bound of its share
    of a training step's memory (gradients and optimizer state come on top)."""
    sizes: list[int] = []
    hook = lambda m, i, out: sizes.append(out.numel() * out.element_size())  # noqa: E731
    leaves = [m for m in net.modules() if not any(m.children())]
    handles = [m.register_forward_hook(hook) for m in leaves]
    try:
        with torch.no_grad():
            net.eval()(torch.zeros(2, *shape))
    finally:
        for h in handles:
            h.remove()
    return sum(sizes) // 2


def memory_problems(cfg: DictConfig, per_image: int, model: str) -> list[str]:
    """A training batch whose activations alone need more memory than this machine (or GPU) has."""
    batch = cfg.data.batch_size
    if "16" in str(cfg.trainer.get("precision")):  # autocast: most outputs in 2 bytes
        per_image //= 2
    if on_gpu(str(cfg.trainer.get("accelerator", "auto"))) and torch.cuda.is_available():
        limit, what = torch.cuda.get_device_properties(0).total_memory, "GPU memory"
    else:
        limit, what = _memory()
    if batch * per_image <= limit:
        return []
    c, (h, w) = cfg.data.channels, cfg.data.image_size
    return [
        f"data.batch_size={batch} needs at least {batch * per_image / GB:.1f} GB for one training "
        f"step of {model} on {c}x{h}x{w} images ({per_image / 2**20:.2f} MB of activations an "
        f"image), more than the {limit / GB:.1f} GB of {what} here: use a smaller "
        f"data.batch_size (below {limit // per_image} by this lower bound)"
    ]
