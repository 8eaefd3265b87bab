"""`summary.json`: what a run was (resolved config, seed, versions, commit) and what came out."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import time
import traceback
from importlib import metadata
from pathlib import Path
from typing import Any

import torch
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf

from ablate.config import REPO_ROOT, swept_keys
from ablate.run.atomic import write_bytes_atomic
from ablate.run.identity import secondary_rank
from ablate.run.record import Attempt, RunRecord, Status

log = logging.getLogger(__name__)

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


def cpu_model(cpuinfo: str | Path = "/proc/cpuinfo") -> str | None:
    """The CPU's model name (/proc/cpuinfo's "model name", else platform.processor()); None if unknown."""
    try:
        for line in Path(cpuinfo).read_text(errors="replace").splitlines():
            key, _, value = line.partition(":")
            if key.strip() in ("model name", "Model") and value.strip():
                return " ".join(value.split())
    except OSError:
        pass
    return platform.processor() or None


def cpu_capability() -> str | None:
    """The instruction set torch's CPU kernels use here, e.g. "AVX2" or "AVX512" (None: unknown)."""
    try:
        return torch.backends.cpu.get_cpu_capability()
    except (AttributeError, RuntimeError):  # an older torch
        return None


def gpu_models() -> list[str] | None:
    """The names of the CUDA GPUs, once a CUDA context exists (asking creates one); else None."""
    if not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return None  # before a fork-based launcher forks (ddp_fork), no context may be made
    return [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]


def machine() -> str:
    """The machine a run trained on, in one line: architecture, CPU count and model, CUDA GPUs."""
    model = cpu_model()
    text = f"{platform.machine()}, {os.cpu_count()} CPUs" + (f" ({model})" if model else "")
    if not torch.cuda.is_available():  # (creates no CUDA context)
        return text
    names = gpu_models()
    if names is None:
        n = torch.cuda.device_count()
        return f"{text}, {n} CUDA GPU{'s' * (n > 1)}"
    return text + ", " + ", ".join(f"{names.count(n)} x {n}" for n in dict.fromkeys(names))


def hardware() -> dict[str, Any]:
    """The record's hardware fields: the one-line machine, CPU model and capability, GPU models."""
    found = {"machine": machine(), "cpu_model": cpu_model(), "cpu_capability": cpu_capability(),
             "gpu_models": gpu_models()}  # fmt: skip
    return {k: v for k, v in found.items() if v is not None}  # unknown: not written


RESULT_PATHS = ("src", "conf", "pyproject.toml", "requirements.lock")  # what decides a run's result


def git_commit(repo: Path | None = None) -> str | None:
    """The checkout's commit, '-dirty' if code or configs (RESULT_PATHS) have local changes; None
    outside git. Changed docs, tests or results do not make a run unreproducible from its commit."""
    try:
        run = lambda *a: subprocess.run(  # noqa: E731
            ["git", "-C", str(repo or REPO_ROOT), *a],
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        commit = run("rev-parse", "HEAD")
        changed = run("status", "--porcelain", "--untracked-files=no", "--", *RESULT_PATHS)
        return commit + ("-dirty" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return None


OOM_HINT = (
    "out of memory: lower data.batch_size (training) and/or data.eval_batch_size (val/test), or use "
    "trainer.precision=bf16-mixed; other processes on the same GPU count too (nvidia-smi)"
)
WORKER_DEATH_HINT = (
    "a DataLoader worker died (often the kernel's OOM killer, or a too-small /dev/shm): rerun with "
    "data.num_workers=0 to see the underlying error, or lower data.num_workers / raise the shm size "
    "(docker --shm-size)"
)


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and the exceptions it was raised from or during (__cause__ / __context__), each once."""
    seen: list[BaseException] = []
    while exc is not None and not any(exc is e for e in seen):
        seen.append(exc)
        exc = exc.__cause__ or exc.__context__
    return seen


def failure_hint(exc: BaseException) -> str | None:
    """What to change when a run fails with a known resource error (GPU OOM, a dead loader worker)."""
    for e in _chain(exc):
        text = str(e)
        oom_text = "CUDA out of memory" in text or "CUDA error: out of memory" in text
        if isinstance(e, torch.OutOfMemoryError) or oom_text:
            return OOM_HINT
        if "DataLoader worker" in text and (
            "killed by signal" in text or "exited unexpectedly" in text
        ):
            return WORKER_DEATH_HINT
    return None


class RunSummary:
    """Writes `summary.json` (a RunRecord) into the run directory: `running` at start, then the outcome."""

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
        earlier = self._earlier_attempts()
        self.record = RunRecord(
            status=Status.RUNNING,
            seed=seed,
            overrides=list(overrides or []),
            swept=sorted(swept or []),
            choices=dict(choices or {}),
            config_hash=config_hash,
            config=OmegaConf.to_container(cfg, resolve=True),
            versions=package_versions(),
            git_commit=git_commit(),
            **hardware(),
            started_at=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        )
        if earlier:
            self.record.earlier_attempts = earlier
        self.write()

    def _earlier_attempts(self) -> list[Attempt]:
        """What the summary.json already in the run directory recorded, oldest attempt first.

        Only unfinished runs are re-run in their directory (failed, interrupted, or `running`: the
        process was killed before it could record an outcome); their error and traceback are kept.
        A DDP rank > 0 finds rank 0's summary of this same attempt: it keeps only the earlier ones.
        """
        try:
            old = RunRecord.load(self.path)
        except (OSError, ValueError):
            return []
        if "status" not in old.model_fields_set:
            return []
        earlier = list(old.earlier_attempts)
        if secondary_rank():
            return earlier
        return [*earlier, old.attempt()]

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
        write_bytes_atomic(self.path, self.record.to_json().encode())

    def finish(
        self,
        status: Status,
        metrics: dict[str, Any] | None = None,
        history: list[dict[str, Any]] | None = None,
        **extra: Any,
    ) -> None:
        """Record the outcome, the wall time, final metrics and the learning curve."""
        record = self.record
        record.status = status
        record.wall_time_s = round(time.perf_counter() - self.start, 3)
        for key, value in extra.items():  # keys the record does not name are kept as extras
            setattr(record, key, value)
        for key, value in hardware().items():  # now with the GPUs' names if the run used them
            setattr(record, key, value)
        if metrics is not None:
            record.metrics = dict(sorted(metrics.items()))
        if history is not None:
            record.history = history
        self.write()

    def interrupted(self, step: int, epoch: int) -> None:
        """Record a run stopped by a signal after saving checkpoints/last.ckpt (re-run to resume)."""
        self.finish(Status.INTERRUPTED, interrupted_at_step=step, steps=step, epochs=epoch)

    def failed(self, exc: BaseException) -> None:
        """Record a failure with its error, traceback and, for known resource errors, a hint."""
        hint = failure_hint(exc)
        extra = {"hint": hint} if hint else {}
        self.finish(
            Status.FAILED,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc))[-4000:],
            **extra,
        )
        if hint:
            log.error("run failed with %s: %s", type(exc).__name__, hint)
