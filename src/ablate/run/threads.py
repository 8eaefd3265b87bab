"""CPU threads per run, so that parallel runs (hydra/launcher=joblib) do not oversubscribe the cores."""

from __future__ import annotations

import logging
import os

import torch
from hydra.core.hydra_config import HydraConfig

log = logging.getLogger(__name__)


def parallel_jobs() -> int:
    """How many runs this launcher runs at once on this machine: its n_jobs (joblib, grouped), else 1."""
    return at_once(int(HydraConfig.get().launcher.get("n_jobs") or 1))


def at_once(n_jobs: int) -> int:
    """A launcher's n_jobs as a count: -1 (or below) is one per core."""
    return (os.cpu_count() or 1) if n_jobs < 0 else n_jobs


def available_cores() -> int:
    """Cores this process may use: OMP_NUM_THREADS when set (as torch reads it), else all of them."""
    given = os.environ.get("OMP_NUM_THREADS", "")
    return int(given) if given.isdigit() and int(given) > 0 else (os.cpu_count() or 1)


def set_threads(threads: int | str) -> int:
    """Set torch's intra-op threads: an integer, or `auto` (the cores divided among parallel runs)."""
    n = max(1, available_cores() // parallel_jobs()) if threads == "auto" else int(threads)
    torch.set_num_threads(n)
    log.info("torch threads: %d", n)
    return n
