"""Project callbacks: the augmentation preview grid, throughput and start-up time."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L

from ablate.run.clock import startup_reference
from ablate.training.chunks import n_images


class Throughput(L.Callback):
    """Logs training images/s (steps after the first `skip`, validation excluded) and start-up time.

    perf/startup_s: seconds to the first training step, from process start (imports, data, model);
    for the later runs of a multirun, from the run's own start.
    """

    def __init__(self, skip: int = 5) -> None:
        self.skip = skip
        self.images, self.t0, self.t1 = 0, None, None  # a run resumed mid-epoch skips epoch start

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.images, self.t0, self.t1 = 0, None, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.global_step == 0 and batch_idx == 0:
            pl_module.log(
                "perf/startup_s", time.time() - startup_reference(), on_step=False, on_epoch=True
            )
        per_batch = getattr(pl_module, "steps_per_call", 1)  # a batch may be a chunk of steps
        if batch_idx * per_batch <= self.skip < (batch_idx + 1) * per_batch:
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx: int) -> None:
        if self.t0 is not None:
            self.images += n_images(batch)
            self.t1 = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.t0 is not None and self.t1 > self.t0:
            pl_module.log("perf/train_images_per_s", self.images / (self.t1 - self.t0))


def rss_mb() -> float:
    """This process's resident memory in MiB (Linux /proc; elsewhere the peak from getrusage)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class MemoryMonitor(L.Callback):
    """Logs the process's resident memory (perf/rss_mb, MiB) at each training epoch's end:
    a value that keeps growing over epochs means something holds on to tensors or graphs."""

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        pl_module.log("perf/rss_mb", rss_mb())
