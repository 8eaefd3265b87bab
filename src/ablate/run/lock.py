"""The run-directory lock: one process per run directory at a time (DDP ranks > 0 share rank 0's)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from filelock import FileLock, Timeout

RUN_LOCK = ".run.lock"


def secondary_rank() -> bool:
    """Whether this process is a DDP rank other than 0 (Lightning re-runs the CLI for each one)."""
    return any(int(os.environ.get(k, "0") or 0) > 0 for k in ("RANK", "LOCAL_RANK", "NODE_RANK"))


@contextlib.contextmanager
def run_lock(run_dir: str | Path) -> Iterator[None]:
    """Hold run_dir's lock file for the duration; ValueError if another process holds it.

    DDP ranks > 0 share rank 0's run directory and claim: they take no lock.
    """
    if secondary_rank():
        yield
        return
    path = Path(run_dir) / RUN_LOCK
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(path, timeout=0)
    try:
        lock.acquire()
    except Timeout:
        raise ValueError(
            f"{run_dir} is in use by another process (it holds {path}): wait for that run to end, "
            "or pick another hydra.run.dir / hydra.sweep.dir"
        ) from None
    try:
        yield
    finally:
        lock.release()
