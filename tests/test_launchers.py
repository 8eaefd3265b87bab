"""Parallel and cluster launchers, the Optuna search, and a failed cell that does not stop a sweep."""

from __future__ import annotations

import os
import signal
import time

import forked_cli
import pytest
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries


@pytest.mark.parametrize("launcher", ["hydra/launcher=joblib", "hydra/launcher=grouped"])
def test_ctrl_c_stops_a_parallel_sweep_with_every_run_saved_and_the_same_command_resumes(
    data_root, tmp_path, launcher
):
    """Ctrl-C (SIGINT to the sweep's process group, at seed 0's step 3) while 2 runs train at a time:
    each started run is saved and recorded `interrupted`, the job not started stays so, the sweep ends
    as Ctrl-C ends a program; the same command then completes all three, each on half the cores."""
    sweep = tmp_path / "sweep"
    args = ["-m", launcher, "hydra.launcher.n_jobs=2", "seed=0,1,2",
            *fast_overrides(data_root, tmp_path), f"hydra.sweep.dir={sweep}"]  # fmt: skip
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "ABLATE_FAULT": "ctrl_c_at_step:3@seed=0"}
    proc = forked_cli.Started(["-m", "ablate.train", *args], REPO, env, new_session=True)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGINT, err[-3000:]
    assert err.rstrip().endswith("ablate.train: interrupted; the same command resumes")
    assert "Traceback" not in err, err[-3000:]
    for _ in range(100):  # no worker outlives its sweep (loky's end a moment after the launcher)
        try:
            os.killpg(proc.pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail("a worker of the stopped sweep is still running")
    stopped = summaries(sweep)
    first = stopped["seed=0"]
    assert first["status"] == "interrupted" and first["interrupted_at_step"] == 4
    assert {s["status"] for s in stopped.values()} <= {"interrupted", "completed"}, stopped
    assert "seed=2" not in stopped or stopped["seed=2"]["status"] != "completed"  # started after it

    assert_ok(run_cli(*args))
    found = summaries(sweep)
    assert sorted(found) == [
        "seed=0",
        "seed=1",
        "seed=2",
    ]  # the swept key names them in workers too
    for s in found.values():
        assert s["status"] == "completed" and s["swept"] == ["seed"]
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


def test_the_grouped_launcher_composes_each_job_once_as_hydra_would(tmp_path):
    """Hydra's sweeper composes each job to check the batch, the launcher composes it again: the
    launcher's config loader keeps the first composition, and hands each job the same config."""
    from hydra import compose, initialize_config_dir
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.utils import create_automatic_config_search_path
    from omegaconf import OmegaConf

    from ablate.composed import compose_once
    from ablate.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        master = compose("train", overrides=[f"log_dir={tmp_path}"], return_hydra_config=True)
    search_path = create_automatic_config_search_path(None, None, str(CONF_DIR))
    plain, once = ConfigLoaderImpl(search_path), ConfigLoaderImpl(search_path)
    calls = []
    real = once.load_configuration
    once.load_configuration = lambda *a, **k: calls.append(k["overrides"]) or real(*a, **k)
    compose_once(once)
    jobs = [["norm=batch", "seed=0"], ["norm=batch", "seed=1"], ["norm=none", "seed=0"]]
    checked = [once.load_sweep_config(master, job) for job in jobs]  # the sweeper's check
    launched = [once.load_sweep_config(master, job) for job in jobs]  # the launcher's
    assert len(calls) == len(jobs)
    for job, a, b in zip(jobs, checked, launched, strict=True):
        expected = OmegaConf.to_container(plain.load_sweep_config(master, job))
        assert OmegaConf.to_container(a) == OmegaConf.to_container(b) == expected
        assert a is not b  # what the check did to its copy does not reach the job
    assert once.load_sweep_config(master, jobs[0]) is not launched[0]  # a third call composes anew
    assert len(calls) == len(jobs) + 1


def test_a_sweep_takes_the_jobs_its_config_check_composed(tmp_path):
    """The command-line check composes the first job and one per other swept value: the sweep takes
    those (the same configs Hydra composes) and composes only the other jobs, each once."""
    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
    from hydra._internal.utils import create_automatic_config_search_path
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from hydra.types import RunMode
    from omegaconf import OmegaConf

    from ablate.composed import compose_once
    from ablate.config import CONF_DIR
    from ablate.preflight import command_line_problems

    argv = ["experiment=bn_mlp_quick", "norm=none,batch", "seed=0,1,2", "init=gaussian", "optim.momentum=0.0",
            "data.standardize=true", f"log_dir={tmp_path}", "hydra.job.chdir=false"]  # fmt: skip
    assert command_line_problems(["-m", *argv]) == []
    search_path = create_automatic_config_search_path(None, None, str(CONF_DIR))
    plain, once = ConfigLoaderImpl(search_path), ConfigLoaderImpl(search_path)
    # the sweep's master config as `-m` composes it (hydra._internal.utils._run_app adds the mode)
    master = plain.load_configuration(
        "train", overrides=[*argv, "hydra.mode=MULTIRUN"], run_mode=RunMode.MULTIRUN
    )
    params = [f"{k}={v}" for k, v in master.hydra.sweeper.params.items()]
    task = list(master.hydra.overrides.task)
    (jobs,) = BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides(params + task), None
    )
    calls = []
    real = once.load_configuration
    once.load_configuration = lambda *a, **k: calls.append(k["overrides"]) or real(*a, **k)
    compose_once(once)
    checked = [once.load_sweep_config(master, job) for job in jobs]  # the sweeper's check
    launched = [once.load_sweep_config(master, job) for job in jobs]  # the launcher's
    assert (
        len(jobs) == 6 and len(calls) == 2
    )  # 4 jobs composed by the check: (none|batch, 0), (none, 1|2)
    for job, a, b in zip(jobs, checked, launched, strict=True):
        expected = OmegaConf.to_container(plain.load_sweep_config(master, job))
        assert OmegaConf.to_container(a) == OmegaConf.to_container(b) == expected, job


def test_a_worker_hands_back_a_stopped_job_and_starts_none_after_the_signal(monkeypatch):
    """A job ended by Ctrl-C (saved) comes back as a value, so the pool never sees a worker end
    (which made it kill the other workers, one of them still saving); the jobs the worker gets
    afterwards do not start; the launcher then ends as Ctrl-C ends a program. A worker's first
    Ctrl-C in a job is noted (its fit stops after a batch: ablate.run.ctrl_c), a second raises."""
    import signal

    from ablate.run import parallel_stop

    def pressed(times: int):
        def job(_):
            for _ in range(times):
                parallel_stop._on_sigint(signal.SIGINT, None)
                started.append("noted")

        return job

    def interrupted(_):
        raise KeyboardInterrupt

    def terminated(_):  # SIGTERM's exit, saved
        raise SystemExit(143)

    started = []
    for job, noted in ((interrupted, []), (pressed(2), ["noted"])):
        monkeypatch.setattr(parallel_stop, "_stopping", None)
        assert parallel_stop.run_stoppable(started.append, 1) is None and started == [1]
        first = parallel_stop.run_stoppable(job, 2)
        later = parallel_stop.run_stoppable(started.append, 3)
        assert isinstance(first, parallel_stop.Stopped) and parallel_stop.noted() == signal.SIGINT
        assert isinstance(later, parallel_stop.Stopped) and started == [1, *noted]  # 3: not started
        with pytest.raises(KeyboardInterrupt):
            parallel_stop.end_if_stopped([None, first, later])
        started.clear()
    monkeypatch.setattr(parallel_stop, "_stopping", None)
    with pytest.raises(SystemExit):  # SIGTERM's exit (a killed launcher's workers) ends the worker
        parallel_stop.run_stoppable(terminated, 4)
    assert parallel_stop.run_stoppable(started.append, 5) is None and started == [5]
    parallel_stop.end_if_stopped([None, {"a": 1}])  # nothing stopped: the sweep goes on


def test_a_ctrl_c_noted_before_the_fit_stops_it_after_its_first_batch(monkeypatch):
    """A worker's Ctrl-C that came before the fit (data, model, Trainer being built) stops the fit
    as a Ctrl-C during it does, and a group's loop after its first step."""
    import signal

    from ablate.run import parallel_stop
    from ablate.run.ctrl_c import CtrlC
    from ablate.run.stop_request import StopRequest

    for before, expected in ((None, False), (signal.SIGINT, True)):
        monkeypatch.setattr(parallel_stop, "_stopping", before)
        ctrl_c = CtrlC()
        ctrl_c.arm(trainer=None)
        try:
            assert ctrl_c.received is expected
        finally:
            ctrl_c.disarm()
        with StopRequest() as request:
            assert request.signum == before
