"""Parallel and cluster launchers, the Optuna search, and a failed cell that does not stop a sweep."""

from __future__ import annotations

import os

import pytest
from conftest import assert_ok, fast_overrides, run_cli, summaries


def test_joblib_runs_cells_in_parallel_with_threads_split(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    assert_ok(
        run_cli(
            "-m",
            "hydra/launcher=joblib",
            "hydra.launcher.n_jobs=2",
            "norm=batch,group",
            *fast_overrides(data_root, tmp_path),
            f"hydra.sweep.dir={sweep}",
        )
    )
    found = summaries(sweep)
    assert sorted(found) == [
        "norm=batch",
        "norm=group",
    ]  # named by the swept key, also in worker processes
    for s in found.values():
        assert s["status"] == "completed" and s["swept"] == ["norm"]
        assert s["threads"] == 1  # 2 cores / 2 parallel runs (os.cpu_count() is 2 here and in CI)


@pytest.mark.slow
def test_submitit_local_launcher_runs_a_sweep(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    assert_ok(
        run_cli(
            "-m",
            "hydra/launcher=submitit_local",
            "hydra.launcher.timeout_min=10",
            "reg=none,dropout",
            *fast_overrides(data_root, tmp_path),
            f"hydra.sweep.dir={sweep}",
        )
    )
    found = summaries(sweep)
    assert sorted(found) == ["reg=dropout", "reg=none"]
    assert all(s["status"] == "completed" for s in found.values())


def test_optuna_search_runs_trials_and_records_them(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    assert_ok(
        run_cli(
            "-m",
            "hparams_search=optuna",
            "hydra.sweeper.n_trials=3",
            *fast_overrides(data_root, tmp_path),
            f"hydra.sweep.dir={sweep}",
            env={"SQLALCHEMY_SILENCE_UBER_WARNING": "1"},
        )
    )
    found = summaries(sweep)
    assert len(found) == 3
    for s in found.values():
        assert s["status"] == "completed"
        assert set(s["swept"]) == {"optim.lr", "reg.weight_decay", "reg.dropout"}
        assert 0.003 <= s["config"]["optim"]["lr"] <= 0.3
    assert (sweep / "optimization_results.yaml").exists()


@pytest.mark.parametrize(("omp", "expected"), [("3", 3), ("", None), ("0", None), ("x", None)])
def test_auto_threads_follow_omp_num_threads(monkeypatch, omp, expected):
    """threads=auto takes OMP_NUM_THREADS when it names a positive count, else every core."""
    from ablate.run.threads import available_cores

    monkeypatch.setenv("OMP_NUM_THREADS", omp)
    assert available_cores() == (expected or os.cpu_count())
