"""Robust sweeps: divergence is a recorded result, re-runs skip finished cells, killed runs resume."""

from __future__ import annotations

import json
import os
import signal
import time

import forked_cli
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries


def test_diverged_run_is_recorded_and_the_sweep_goes_on(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    # max_loss=0.5 is below the ~2.3 loss of the first step: that run must stop as diverged.
    proc = run_cli(
        "-m", "max_loss=1000,0.5", *fast_overrides(data_root, tmp_path), f"hydra.sweep.dir={sweep}"
    )
    assert_ok(proc)
    found = summaries(sweep)
    assert found["max_loss=1000"]["status"] == "completed"
    diverged = found["max_loss=0.5"]
    assert diverged["status"] == "diverged" and diverged["diverged_at_step"] == 1
    assert "test/acc" not in diverged["metrics"]


def test_nan_loss_is_diverged(data_root, tmp_path):
    run = tmp_path / "run"
    assert_ok(
        run_cli(
            *fast_overrides(data_root, tmp_path),
            "norm=none",
            "optim.lr=1e12",
            f"hydra.run.dir={run}",
        )
    )
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "diverged" and s["diverged_at_step"] >= 1


def test_rerunning_a_sweep_skips_finished_cells(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    args = [
        "-m",
        "norm=batch,group",
        *fast_overrides(data_root, tmp_path),
        f"hydra.sweep.dir={sweep}",
    ]
    assert_ok(run_cli(*args))
    files_before = {
        p: p.stat().st_mtime_ns for p in sweep.rglob("*") if p.is_file() and ".hydra" not in p.parts
    }
    summaries_before = {p: p.read_bytes() for p in sweep.rglob("summary.json")}
    again = run_cli(*args)
    assert_ok(again)
    assert again.stdout.count("skipped") + again.stderr.count("skipped") == 2
    assert {p: p.read_bytes() for p in sweep.rglob("summary.json")} == summaries_before
    events_after = {p for p in sweep.rglob("events.out.tfevents.*")}
    assert events_after == {
        p for p in files_before if p.name.startswith("events.out")
    }  # no new training logged
    assert not any(
        p.stat().st_mtime_ns != t
        for p, t in files_before.items()
        if p.name not in ("train.log", "multirun.yaml")
    )


def test_killed_run_resumes_from_its_last_checkpoint(data_root, tmp_path):
    run = tmp_path / "run"
    args = [*fast_overrides(data_root, tmp_path), "trainer.max_epochs=6", f"hydra.run.dir={run}"]
    args = [a for a in args if a != "trainer.max_epochs=1"]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "OMP_NUM_THREADS": "1"}
    proc = forked_cli.Started(["-m", "ablate.train", *args], REPO, env)
    last = run / "checkpoints" / "last.ckpt"
    deadline = time.time() + 120
    while not last.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed = json.loads((run / "summary.json").read_text())
    assert killed["status"] == "running", "the run finished before it could be killed"
    resumed = run_cli(*args)
    assert_ok(resumed)
    assert "resuming the interrupted run" in resumed.stdout + resumed.stderr
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["epochs"] == 6
    assert [h["epoch"] for h in s["history"]] == list(range(6))  # the curve survives the restart
