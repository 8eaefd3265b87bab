"""Hydra callback around a sweep: one sweep per sweep directory, and an exit code that counts failed runs."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout
from hydra.experimental.callback import Callback
from omegaconf import DictConfig

from ablate.run.identity import EXIT_IN_USE, EXIT_SWEEP_FAILED, read_summary, secondary_rank
from ablate.run.record import UNKNOWN, RunRecord, Status

SWEEP_LOCK = ".sweep.lock"


class SweepGuard(Callback):
    """Hydra callback: one sweep per sweep dir at a time, and an exit code that counts failed runs."""

    def on_multirun_start(self, config: DictConfig, **kwargs: Any) -> None:
        self.lock = None
        if secondary_rank():  # a DDP rank re-running the sweep's command inside rank 0's sweep
            return
        self.sweep_dir = Path(config.hydra.sweep.dir)
        self.sweep_dir.mkdir(parents=True, exist_ok=True)
        self.lock = FileLock(self.sweep_dir / SWEEP_LOCK, timeout=0)
        try:
            self.lock.acquire()
        except Timeout:
            print(
                f"error: another sweep is running in {self.sweep_dir} (it holds "
                f"{self.sweep_dir / SWEEP_LOCK}): wait for it to end, or pick another hydra.sweep.dir",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_IN_USE) from None
        self.before = _job_stamps(self.sweep_dir)

    def __getstate__(self) -> dict[str, Any]:
        # Launchers that pickle the job (joblib) take this callback along; the lock stays here.
        return {**self.__dict__, "lock": None}

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        if self.lock is None:
            return
        self.lock.release()
        # This sweep's runs: those whose .hydra/ Hydra (re)wrote, whichever launcher ran them.
        runs = sorted(d for d, t in _job_stamps(self.sweep_dir).items() if self.before.get(d) != t)
        failed = [d for d in runs if _failed(read_summary(d))]
        if failed:
            names = ", ".join(str(d.relative_to(self.sweep_dir)) for d in failed)
            print(
                f"error: {len(failed)} of {len(runs)} runs failed: {names} "
                f"(in {self.sweep_dir}; each summary.json has the error and traceback)",
                file=sys.stderr,
            )
            raise SystemExit(EXIT_SWEEP_FAILED)


def _failed(summary: RunRecord | None) -> bool:
    """No summary.json (the run died before it wrote one), none with a status, or a failed run."""
    return summary is None or summary.status in (Status.FAILED, UNKNOWN)


def _job_stamps(sweep_dir: Path) -> dict[Path, int]:
    """Run dir -> mtime of the .hydra/overrides.yaml Hydra writes at each job's start."""
    found = sweep_dir.glob("**/.hydra/overrides.yaml")
    return {p.parent.parent: p.stat().st_mtime_ns for p in found if ".old-" not in str(p)}
