"""When this process and each of its runs started: the reference of the start-up time metric."""

from __future__ import annotations

import os
import time
from pathlib import Path


def process_start_time() -> float:
    """Unix time at which this process started (Linux /proc; elsewhere the time ablate was imported)."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime")
        )
        return boot + ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError, StopIteration):
        return _IMPORTED_AT


_IMPORTED_AT = time.time()
_run_starts: list[float] = []


def mark_run_start() -> None:
    """Note that a run begins (a multirun runs several in one process)."""
    _run_starts.append(time.time())


def startup_reference() -> float:
    """When this run's start-up began: process start for the first run, else the run's own start."""
    return process_start_time() if len(_run_starts) <= 1 else _run_starts[-1]
