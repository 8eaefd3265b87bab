"""Test-only fault injection ($ABLATE_FAULT): kill, SIGTERM, Ctrl-C, raise, OOM or a dead loader worker at a step."""

from __future__ import annotations

import logging
import os
import signal
import time
from typing import Any

import lightning as L
import torch
from omegaconf import DictConfig, OmegaConf
from torch.utils.data import DataLoader
from torch.utils.data.dataloader import _MultiProcessingDataLoaderIter

log = logging.getLogger(__name__)


FAULT_ENV = "ABLATE_FAULT"  # test-only, e.g. ABLATE_FAULT=kill_at_step:7 or oom_at_step:3@seed=1


class FaultInjection(L.Callback):
    """Test-only: at the start of training step `step` (or of the test, at the last step), kill or
    terminate this process or raise.

    Actions: `kill` (SIGKILL), `term` (SIGTERM, as SLURM sends before preemption), `ctrl_c` (SIGINT
    to this process group, as a terminal's Ctrl-C reaches a sweep and its workers), `raise` (a
    RuntimeError), `oom` (torch.OutOfMemoryError: a CUDA OOM, also on CPU) and `worker_death` (SIGKILL
    one worker process of the training DataLoader, as the kernel's OOM killer would).
    """

    ACTIONS = ("kill", "term", "ctrl_c", "raise", "oom", "worker_death")

    def __init__(self, action: str, step: int) -> None:
        if action not in self.ACTIONS:
            raise ValueError(
                f"{FAULT_ENV}={action}_at_step:{step}: action must be one of {self.ACTIONS}"
            )
        self.action, self.step = action, step

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        self._at(trainer)

    def on_test_start(self, trainer: L.Trainer, pl_module) -> None:
        """A fault at the run's last step comes as its test starts (no training step is left)."""
        self._at(trainer)

    def _at(self, trainer: L.Trainer) -> None:
        if trainer.global_step != self.step:
            return
        log.warning("fault injection (%s): %s at step %d", FAULT_ENV, self.action, self.step)
        if self.action == "raise":
            raise RuntimeError(f"injected fault at step {self.step}")
        if self.action == "oom":
            # What the CUDA caching allocator raises (torch.cuda.OutOfMemoryError is this class).
            raise torch.OutOfMemoryError(
                "CUDA out of memory. Tried to allocate 2.00 GiB. GPU 0 has a total capacity of "
                f"79.19 GiB of which 1.06 GiB is free. (injected by {FAULT_ENV} at step {self.step})"
            )
        if self.action == "worker_death":
            kill_a_loader_worker(trainer)
            return
        if self.action == "ctrl_c":
            os.killpg(os.getpgid(0), signal.SIGINT)
            return
        os.kill(os.getpid(), signal.SIGKILL if self.action == "kill" else signal.SIGTERM)


def kill_a_loader_worker(trainer: L.Trainer, wait_s: float = 10.0) -> None:
    """SIGKILL one worker process of the training DataLoader; PyTorch itself then raises its error.

    Of the ways to make a worker die (os._exit in the dataset's __getitem__, a dataset that
    segfaults, a SIGKILL from outside), the outside SIGKILL is what happens in practice: the kernel's
    OOM killer picks the worker. Nothing in the dataset or the loader is changed; the error is
    PyTorch's own: its SIGCHLD handler (torch/utils/data/_utils/signal_handling.py) raises
    "DataLoader worker (pid N) is killed by signal: Killed." in the main thread as soon as the
    signal arrives. We wait for it here so that it surfaces at the start of step `step` and not at
    whatever line the main process happened to be on; should it not come, the loader's own status
    check raises "DataLoader worker (pid(s) N) exited unexpectedly" once its prefetched batches are
    used up.
    """
    worker_iter = _training_loader_workers(trainer)
    if worker_iter is None:
        raise RuntimeError(
            f"{FAULT_ENV}=worker_death: the training loader has no worker processes; it needs "
            "data.num_workers>=1 on the CPU data path (data.on_device=false)"
        )
    pid = worker_iter._workers[0].pid
    log.warning("fault injection (%s): SIGKILL to DataLoader worker pid %d", FAULT_ENV, pid)
    os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        time.sleep(0.01)  # PyTorch's SIGCHLD handler raises its RuntimeError out of this sleep


def _training_loader_workers(trainer: L.Trainer) -> Any | None:
    """The live multi-process iterator of the training DataLoader (its `_workers`), or None.

    The datamodule's loaders keep persistent workers, so the DataLoader holds its iterator in
    `_iterator`; `trainer.train_dataloader` may be wrapped (ResumableLoader.loader).
    """
    loader = trainer.train_dataloader
    while loader is not None and not isinstance(loader, DataLoader):
        loader = loader.__dict__.get("loader")
    it = getattr(loader, "_iterator", None)
    return it if isinstance(it, _MultiProcessingDataLoaderIter) and it._workers else None


def parse_fault(spec: str) -> tuple[str, int, tuple[str, str] | None]:
    """`<action>_at_step:<N>[@<key>=<value>]` -> (action, N, (key, value) or None).

    `@key=value` limits the fault to runs whose resolved config has `key` (a dotted path such as
    `seed` or `norm._target_`) equal to `value` as a string: one cell of a sweep.
    """
    body, at, target = spec.partition("@")
    action, _, step = body.partition("_at_step:")
    key, eq, value = target.partition("=")
    if not step.isdigit() or action not in FaultInjection.ACTIONS or (at and not (key and eq)):
        raise ValueError(
            f"{FAULT_ENV}={spec}: expected <action>_at_step:<N>[@<key>=<value>] with action one "
            f"of {FaultInjection.ACTIONS}, e.g. oom_at_step:3@seed=1"
        )
    return action, int(step), ((key, value) if at else None)


_ABSENT = object()


def _as_text(value: Any) -> set[str]:
    """How a config value may be written on the command line: `str()`, and YAML's null/true/false."""
    spellings = {str(value)}
    if value is None or isinstance(value, bool):
        spellings.add({None: "null", True: "true", False: "false"}[value])
    return spellings


def fault_applies(target: tuple[str, str] | None, cfg: DictConfig | None) -> bool:
    """Whether a fault limited to `target` = (key, value) is meant for the run with config cfg."""
    if target is None:
        return True
    key, value = target
    if cfg is None:
        raise ValueError(f"{FAULT_ENV}: @{key}={value} needs the run's config")
    found = OmegaConf.select(cfg, key, default=_ABSENT)
    if found is _ABSENT:
        raise ValueError(f"{FAULT_ENV}: @{key}={value}: the config has no key {key!r}")
    return value in _as_text(found)


def injected_faults(cfg: DictConfig | None = None) -> list[L.Callback]:
    """The FaultInjection asked for by $ABLATE_FAULT for this run (config cfg), else none.

    $ABLATE_FAULT is `<kill|term|ctrl_c|raise|oom|worker_death>_at_step:<N>[@<key>=<value>]`; see parse_fault.
    """
    spec = os.environ.get(FAULT_ENV)
    if not spec:
        return []
    action, step, target = parse_fault(spec)
    if not fault_applies(target, cfg):
        return []
    return [FaultInjection(action, step)]
