"""Faults in one sweep cell that a real run meets on a GPU box: a CUDA out-of-memory error and a
DataLoader worker killed (by the kernel's OOM killer). Injected with $ABLATE_FAULT into one cell
only (`...@seed=N`); each test asserts what the user gets back: the exit code, the failed cell
named, its summary.json (error, traceback, a hint naming the fix), the other cell completed, and a
re-run of the same command that finishes only the failed cell."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import forked_cli
import lightning as L
import pytest
import torch
from conftest import REPO, fast_overrides, run_cli, summaries
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.demos.boring_classes import BoringModel
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import OmegaConf
from submitit.core.job_environment import SignalHandler

from ablate.run import preemption
from ablate.run.checkpoint import SaveOnInterrupt
from ablate.run.summary import OOM_HINT, WORKER_DEATH_HINT, failure_hint
from ablate.testing.faults import FaultInjection, fault_applies, injected_faults, parse_fault

TINY = [
    "data.train_subset=192",  # 6 steps of 32
    "data.eval_train_max=64",
    "model.channels=[4,8]",
    "model.hidden=16",
    "logger=none",
]
ENV = {"OMP_NUM_THREADS": "1"}


def _sweep_args(data_root: Path, tmp: Path, *extra: str) -> list[str]:
    return [
        "-m",
        "seed=0,1",
        *fast_overrides(data_root, tmp),
        *TINY,
        *extra,
        f"hydra.sweep.dir={tmp / 'sweep'}",
    ]


def _failed_cell(proc: subprocess.CompletedProcess, cell: str) -> None:
    assert proc.returncode == 1, f"exit {proc.returncode}\n{proc.stderr[-4000:]}"
    assert f"error: 1 of 2 runs failed: {cell} " in proc.stderr, proc.stderr[-3000:]


def _completed(summary: dict) -> None:
    assert summary["status"] == "completed", summary.get("traceback", summary["status"])
    assert 0.0 <= summary["metrics"]["test/acc"] <= 1.0


@pytest.fixture(scope="module")
def oom_sweep(
    data_root, tmp_path_factory
) -> tuple[Path, list[str], subprocess.CompletedProcess, dict]:
    """A 2-cell sweep whose seed=1 cell hits a CUDA OOM at step 2; summaries as the sweep left them."""
    tmp = tmp_path_factory.mktemp("oom")
    args = _sweep_args(data_root, tmp)
    proc = run_cli(*args, env={**ENV, "ABLATE_FAULT": "oom_at_step:2@seed=1"})
    return tmp / "sweep", args, proc, summaries(tmp / "sweep")


def test_oom_in_one_cell_is_recorded_with_a_hint_and_the_other_cell_completes(oom_sweep):
    sweep, _, proc, found = oom_sweep
    _failed_cell(proc, "seed=1")
    assert sorted(found) == ["seed=0", "seed=1"]
    _completed(found["seed=0"])
    failed = found["seed=1"]
    assert failed["status"] == "failed"
    assert failed["error"].startswith("OutOfMemoryError: CUDA out of memory.")
    assert "Traceback" in failed["traceback"] and "torch.OutOfMemoryError" in failed["traceback"]
    assert failed["hint"] == OOM_HINT
    assert "data.batch_size" in failed["hint"] and "trainer.precision=bf16-mixed" in failed["hint"]
    assert OOM_HINT in (sweep / "seed=1" / "train.log").read_text()  # and in the run's log


def test_rerunning_the_sweep_finishes_only_the_failed_cell_and_keeps_its_error(oom_sweep):
    sweep, args, _, before = oom_sweep
    completed_before = (sweep / "seed=0" / "summary.json").read_bytes()
    proc = run_cli(*args, env=ENV)  # the same command, the fault gone
    assert proc.returncode == 0, proc.stderr[-4000:]
    # seed=0 was skipped (its summary.json untouched); seed=1 was trained again in its directory.
    assert (sweep / "seed=0" / "summary.json").read_bytes() == completed_before
    assert "already completed, skipped" in proc.stdout + proc.stderr
    assert not list(sweep.glob("*.old-*"))  # nothing moved aside: resume=auto re-runs in place
    after = summaries(sweep)["seed=1"]
    _completed(after)
    assert after["steps"] == 6  # from the start: the OOM at step 2 came before any last.ckpt
    assert "earlier_attempts" not in before["seed=1"]
    (earlier,) = after["earlier_attempts"]  # the failed attempt's record is kept, not overwritten
    assert {k: earlier[k] for k in ("status", "error", "hint", "traceback", "started_at")} == {
        k: before["seed=1"][k] for k in ("status", "error", "hint", "traceback", "started_at")
    }
    log = (sweep / "seed=1" / "train.log").read_text()  # appended to by the re-run, not replaced
    assert log.index("OutOfMemoryError") < log.index(OOM_HINT) < log.index("completed: test/acc=")


def test_dataloader_worker_killed_in_one_cell_is_recorded_and_the_next_cell_completes(
    data_root, tmp_path
):
    # The fault is in the first cell (seed=0): the second cell runs after a worker death in the
    # same process (PyTorch's SIGCHLD handler, the dead worker's iterator) and must be unaffected.
    args = _sweep_args(data_root, tmp_path, "data.num_workers=1", "data.on_device=false")
    proc = run_cli(*args, env={**ENV, "ABLATE_FAULT": "worker_death_at_step:2@seed=0"})
    _failed_cell(proc, "seed=0")
    found = summaries(tmp_path / "sweep")
    _completed(found["seed=1"])
    assert found["seed=1"]["data_path"] == "cpu"
    failed = found["seed=0"]
    assert failed["status"] == "failed"
    # PyTorch's own error, not one we made up: the worker was really SIGKILLed.
    assert failed["error"].startswith("RuntimeError: DataLoader worker (pid ")
    assert failed["error"].rstrip().endswith("is killed by signal: Killed.")  # its SIGCHLD handler
    assert "Traceback" in failed["traceback"] and "kill_a_loader_worker" in failed["traceback"]
    assert failed["hint"] == WORKER_DEATH_HINT and "data.num_workers=0" in failed["hint"]


def test_bad_option_combination_in_one_cell_is_recorded_and_the_other_cells_run(
    data_root, tmp_path
):
    """norm.groups=3 does not divide the width 4: that cell fails before training, the others run."""
    sweep = tmp_path / "sweep"
    args = [*_sweep_args(data_root, tmp_path, "norm=group"), "norm.groups=2,3"]
    args[args.index("seed=0,1")] = "seed=0"
    proc = run_cli(*args, env=ENV)
    _failed_cell(proc, "norm.groups=3")
    assert "error: norm.groups=3 does not divide the channel counts [4, 8]" in proc.stderr
    found = summaries(sweep)
    _completed(found["norm.groups=2"])
    failed = found["norm.groups=3"]
    assert failed["status"] == "failed" and failed["error"].startswith("ConfigError: norm.groups=3")
    assert not (sweep / "norm.groups=3" / "checkpoints").exists()  # rejected before training
    # Re-running the same sweep: the completed cell is skipped, the bad one is recorded again and
    # its first record kept; a single run with the same values still exits 2 and writes nothing.
    again = run_cli(*args, env=ENV)
    _failed_cell(again, "norm.groups=3")
    assert summaries(sweep)["norm.groups=3"]["earlier_attempts"][0]["error"] == failed["error"]
    single = tmp_path / "single"
    proc = run_cli(*fast_overrides(data_root, tmp_path), *TINY, "norm=group", "norm.groups=3",
                   f"hydra.run.dir={single}", env=ENV)  # fmt: skip
    assert proc.returncode == 2 and not (single / "summary.json").exists()


def test_fault_spec_targets_one_cell_and_malformed_specs_are_refused(monkeypatch):
    assert parse_fault("kill_at_step:7") == ("kill", 7, None)  # the original syntax
    assert parse_fault("oom_at_step:3@seed=1") == ("oom", 3, ("seed", "1"))
    assert parse_fault("worker_death_at_step:0@norm._target_=a.b=c") == (
        "worker_death",
        0,
        ("norm._target_", "a.b=c"),  # the value is everything after the first '='
    )
    cfg = OmegaConf.create(
        {"seed": 1, "norm": {"_target_": "ablate.techniques.norm.Batch"}, "x": None, "b": True}
    )
    assert fault_applies(("seed", "1"), cfg) and not fault_applies(("seed", "0"), cfg)
    assert fault_applies(("norm._target_", "ablate.techniques.norm.Batch"), cfg)
    assert fault_applies(("x", "null"), cfg) and fault_applies(("b", "true"), cfg)
    assert fault_applies(None, cfg) and fault_applies(None, None)
    with pytest.raises(
        ValueError, match="the config has no key 'sede'"
    ):  # a typo never fires silently
        fault_applies(("sede", "1"), cfg)

    for bad in (
        "oom_at_step:x",
        "oom_at_step:",
        "oom:3",
        "explode_at_step:3",
        "oom_at_step:3@",
        "oom_at_step:3@seed",
        "oom_at_step:3@=1",
    ):
        with pytest.raises(ValueError, match=r"expected <action>_at_step:<N>\[@<key>=<value>\]"):
            parse_fault(bad)

    monkeypatch.setenv("ABLATE_FAULT", "oom_at_step:3@seed=1")
    (fault,) = injected_faults(cfg)
    assert isinstance(fault, FaultInjection) and (fault.action, fault.step) == ("oom", 3)
    assert injected_faults(OmegaConf.create({"seed": 0})) == []
    monkeypatch.setenv("ABLATE_FAULT", "oom_at_step:3@seed:1")
    with pytest.raises(ValueError, match="ABLATE_FAULT=oom_at_step:3@seed:1"):
        injected_faults(cfg)
    monkeypatch.delenv("ABLATE_FAULT")
    assert injected_faults(cfg) == []


def test_failure_hints_name_the_fix():
    assert failure_hint(torch.cuda.OutOfMemoryError("CUDA out of memory. Tried ...")) == OOM_HINT
    assert failure_hint(RuntimeError("CUDA error: out of memory")) == OOM_HINT
    killed = RuntimeError("DataLoader worker (pid 123) is killed by signal: Killed. ")
    assert failure_hint(killed) == WORKER_DEATH_HINT
    try:  # found when it is the cause of what reached the top
        try:
            raise killed
        except RuntimeError as e:
            raise ValueError("wrapped") from e
    except ValueError as wrapped:
        assert failure_hint(wrapped) == WORKER_DEATH_HINT
    assert failure_hint(RuntimeError("injected fault at step 3")) is None


RESUMABLE = [  # as in test_reliability_runs: 2 epochs of 6 steps, last.ckpt every 4 steps
    "data.train_subset=192",
    "data.eval_train_max=64",
    "model.channels=[4,8]",
    "model.hidden=16",
    "trainer.max_epochs=2",
    "logger=csv",
    "aug=light",
    "reg=dropout",
    "callbacks.last_checkpoint.every_n_train_steps=4",
]


def _submitit_task_pids(sweep: Path) -> list[int]:
    """Pids of the processes submitit runs the jobs of this sweep in (`-m submitit.core._submit`)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"submitit.core._submit" in args and any(str(sweep).encode() in a for a in args):
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.slow
def test_submitit_preemption_signal_saves_at_the_next_step_requeues_and_resumes_exactly(
    data_root, tmp_path
):
    """submitit_local, preempted: USR2 (submitit's preemption/timeout signal) -> training stops at
    the end of the current batch -> SaveOnInterrupt saves last.ckpt at that step -> summary.json says
    interrupted there -> submitit's handler resubmits the job and exits 144 -> its controller starts
    it again -> resume=auto picks up that last.ckpt in the same run dir -> the same result as a run
    that was never stopped."""
    base = [a for a in fast_overrides(data_root, tmp_path) if a != "trainer.max_epochs=1"]
    common = ["-m", "seed=0", *base, *RESUMABLE]
    reference = tmp_path / "reference"
    ref = run_cli(*common, f"hydra.sweep.dir={reference}", env=ENV)
    assert ref.returncode == 0, ref.stderr[-3000:]

    sweep = tmp_path / "sweep"
    # timeout_min=60 (the default): a signal in the first 48 minutes counts as a preemption, not a
    # timeout (submitit/core/job_environment.py SignalHandler.has_timed_out).
    args = [*common, "hydra/launcher=submitit_local", "hydra.launcher.timeout_min=60"]
    proc = forked_cli.Started(["-m", "ablate.train", *args, f"hydra.sweep.dir={sweep}"], REPO,
                              {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **ENV})  # fmt: skip
    deadline = time.time() + 300
    while not (last := list(sweep.glob("*/checkpoints/last.ckpt"))):  # step 4 of 12: mid-training
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.05)
    run = last[0].parent.parent  # one cell; named by all its overrides, as none is swept
    (task,) = _submitit_task_pids(sweep)
    os.kill(task, signal.SIGUSR2)
    # The first attempt records itself as interrupted before submitit requeues it; its last.ckpt is
    # read before the requeued job (a new process, seconds to start) can write the next one.
    while (first := _summary_status(run / "summary.json")) is None:
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.02)
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]

    assert first["status"] == "interrupted", first
    stopped = first["interrupted_at_step"]
    assert 4 <= stopped < 12 and first["steps"] == stopped
    assert saved["global_step"] == stopped  # saved at the signal, not the periodic step-4 one
    (s,) = summaries(sweep).values()
    assert s["status"] == "completed" and s["steps"] == 12
    (earlier,) = s["earlier_attempts"]
    assert earlier["status"] == "interrupted" and earlier["interrupted_at_step"] == stopped
    logs = "".join(p.read_text() for p in (sweep / ".submitit").rglob("*_log.*"))
    assert "this job is preempted" in logs and "Requeued job" in logs
    train_log = (run / "train.log").read_text()
    assert "SIGUSR2 (submitit preemption/timeout): stopping at the next batch" in train_log
    if stopped % 6:  # mid-epoch: saved at the signal (at an epoch's end last.ckpt is already there)
        saved_msg = f"SIGTERMException at step {stopped}: saved {run / 'checkpoints' / 'last.ckpt'}"
        assert saved_msg in train_log
    assert "resuming the interrupted run" in train_log
    assert "SystemExit" not in train_log  # nothing was raised in the middle of a step
    (r,) = summaries(reference).values()
    timing = lambda m: {k: v for k, v in m.items() if not k.startswith("perf/")}  # noqa: E731
    assert timing(s["metrics"]) == timing(r["metrics"]) and s["history"] == r["history"]


def _summary_status(path: Path) -> dict | None:
    """summary.json once it records an ended attempt (it is written atomically), else None."""
    try:
        summary = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return summary if summary.get("status") not in (None, "running") else None


class _FakeSubmitit(SignalHandler):
    """submitit's handler, recording its calls; its real one resubmits the job and exits 144."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    def checkpoint_and_try_requeue(self, signum, frame=None) -> None:
        self.calls.append(signum)
        raise SystemExit(144)


class _SignalAt(L.Callback):
    """Sends `sig` to this process at the start of training step `step`."""

    def __init__(self, sig: int, step: int) -> None:
        self.sig, self.step = sig, step

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.sig)


@pytest.fixture
def under_submitit(monkeypatch):
    """This process as a submitit job: submitit's SIGUSR2 handler bound, a fresh PREEMPTION."""
    fake = _FakeSubmitit()
    monkeypatch.setattr(preemption, "PREEMPTION", preemption.SubmititPreemption())
    saved = {s: signal.getsignal(s) for s in (signal.SIGUSR2, signal.SIGTERM)}
    signal.signal(signal.SIGUSR2, fake.checkpoint_and_try_requeue)
    yield fake
    for s, handler in saved.items():
        signal.signal(s, handler)


def _fit_until_signal(tmp_path: Path, sig: int, at_step: int) -> Path:
    """A small fit that gets `sig` at step `at_step`; returns last.ckpt once SIGTERMException ends it."""
    ckpt = ModelCheckpoint(dirpath=tmp_path, save_top_k=0, save_last=True, every_n_train_steps=2)
    trainer = L.Trainer(
        max_steps=20, logger=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[ckpt, SaveOnInterrupt(), _SignalAt(sig, at_step)], default_root_dir=tmp_path,
        limit_val_batches=0, accelerator="cpu",
    )  # fmt: skip
    with pytest.raises(SIGTERMException):
        trainer.fit(BoringModel())
    return tmp_path / "last.ckpt"


def _step(ckpt: Path) -> int:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["global_step"]


def test_submitit_signal_during_fit_stops_at_the_batch_end_saves_then_requeues(
    under_submitit, tmp_path
):
    last = _fit_until_signal(tmp_path, signal.SIGUSR2, at_step=3)
    assert under_submitit.calls == []  # not in the middle of the step: the fit stopped first
    assert _step(last) == 4  # saved after the batch the signal came in, not the periodic step 2
    with pytest.raises(SystemExit) as exit_:
        preemption.PREEMPTION.requeue_if_preempted()
    assert exit_.value.code == 144 and under_submitit.calls == [signal.SIGUSR2]
    assert preemption.PREEMPTION.requeuing
    assert signal.getsignal(signal.SIGUSR2) == preemption.PREEMPTION._on_signal


def test_submitit_signal_outside_a_fit_goes_to_submitit_at_once(under_submitit, tmp_path):
    _fit_until_signal(tmp_path, signal.SIGTERM, at_step=1)  # arms, then disarms on the exception
    with pytest.raises(SystemExit):
        os.kill(os.getpid(), signal.SIGUSR2)
        time.sleep(1)  # the handler raises out of this sleep
    assert under_submitit.calls == [signal.SIGUSR2] and preemption.PREEMPTION.requeuing


def test_slurm_sigterm_waits_for_submitit_signal_to_requeue(under_submitit, tmp_path, monkeypatch):
    """SLURM's preemption: SIGTERM (Lightning stops the fit) and SIGUSR2 (submitit requeues)."""
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    assert _step(_fit_until_signal(tmp_path, signal.SIGTERM, at_step=3)) == 4
    threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGUSR2)).start()
    with pytest.raises(SystemExit):
        preemption.PREEMPTION.requeue_if_preempted()
    assert under_submitit.calls == [signal.SIGUSR2]


def test_slurm_sigterm_alone_is_no_requeue_and_plain_runs_are_unchanged(
    under_submitit, tmp_path, monkeypatch
):
    monkeypatch.setenv("SUBMITIT_EXECUTOR", "slurm")
    monkeypatch.setattr(preemption, "SLURM_USR_SIGNAL_WAIT_S", 0.2)
    _fit_until_signal(tmp_path / "a", signal.SIGTERM, at_step=3)  # a scancel: no SIGUSR2 follows
    preemption.PREEMPTION.requeue_if_preempted()  # returns: train.py exits 143, not requeued
    assert under_submitit.calls == [] and not preemption.PREEMPTION.requeuing

    signal.signal(signal.SIGUSR2, signal.SIG_DFL)  # not under submitit
    monkeypatch.setattr(preemption, "PREEMPTION", preemption.SubmititPreemption())
    _fit_until_signal(tmp_path / "b", signal.SIGTERM, at_step=3)
    assert not preemption.PREEMPTION.active
    assert signal.getsignal(signal.SIGUSR2) == signal.SIG_DFL
    preemption.PREEMPTION.requeue_if_preempted()  # returns at once
