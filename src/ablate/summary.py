"""`summary.json`: what a run was (resolved config, seed, versions, commit) and what came out."""

from __future__ import annotations

import json
import math
import platform
import subprocess
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ablate.atomic import write_bytes_atomic
from ablate.config import REPO_ROOT, swept_keys

PACKAGES = (
    "ablate",
    "torch",
    "torchvision",
    "lightning",
    "torchmetrics",
    "hydra-core",
    "omegaconf",
    "albumentations",
    "numpy",
    "tensorboard",
)


def package_versions() -> dict[str, str]:
    """Installed versions of the packages that decide a result, plus Python's."""
    versions = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def git_commit() -> str | None:
    """The checkout's commit (with '-dirty' if it has local changes), or None outside git."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(REPO_ROOT), *a], capture_output=True, text=True, timeout=5, check=True
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        return commit + ("-dirty" if run("status", "--porcelain", "--untracked-files=no") else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _number(v: Any) -> Any:
    v = float(v.item() if hasattr(v, "item") else v)
    return v if math.isfinite(v) else str(v)  # JSON has no NaN/inf


class RunSummary:
    """Writes `summary.json` into the run directory: `running` at start, then `completed` or `failed`."""

    def __init__(
        self,
        run_dir: str | Path,
        cfg: DictConfig,
        seed: int | None,
        overrides: list[str] | None = None,
        swept: list[str] | None = None,
        choices: dict[str, str] | None = None,
        config_hash: str | None = None,
    ) -> None:
        self.path = Path(run_dir) / "summary.json"
        self.start = time.perf_counter()
        self.data: dict[str, Any] = {
            "status": "running",
            "seed": seed,
            "overrides": list(overrides or []),
            "swept": sorted(swept or []),
            "choices": dict(choices or {}),
            "config_hash": config_hash,
            "config": OmegaConf.to_container(cfg, resolve=True),
            "versions": package_versions(),
            "git_commit": git_commit(),
            "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
        self.write()

    @classmethod
    def for_hydra_job(cls, cfg: DictConfig, seed: int | None, cfg_hash: str) -> RunSummary:
        """Start the summary of the current Hydra job, with its overrides and swept keys."""
        hc = HydraConfig.get()
        multirun = hc.mode == RunMode.MULTIRUN
        return cls(
            hc.runtime.output_dir, cfg, seed, overrides=list(hc.overrides.task),
            swept=sorted(swept_keys(hc.sweeper.get("params"))) if multirun else [],
            choices=dict(hc.runtime.choices), config_hash=cfg_hash,
        )  # fmt: skip

    def write(self) -> None:
        """Atomically (re)write the file (temp file, fsync, rename)."""
        write_bytes_atomic(self.path, json.dumps(self.data, indent=2, default=str).encode())

    def finish(
        self,
        status: str,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        """Record the outcome, the wall time, final metrics and the learning curve."""
        self.data.update(
            status=status, wall_time_s=round(time.perf_counter() - self.start, 3), **extra
        )
        if metrics is not None:
            self.data["metrics"] = {k: _number(v) for k, v in sorted(metrics.items())}
        if history is not None:
            self.data["history"] = [
                {k: v if k in ("step", "epoch") else _number(v) for k, v in h.items()}
                for h in history
            ]
        self.write()

    def interrupted(self, step: int, epoch: int) -> None:
        """Record a run stopped by a signal after saving checkpoints/last.ckpt (re-run to resume)."""
        self.finish("interrupted", interrupted_at_step=step, steps=step, epochs=epoch)

    def failed(self, exc: BaseException) -> None:
        """Record a failure with its error and traceback."""
        self.finish(
            "failed",
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc))[-4000:],
        )
