"""Faults injected into real runs: SIGKILL, SIGTERM, a damaged checkpoint, a kill mid-write, a
failing sweep cell, two processes on one directory. Each test asserts what the user gets back."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import forked_cli
import pytest
import torch
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries
from filelock import FileLock

from ablate.run.checkpoint import AtomicCheckpointIO

TINY = [
    "data.train_subset=192",
    "data.eval_train_max=64",
    "model.channels=[4,8]",
    "model.hidden=16",
]
# Two epochs of 6 steps, last.ckpt every 4 steps; dropout and augmentation draw random numbers,
# so an exact match after a restart needs every RNG stream and the loader's position back. A
# max-norm limit that binds: its count of projections (summary.json's "techniques") must carry on.
RESUMABLE = [
    *TINY,
    "trainer.max_epochs=2",
    "logger=csv",
    "aug=light",
    "reg=dropout",
    "reg.max_norm=1.0",
    "callbacks.last_checkpoint.every_n_train_steps=4",
]
ENV = {"OMP_NUM_THREADS": "1"}


def _args(data_root: Path, tmp: Path, run: Path, *extra: str) -> list[str]:
    base = [a for a in fast_overrides(data_root, tmp) if a != "trainer.max_epochs=1"]
    return [*base, *RESUMABLE, *extra, f"hydra.run.dir={run}"]


def _summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


def _popen(args: list[str], env: dict | None = None) -> forked_cli.Started:
    """`python -m ablate.train <args>` with Ctrl-C as in a terminal (forked: tests/forked_cli.py)."""
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", **ENV, **(env or {})}
    return forked_cli.Started(["-m", "ablate.train", *args], REPO, env)


def _wait_for(path: Path, proc: forked_cli.Started, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not path.exists():
        assert proc.poll() is None, f"exited {proc.returncode} before {path} appeared"
        assert time.time() < deadline, f"{path} did not appear"
        time.sleep(0.05)


def assert_same_result(reference: Path, run: Path) -> None:
    """Same metrics (timings aside), learning curve and final weights, bit for bit."""
    a, b = _summary(reference), _summary(run)
    assert b["status"] == "completed" and b["steps"] == a["steps"] == 12
    timing = lambda m: {k: v for k, v in m.items() if not k.startswith("perf/")}  # noqa: E731
    assert timing(b["metrics"]) == timing(a["metrics"])
    assert b["history"] == a["history"]
    assert b["techniques"] == a["techniques"]  # counted before the restart, kept in last.ckpt
    wa, wb = (
        torch.load(r / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
        for r in (reference, run)
    )
    assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


@pytest.fixture(scope="module")
def reference(data_root, tmp_path_factory) -> Path:
    """The uninterrupted run every restarted run must reproduce."""
    tmp = tmp_path_factory.mktemp("reference")
    assert_ok(run_cli(*_args(data_root, tmp, tmp / "run"), env=ENV))
    return tmp / "run"


def test_sigkill_mid_epoch_resumes_to_the_same_result(data_root, tmp_path, reference):
    run = tmp_path / "run"
    args = _args(data_root, tmp_path, run)
    # Killed at the start of step 10 (epoch 1, batch 4); last.ckpt holds step 8, mid-epoch.
    killed = run_cli(*args, env={**ENV, "ABLATE_FAULT": "kill_at_step:10"})
    assert killed.returncode == -signal.SIGKILL
    assert _summary(run)["status"] == "running"
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 8
    resumed = run_cli(*args, env=ENV)  # the same command
    assert_ok(resumed)
    assert "resuming the interrupted run" in resumed.stdout + resumed.stderr
    assert_same_result(reference, run)
    counted = _summary(reference)["techniques"]
    assert counted["max_norm"]["steps"] == 12 and counted["max_norm"]["projections"] > 0
    assert counted["dropout"]["measured"] and counted["dropout"]["acted"]


def _csv_steps(run: Path) -> list[tuple[str, str]]:
    """(step, metric names) of each row the CSV logger wrote: the loggers' x-axis."""
    import csv

    rows = list(csv.DictReader(next(run.rglob("metrics.csv")).open()))
    return [
        (r["step"], ",".join(sorted(k for k, v in r.items() if v and k != "step"))) for r in rows
    ]


def test_steps_per_call_trains_the_same_run_with_the_same_log_steps(data_root, tmp_path, reference):
    """Two SGD steps per Lightning batch: weights, metrics, curve and counts bit for bit, and every
    logged point at the same step as with one step per batch."""
    run = tmp_path / "run"
    proc = run_cli(*_args(data_root, tmp_path, run, "steps_per_call=2"), env=ENV)
    assert_ok(proc)
    assert _summary(run)["steps_per_call"] == 2
    assert_same_result(reference, run)
    assert _csv_steps(run) == _csv_steps(reference)


def test_sigkill_mid_chunked_run_resumes_with_its_own_steps_per_call(
    data_root, tmp_path, reference
):
    """Killed at step 10 with 2 steps per batch, resumed by a command asking for 1: the run keeps
    the chunks its checkpoint counted and ends as the uninterrupted run does."""
    run = tmp_path / "run"
    killed = run_cli(*_args(data_root, tmp_path, run, "steps_per_call=2"),
                     env={**ENV, "ABLATE_FAULT": "kill_at_step:10"})  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(*_args(data_root, tmp_path, run, "steps_per_call=1"), env=ENV)
    assert_ok(resumed)
    assert "steps_per_call=2: the interrupted run's own" in resumed.stdout + resumed.stderr
    assert_same_result(reference, run)


def test_a_steps_per_call_that_splits_an_event_is_refused_in_one_line(data_root, tmp_path):
    run = tmp_path / "run"
    proc = run_cli(*_args(data_root, tmp_path, run, "steps_per_call=5"), env=ENV)
    assert proc.returncode == 2, proc.stderr[-2000:]
    line = next(x for x in proc.stderr.splitlines() if "steps_per_call=5" in x)
    assert "does not divide" in line and "use steps_per_call=auto" in line
    assert not (run / "summary.json").exists()


def test_sigkill_with_loader_workers_resumes_to_the_result_without_workers(
    data_root, tmp_path, reference
):
    """Each augmented batch draws from its own seed (seed, epoch, rank, batch number), so a run
    with a DataLoader worker process, killed in its second epoch and resumed, ends bit for bit
    where the uninterrupted run without workers ends."""
    run = tmp_path / "run"
    args = _args(data_root, tmp_path, run, "data.num_workers=1", "data.on_device=false")
    killed = run_cli(*args, env={**ENV, "ABLATE_FAULT": "kill_at_step:10"})
    assert killed.returncode == -signal.SIGKILL
    assert_ok(run_cli(*args, env=ENV))
    assert_same_result(reference, run)


def test_sigterm_saves_exits_143_and_the_same_command_resumes(data_root, tmp_path, reference):
    run = tmp_path / "run"
    args = _args(data_root, tmp_path, run)
    proc = _popen(args)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)  # mid-training: the first save is at step 4
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    s = _summary(run)
    assert s["status"] == "interrupted" and 4 <= s["interrupted_at_step"] < 12
    assert "run the same command to resume" in out + err
    assert_ok(run_cli(*args, env=ENV))
    assert_same_result(reference, run)


def test_ctrl_c_stops_at_a_batch_saves_and_the_same_command_resumes(data_root, tmp_path, reference):
    """Ctrl-C stops the fit after the current batch (not inside it, as Lightning's own handling
    would), records the run as interrupted, ends as Ctrl-C ends a program, and resumes exactly."""
    run = tmp_path / "run"
    args = _args(data_root, tmp_path, run)
    proc = _popen(args)
    _wait_for(run / "checkpoints" / "last.ckpt", proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGINT, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    assert err.rstrip().endswith("ablate.train: interrupted; the same command resumes")
    s = _summary(run)
    assert s["status"] == "interrupted" and 4 <= s["interrupted_at_step"] < 12
    assert_ok(run_cli(*args, env=ENV))
    assert_same_result(reference, run)


def test_damaged_last_checkpoint_is_refused_until_resume_fresh(data_root, tmp_path):
    run = tmp_path / "run"
    args = _args(data_root, tmp_path, run, "trainer.max_epochs=1")
    # An interrupted run whose last.ckpt is cut in half, as a torn write or a bad copy would leave it.
    last = run / "checkpoints" / "last.ckpt"
    last.parent.mkdir(parents=True)
    torch.save({"state_dict": {"w": torch.zeros(1000)}}, last)
    last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    overrides = [a for a in args if not a.startswith("hydra.")]
    (run / "summary.json").write_text(json.dumps({"status": "running", "overrides": overrides}))
    damaged, summary_before = last.read_bytes(), (run / "summary.json").read_bytes()

    refused = run_cli(*args, env=ENV)
    assert refused.returncode == 2
    errors = [line for line in refused.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(last) in errors[0] and "resume=fresh" in errors[0]
    assert last.read_bytes() == damaged and (run / "summary.json").read_bytes() == summary_before

    assert_ok(run_cli(*args, "resume=fresh", env=ENV))
    assert _summary(run)["status"] == "completed"
    (aside,) = tmp_path.glob("run.old-*")  # the earlier run, moved aside whole
    assert (aside / "checkpoints" / "last.ckpt").read_bytes() == damaged
    assert (aside / "summary.json").read_bytes() == summary_before


def test_atomic_checkpoint_write_survives_an_error_and_a_kill_mid_write(tmp_path):
    path = tmp_path / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"w": torch.ones(3)}, path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("serialization fails halfway")

    with pytest.raises(RuntimeError):
        AtomicCheckpointIO().save_checkpoint({"w": torch.zeros(10**6), "x": Unpicklable()}, path)
    assert torch.equal(torch.load(path)["w"], torch.ones(3))
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temp file left behind

    writer = textwrap.dedent(f"""
        import time
        from ablate.run.atomic import write_atomic
        def slow(f):
            for _ in range(1000):
                f.write(b"x" * 65536); f.flush(); time.sleep(0.01)
        write_atomic({str(path)!r}, slow)
    """)
    proc = subprocess.Popen([sys.executable, "-c", writer], cwd=REPO)
    deadline = time.time() + 60
    while not any(p.suffix == ".tmp" and p.stat().st_size for p in tmp_path.iterdir()):
        assert time.time() < deadline and proc.poll() is None
        time.sleep(0.02)
    proc.kill()
    proc.wait()
    assert torch.equal(torch.load(path)["w"], torch.ones(3))  # readers only ever see whole files


def test_failed_sweep_cell_is_recorded_and_counted_in_the_exit_code(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    # 100000 exceeds the toy training split: that cell fails while building its data.
    proc = run_cli(
        "-m",
        "data.train_subset=96,100000,128",
        *fast_overrides(data_root, tmp_path),
        *TINY[1:],
        f"hydra.sweep.dir={sweep}",
        env=ENV,
    )
    assert proc.returncode == 1, proc.stderr[-3000:]
    assert "error: 1 of 3 runs failed: data.train_subset=100000" in proc.stderr
    found = summaries(sweep)
    assert found["data.train_subset=96"]["status"] == "completed"
    assert found["data.train_subset=128"]["status"] == "completed"
    failed = found["data.train_subset=100000"]
    assert failed["status"] == "failed" and "is more than the" in failed["error"]
    assert "\n" not in failed["error"].strip()  # the refusal's one line, not a traceback


def test_a_second_sweep_into_a_running_sweeps_dir_is_refused(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "norm=batch,group,layer,none",
        "seed=0,1,2",
        *fast_overrides(data_root, tmp_path),
        f"hydra.sweep.dir={sweep}",
    ]
    first = _popen(args)
    # 12 cells: the first sweep is still at work while the second starts (a refused command no
    # longer imports Lightning, but a sweep must, ~5 s: 6 tiny cells could all end before that).
    _wait_for(sweep / "norm=batch,seed=0" / "summary.json", first)
    second = run_cli(*args, env=ENV)
    assert second.returncode == 2
    assert f"error: another sweep is running in {sweep}" in second.stderr
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err[-3000:]
    found = summaries(sweep)
    assert sorted(found) == [
        f"norm={n},seed={s}" for n in ("batch", "group", "layer", "none") for s in (0, 1, 2)
    ]
    assert {s["status"] for s in found.values()} == {"completed"}


def test_a_run_dir_in_use_by_another_process_is_refused(data_root, tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", f"from filelock import FileLock; lock = FileLock({str(run / '.run.lock')!r}); lock.acquire(); "
         "print('held', flush=True); import time; time.sleep(120)"],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        proc = run_cli(*fast_overrides(data_root, tmp_path), *TINY, f"hydra.run.dir={run}", env=ENV)
    finally:
        holder.kill()
        holder.wait()
    assert proc.returncode == 2
    assert f"error: {run} is in use by another process" in proc.stderr
    assert not (run / "summary.json").exists()
    with FileLock(run / ".run.lock", timeout=0):  # released when its holder died
        pass


# --- the same command finds its run: no explicit folder --------------------------------------


def _plain_args(data_root: Path, tmp: Path, *extra: str) -> list[str]:
    """What a user types: no hydra.run.dir, so the folder comes from the overrides."""
    base = [a for a in fast_overrides(data_root, tmp) if a != "trainer.max_epochs=1"]
    return [*base, *RESUMABLE, *extra]


def _only_run(tmp: Path) -> Path:
    (run,) = (tmp / "logs" / "runs").iterdir()
    return run


def test_sigkill_then_the_same_plain_command_resumes(data_root, tmp_path, reference):
    args = _plain_args(data_root, tmp_path)
    killed = run_cli(*args, env={**ENV, "ABLATE_FAULT": "kill_at_step:10"})
    assert killed.returncode == -signal.SIGKILL
    resumed = run_cli(*args, env=ENV)
    assert_ok(resumed)
    assert "resuming the interrupted run" in resumed.stdout + resumed.stderr
    assert_same_result(reference, _only_run(tmp_path))  # one folder: the same run, finished
    again = run_cli(*args, env=ENV)  # finished: skipped, nothing rewritten
    assert_ok(again)
    assert "already completed, skipped" in again.stdout + again.stderr


def test_sigterm_then_the_same_plain_command_resumes(data_root, tmp_path, reference):
    args = _plain_args(data_root, tmp_path)
    proc = _popen(args)
    deadline = time.time() + 120
    while not list((tmp_path / "logs").glob("runs/*/checkpoints/last.ckpt")):
        assert proc.poll() is None and time.time() < deadline, proc.poll()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err[-3000:]
    assert _summary(_only_run(tmp_path))["status"] == "interrupted"
    assert_ok(run_cli(*args, env=ENV))
    assert_same_result(reference, _only_run(tmp_path))


def test_an_adhoc_sweep_resumes_its_killed_cell_with_the_same_command(data_root, tmp_path):
    args = ["-m", *_plain_args(data_root, tmp_path, "trainer.max_epochs=1"), "norm=none,batch"]
    killed = run_cli(
        *args,
        env={**ENV, "ABLATE_FAULT": "kill_at_step:4@norm._target_=ablate.techniques.norm.batch"},
    )
    assert killed.returncode == -signal.SIGKILL
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    first = json.loads((sweep / "norm=none" / "summary.json").read_text())
    assert first["status"] == "completed"
    assert_ok(run_cli(*args, env=ENV))
    assert [p.name for p in (tmp_path / "logs" / "multiruns").iterdir()] == [sweep.name]
    found = summaries(sweep)
    assert {k: v["status"] for k, v in found.items()} == {
        "norm=none": "completed",
        "norm=batch": "completed",
    }
    assert found["norm=none"]["started_at"] == first["started_at"]  # skipped, not re-run


def test_cells_that_failed_for_missing_data_complete_once_data_dir_points_at_it(
    data_root, tmp_path
):
    common = [a for a in fast_overrides(data_root, tmp_path) if not a.startswith("data.root=")]
    args = ["-m", *common, *TINY, "norm=none,batch"]
    missing = run_cli(*args, env={**ENV, "DATA_DIR": str(tmp_path / "nowhere")})
    assert missing.returncode != 0 and "not found" in missing.stderr
    assert_ok(run_cli(*args, env={**ENV, "DATA_DIR": str(data_root)}))
    statuses = {v["status"] for v in summaries(tmp_path / "logs" / "multiruns").values()}
    assert statuses == {"completed"}


def test_resume_fresh_moves_the_old_run_outside_the_sweeps_runs(data_root, tmp_path):
    from ablate.report import load_sweep

    args = ["-m", *fast_overrides(data_root, tmp_path), *TINY, "norm=none,batch"]
    assert_ok(run_cli(*args, env=ENV))
    assert_ok(run_cli(*args, "resume=fresh", env=ENV))
    (sweep,) = (tmp_path / "logs" / "multiruns").iterdir()
    assert len([p for p in sweep.iterdir() if ".old-" in p.name]) == 2  # kept, not deleted
    assert sorted(r.name for r in load_sweep(sweep).runs) == ["norm=batch", "norm=none"]


def test_a_checkpoint_from_before_the_curve_callback_resumes_to_the_same_result(
    data_root, tmp_path, reference
):
    """Until ablate.training, the module kept the learning curve in checkpoints: "history" at the
    top level, the running train loss in its state_dict. A run killed with such a last.ckpt resumes
    to the uninterrupted run's result, learning curve included."""
    run = tmp_path / "run"
    args = _args(data_root, tmp_path, run)
    killed = run_cli(*args, env={**ENV, "ABLATE_FAULT": "kill_at_step:10"})
    assert killed.returncode == -signal.SIGKILL
    path = run / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=False)
    curve = ckpt["callbacks"].pop("LearningCurve")
    assert [h["step"] for h in curve["history"]] == [6]
    assert curve["train_loss_since_val"]["weight"] == 2  # steps 7 and 8
    ckpt["history"] = curve["history"]
    for name, value in curve["train_loss_since_val"].items():
        ckpt["state_dict"][f"_train_loss_since_val.{name}"] = value
    torch.save(ckpt, path)
    assert_ok(run_cli(*args, env=ENV))
    assert_same_result(reference, run)
