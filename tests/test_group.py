"""group_seeds: K seeds of one cell trained as one stacked model are their solo runs, seed by seed."""

from __future__ import annotations

import json
import math
import os
import signal
import time
from pathlib import Path

import forked_cli
import lightning as L
import pytest
import torch
from conftest import REAL_CACHE, REPO, SHARED_DATA, assert_ok, run_cli
from hydra.utils import instantiate
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.group.stack import NotStackable, StackedNet
from ablate.group.step import StackedStep
from ablate.group.steps import Schedule, blockers
from ablate.models import build_model
from ablate.module import Classifier
from ablate.run.identity import config_hash
from ablate.run.resume import ResumableLoader
from ablate.run.stop_request import StopRequest
from ablate.testing.bench import compose_cfg

# Random inputs and labels at the preset's peak lr (0.05) are chaotic: any float difference, solo
# against solo on another kernel too, grows to 1e-3 within 100 steps. At 0.02 it stays near 1e-6.
MLP = ["model=mlp", "model.depth=2", "model.width=16", "scheduler=onecycle", "optim.lr=0.02"]
OPTIONS = {
    g: sorted(p.stem for p in (REPO / "conf" / g).glob("*.yaml")) for g in ("norm", "reg", "init")
}
OPTIONS["norm"].remove("instance")  # an MLP refuses it (tests/test_mlp.py)
# GroupNorm over 2 features (its 8 groups at width 16) divides by |a - b|: a float difference is
# amplified up to 1/sqrt(eps) ~ 316 times per layer, solo against solo on another kernel too. The
# test gives each group 8 features; max-norm a limit it reaches.
EXTRA = {"norm=group": ["norm.groups=2"], "reg=dropout_maxnorm": ["reg.max_norm=0.5"]}
TOLERANCE = 2e-5  # float32 after 100 steps: batched kernels sum in another order than solo ones


def _net(cfg, seed: int) -> torch.nn.Module:
    torch.manual_seed(seed)  # as a solo run: seeded, then built and initialized
    return build_model(cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=1, num_classes=10,
                       image_size=(8, 8))  # fmt: skip


def _batches(seed: int, steps: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    g = torch.Generator().manual_seed(100 + seed)  # each seed its own data
    return [(torch.randn(6, 1, 8, 8, generator=g), torch.randint(0, 10, (6,), generator=g))
            for _ in range(steps)]  # fmt: skip


def solo(overrides: list[str], seed: int, steps: int) -> dict[str, torch.Tensor]:
    """Seed's weights after `steps` steps of the solo Lightning run (the reference)."""
    cfg = compose_cfg([*MLP, *overrides])
    model = Classifier(_net(cfg, seed), optimizer=instantiate(cfg.optim),
                       scheduler=instantiate(cfg.scheduler), reg=instantiate(cfg.reg))  # fmt: skip
    trainer = L.Trainer(
        accelerator="cpu", max_steps=steps, logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0,
        deterministic=True,
    )  # fmt: skip
    torch.manual_seed(1000 + seed)  # dropout and noisy BatchNorm draw from the global stream
    trainer.fit(model, train_dataloaders=ResumableLoader(_batches(seed, steps)))
    return {
        k.removeprefix("net."): v for k, v in model.state_dict().items() if k.startswith("net.")
    }


def grouped(
    overrides: list[str], seeds: list[int], steps: int
) -> dict[int, dict[str, torch.Tensor]]:
    """Each seed's weights after `steps` steps of the seeds trained as one stacked model."""
    cfg = compose_cfg([*MLP, *overrides])
    net = StackedNet([_net(cfg, s) for s in seeds])
    net.set_generators([torch.Generator().manual_seed(1000 + s) for s in seeds])
    step = StackedStep(net, instantiate(cfg.reg), instantiate(cfg.optim),
                       instantiate(cfg.scheduler), total_steps=steps)  # fmt: skip
    data = [_batches(s, steps) for s in seeds]
    alive = torch.ones(len(seeds), dtype=torch.bool)
    for i in range(steps):
        step(torch.stack([d[i][0] for d in data]), torch.stack([d[i][1] for d in data]), alive)
    return {s: net.unstack(k) for k, s in enumerate(seeds)}


def assert_close(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor], what: str) -> float:
    assert a.keys() == b.keys(), what
    worst = max(float((a[k].double() - b[k].double()).abs().max()) for k in a)
    assert worst <= TOLERANCE, f"{what}: largest difference {worst:.2e}"
    return worst


@pytest.mark.parametrize(
    "option", [f"{g}={o}" for g, opts in OPTIONS.items() for o in opts], ids=str
)
def test_a_seed_in_a_group_is_its_solo_run_after_100_steps(option: str) -> None:
    overrides = [option, *EXTRA.get(option, [])]
    group = grouped(overrides, [3, 7], 100)  # seed 7's neighbour is seed 3 (K=2)
    assert_close(solo(overrides, 7, 100), group[7], f"{option} seed 7")


# Constant init makes a layer's units identical, so their gradients differ only by rounding;
# Adam divides each by its own size, turning a rounding difference into a step of lr (measured,
# solo against group after 30 steps: 5.6e-5 with reg=none, 3.7e-4 with reg=all; 5e-7 with He
# init). The per-option test covers constant init with SGD. Derandomized: the same draws each run.
@settings(max_examples=4, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow])  # fmt: skip
@given(norm=st.sampled_from(OPTIONS["norm"]), reg=st.sampled_from(OPTIONS["reg"]),
       init=st.sampled_from([o for o in OPTIONS["init"] if o != "constant"]), optim=st.sampled_from(["sgd", "adam", "adamw"]),
       activation=st.sampled_from(["relu", "sigmoid", "tanh"]))  # fmt: skip
def test_drawn_combinations_match_their_solo_runs(
    norm: str, reg: str, init: str, optim: str, activation: str
) -> None:
    overrides = [f"norm={norm}", f"reg={reg}", f"init={init}", f"optim={optim}",
                 f"model.activation={activation}", *EXTRA.get(f"norm={norm}", [])]  # fmt: skip
    group = grouped(overrides, [0, 1, 2], 30)
    assert_close(solo(overrides, 2, 30), group[2], f"{overrides} seed 2")


def test_a_seed_does_not_depend_on_the_group_size_or_its_neighbours() -> None:
    """Seed 5 among 1, 3 and 15 others: bitwise the same weights in every group of 2 or more (each
    seed's slice is reduced on its own); alone (K=1, another bmm path) to float tolerance."""
    overrides = ["norm=batch", "reg=dropout"]
    pair = grouped(overrides, [5, 6], 50)[5]
    for seeds in ([9, 5, 2, 4], [5, *range(6, 21)]):
        other = grouped(overrides, seeds, 50)[5]
        assert all(torch.equal(pair[k], other[k]) for k in pair), f"seed 5 among {seeds}"
    assert_close(pair, grouped(overrides, [5], 50)[5], "seed 5 alone")


def test_unstack_and_load_seed_round_trip_a_solo_state() -> None:
    cfg = compose_cfg([*MLP, "norm=batch_noisy"])
    nets = [_net(cfg, s) for s in (0, 1, 2)]
    stacked = StackedNet(nets)
    for k, net in enumerate(nets):
        solo_state = {n: v for n, v in net.state_dict().items()}
        assert stacked.unstack(k).keys() == solo_state.keys()
        assert all(torch.equal(stacked.unstack(k)[n], solo_state[n]) for n in solo_state)
    stacked.load_seed(0, stacked.unstack(2))
    assert all(torch.equal(stacked.unstack(0)[n], stacked.unstack(2)[n]) for n in nets[0].state_dict()
               if not n.endswith("num_batches_tracked"))  # fmt: skip


def test_a_conv_net_is_not_stackable() -> None:
    cfg = compose_cfg(["model=cnn", "model.channels=[8,16]", "model.hidden=16"])
    torch.manual_seed(0)
    net = build_model(cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=1, num_classes=10,
                      image_size=(28, 28))  # fmt: skip
    with pytest.raises(NotStackable, match="model=mlp"):
        StackedNet([net, net])


def test_settings_that_couple_seeds_make_the_runs_solo() -> None:
    cpu = {"accelerator": "cpu", "devices": 1}
    assert blockers(cpu, {}, {}, {}) == []
    found = blockers({**cpu, "gradient_clip_val": 1.0, "precision": "16-mixed"},
                     {"stop": {"_target_": "lightning.pytorch.callbacks.EarlyStopping"}},
                     {"act": {"_target_": "x"}}, {"csv": {"_target_": "lightning.pytorch.loggers.CSVLogger"}})  # fmt: skip
    assert [f.split(" ")[0].split("=")[0] for f in found] == [
        "trainer.gradient_clip_val", "trainer.precision", "callbacks.stop", "diagnostics",
        "logger.csv",
    ]  # fmt: skip


@given(batches=st.integers(1, 60), interval=st.one_of(st.integers(1, 60), st.sampled_from([0.25, 0.5, 1.0])),
       max_steps=st.integers(1, 200))  # fmt: skip
def test_the_schedule_validates_where_lightning_does(
    batches: int, interval, max_steps: int
) -> None:
    """Every val_check_interval batches of an epoch (a fraction: of the epoch's batches), and at the stop."""
    s = Schedule({"max_steps": max_steps, "val_check_interval": interval}, {}, batches)
    every = interval if isinstance(interval, int) else max(1, int(batches * interval))
    step, seen = 0, []
    for _epoch in range(1000):
        for b in range(batches):
            step += 1
            if s.validate_now(b, step, s.stop(step)):
                seen.append(step)
            if s.stop(step):
                break
        if s.done(step, _epoch + 1):
            break
    expected = sorted({e * batches + b + 1 for e in range(max_steps // batches + 1)
                       for b in range(batches) if (b + 1) % every == 0
                       and e * batches + b + 1 <= max_steps} | {max_steps})  # fmt: skip
    assert seen == expected


def _sweep(tmp: Path, name: str, *extra: str, env: dict | None = None):
    return run_cli(*run_cli_args(tmp, name, *extra), env={"OMP_NUM_THREADS": "1", **(env or {})})


def run_cli_args(tmp: Path, name: str, *extra: str) -> list[str]:
    """The CLI arguments of a tiny real-MNIST sweep into tmp/name."""
    if not (SHARED_DATA / "MNIST" / "raw").exists():
        pytest.skip("real MNIST not available in ../shared/data")
    return [
        "-m", f"data.root={SHARED_DATA}", f"data.cache_dir={REAL_CACHE}", "data.download=false",
        f"log_dir={tmp / 'logs'}", f"hydra.sweep.dir={tmp / name}", "callbacks.progress_bar=null",
        "trainer.enable_model_summary=false",
        *([] if any(e.startswith("model=") for e in extra) else
          ["model=mlp", "model.depth=2", "model.width=32"]),
        "data.train_subset=600", "data.val_fraction=0.1", "data.batch_size=30",
        "data.eval_train_max=0", "trainer.max_steps=50", "+trainer.val_check_interval=10",
        "callbacks.last_checkpoint.every_n_train_steps=10", *extra,
    ]  # fmt: skip


def _runs(folder: Path) -> dict[str, dict]:
    return {p.parent.name: json.loads(p.read_text()) for p in sorted(folder.glob("*/summary.json"))}


ACC_TOLERANCE = 2.5 / 6000  # two validation images of 6,000 (test: 10,000)


def _same_run(solo_run: dict, group_run: dict, where: str, exact: bool = False) -> None:
    """The same outcome, steps, curve and metrics (to float32 rounding unless exact)."""
    for key in ("status", "steps", "epochs", "diverged_at_step", "techniques", "splits"):
        assert solo_run.get(key) == group_run.get(key), f"{where}: {key}"

    def close(key: str, a: float, b: float) -> bool:
        # An accuracy counts images: a logit moved by float rounding can flip one of 6,000
        tol = ACC_TOLERANCE if "acc" in key else 1e-6
        return a == b if exact else math.isclose(a, b, rel_tol=1e-5, abs_tol=tol)

    assert [h["step"] for h in solo_run["history"]] == [h["step"] for h in group_run["history"]]
    for a, b in zip(solo_run["history"], group_run["history"], strict=True):
        same = all(close(k, a[k], b[k]) or (math.isnan(a[k]) and math.isnan(b[k])) for k in a)
        assert same, (where, a, b)
    metrics = {k for k in solo_run["metrics"] if not k.startswith(("perf/", "lr-"))}
    assert metrics <= group_run["metrics"].keys(), where
    assert all(close(k, solo_run["metrics"][k], group_run["metrics"][k]) for k in metrics), where


def test_a_grouped_sweep_writes_each_seed_as_its_solo_run(tmp_path: Path) -> None:
    """Real MNIST through the CLI: dropout and BatchNorm, 3 seeds solo and as a group of 3, with the
    test-time MC-dropout and noise scores; then seeds that diverge in a group (max_loss near the
    initial loss) stop alone, the others finish."""
    common = ["norm=batch", "reg=dropout", "seed=0,1,2", "eval=noisy", "+eval.mc_samples=[1,3]"]
    assert_ok(_sweep(tmp_path, "solo", *common))
    assert_ok(grouped_run := _sweep(tmp_path, "group", *common, "group_seeds=3"))
    assert (
        "training 3 seeds (0, 1, 2) as one stacked model" in grouped_run.stderr + grouped_run.stdout
    )
    solo_runs, group_runs = _runs(tmp_path / "solo"), _runs(tmp_path / "group")
    assert solo_runs.keys() == group_runs.keys() == {"seed=0", "seed=1", "seed=2"}
    for name, run in group_runs.items():
        _same_run(solo_runs[name], run, name)
        assert {"test/acc_mc3", "test/acc_noise0.2", "test/drop_noise0.2"} <= run["metrics"].keys()
        assert run["group"]["size"] == 3 and "group" not in solo_runs[name]
        assert Path(run["best_checkpoint"]).name == Path(solo_runs[name]["best_checkpoint"]).name
        assert list((tmp_path / "group" / name).glob("events.out.tfevents.*")), name
    assert not list((tmp_path / "group").glob("*/checkpoints/group-*.ckpt"))  # removed when done
    assert all(r["config_hash"] == config_hash(r["config"]) for r in group_runs.values())
    again = _sweep(tmp_path, "group", *common, "group_seeds=3")  # the same command: nothing to do
    assert_ok(again)
    assert (again.stdout + again.stderr).count("already completed, skipped") == 3

    diverging = ["norm=none", "init=xavier_normal", "max_loss=2.6", "seed=0,1,2,3"]
    assert_ok(_sweep(tmp_path, "solo_div", *diverging))
    _sweep(tmp_path, "group_div", *diverging, "group_seeds=4")
    solo_div, group_div = _runs(tmp_path / "solo_div"), _runs(tmp_path / "group_div")
    statuses = sorted(r["status"] for r in solo_div.values())
    assert "diverged" in statuses and "completed" in statuses, statuses  # the case it tests
    for name, run in group_div.items():
        _same_run(solo_div[name], run, f"diverging {name}")


def test_a_killed_group_resumes_every_seed_to_the_uninterrupted_result(tmp_path: Path) -> None:
    common = ["norm=batch_noisy", "reg=dropout", "seed=4,5", "group_seeds=2"]
    assert_ok(_sweep(tmp_path, "whole", *common))
    killed = _sweep(tmp_path, "killed", *common, env={"ABLATE_FAULT": "kill_at_step:25"})
    assert killed.returncode == -9, killed.returncode
    assert list((tmp_path / "killed").glob("*/checkpoints/group-4-5.ckpt"))
    assert {r["status"] for r in _runs(tmp_path / "killed").values()} == {"running"}
    assert_ok(resumed := _sweep(tmp_path, "killed", *common))
    assert "resumed at step 20" in resumed.stderr + resumed.stdout
    whole, again = _runs(tmp_path / "whole"), _runs(tmp_path / "killed")
    for name in whole:
        _same_run(whole[name], again[name], name, exact=True)
        assert again[name]["earlier_attempts"][0]["status"] == "running"


def test_sigterm_stops_a_group_after_its_step_saved_and_every_seed_resumes(tmp_path: Path) -> None:
    """SIGTERM (as SLURM sends) mid-group: the step finishes, the group saves, each seed is recorded
    interrupted, the sweep exits 143, and the same command ends as an uninterrupted group does."""
    common = ["norm=batch_noisy", "reg=dropout", "seed=4,5", "group_seeds=2"]
    assert_ok(_sweep(tmp_path, "whole", *common))
    termed = _sweep(tmp_path, "termed", *common, env={"ABLATE_FAULT": "term_at_step:25"})
    assert termed.returncode == 143, termed.stderr[-3000:]
    assert "SIGTERM at step 26: run the same command to resume" in termed.stderr + termed.stdout
    runs = _runs(tmp_path / "termed")
    assert {r["status"] for r in runs.values()} == {"interrupted"}
    assert {r["interrupted_at_step"] for r in runs.values()} == {26}
    assert_ok(resumed := _sweep(tmp_path, "termed", *common))
    assert "resumed at step 26" in resumed.stderr + resumed.stdout
    whole, again = _runs(tmp_path / "whole"), _runs(tmp_path / "termed")
    for name in whole:
        _same_run(whole[name], again[name], name, exact=True)


def test_sigterm_while_a_group_tests_finishes_every_record_then_stops(tmp_path: Path) -> None:
    """SIGTERM after the last step, as the group tests: the test and every seed's summary finish
    (`completed`: nothing is left to do), then the sweep stops with 143; the same command re-runs
    nothing. (Before, the signal's default action ended the group there: every seed `running`.)"""
    common = ["norm=batch", "seed=4,5", "group_seeds=2"]
    assert_ok(_sweep(tmp_path, "whole", *common))
    termed = _sweep(tmp_path, "termed", *common, env={"ABLATE_FAULT": "term_at_step:50"})
    assert termed.returncode == 143, termed.stderr[-3000:]
    runs = _runs(tmp_path / "termed")
    assert len(runs) == 2 and {r["status"] for r in runs.values()} == {"completed"}
    whole = _runs(tmp_path / "whole")
    for name in whole:
        _same_run(whole[name], runs[name], name, exact=True)
    again = _sweep(tmp_path, "termed", *common)
    assert_ok(again)
    assert "2 finished earlier, not re-run" in again.stdout + again.stderr


def test_a_stop_request_notes_the_signal_and_stops_as_it_asks() -> None:
    """In-process: SIGTERM or a first Ctrl-C is only noted (the loop saves, then `stop` ends as a
    solo run's interruption does); a second Ctrl-C raises at once; the handlers come back after."""
    before = signal.signal(signal.SIGINT, signal.default_int_handler)  # as in a terminal
    try:
        term_before = signal.getsignal(signal.SIGTERM)
        for sig, ends in ((signal.SIGTERM, SystemExit), (signal.SIGINT, KeyboardInterrupt)):
            with StopRequest() as request:
                os.kill(os.getpid(), sig)
                assert request.signum == sig  # noted, nothing raised
                with pytest.raises(ends) as stopped:
                    request.stop(7)
            if ends is SystemExit:
                assert stopped.value.code == 143
        with StopRequest() as request, pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
            os.kill(os.getpid(), signal.SIGINT)  # pressed twice: at once
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        assert signal.getsignal(signal.SIGTERM) == term_before
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_conv_net_sweep_with_group_seeds_trains_each_run_on_its_own(tmp_path: Path) -> None:
    """Only model=mlp has stacked layers: a CNN's seeds run solo, with a line saying why."""
    proc = _sweep(tmp_path, "cnn", "model=cnn", "model.channels=[4]", "model.hidden=0",
                  "seed=0,1", "group_seeds=2")  # fmt: skip
    assert_ok(proc)
    assert "ablate.models.cnn.CNN has no stacked layers" in proc.stdout + proc.stderr
    runs = _runs(tmp_path / "cnn")
    assert {r["status"] for r in runs.values()} == {"completed"} and len(runs) == 2
    assert not any("group" in r for r in runs.values())


def test_parallel_units_train_as_the_serial_sweep_does(tmp_path: Path) -> None:
    """hydra.launcher.n_jobs=2: a group and two solo runs (an input BatchNorm has no stacked
    version) train in two worker processes, one thread each, to the same results as serially:
    forked workers (no GPU visible) and fresh ones (spawned, as where a GPU is)."""
    common = ["model.input_bn=false,true", "seed=0,1", "group_seeds=2"]
    assert_ok(_sweep(tmp_path, "serial", *common))
    serial_runs = _runs(tmp_path / "serial")
    assert len(serial_runs) == 4
    for start in ("fork", "spawn"):
        env = {"ABLATE_WORKER_START": start}
        assert_ok(parallel := _sweep(tmp_path, start, *common, "hydra.launcher.n_jobs=2", env=env))
        assert "3 units (groups and solo jobs), 2 at a time" in parallel.stdout + parallel.stderr
        parallel_runs = _runs(tmp_path / start)
        assert serial_runs.keys() == parallel_runs.keys()
        for name, run in parallel_runs.items():
            _same_run(serial_runs[name], run, name, exact=True)
            assert run.get("group", {}).get("size") == serial_runs[name].get("group", {}).get(
                "size"
            )
            assert run["threads"] == 1
        assert sum("group" in r for r in parallel_runs.values()) == 2  # input_bn=false's two seeds


def test_a_killed_parallel_sweep_leaves_no_worker_and_resumes_to_the_uninterrupted_result(
    tmp_path: Path,
) -> None:
    """kill -9 of the launcher's process while two forked workers train a group each: every worker
    gets a SIGTERM (prctl's parent-death signal), saves its group and ends; the same command then
    ends as the uninterrupted sweep does."""
    common = ["norm=none,batch", "seed=0,1", "group_seeds=2", "hydra.launcher.n_jobs=2",
              "trainer.max_steps=800", "trainer.max_epochs=-1", "trainer.val_check_interval=100",
              "+trainer.check_val_every_n_epoch=null",
              "callbacks.last_checkpoint.every_n_train_steps=100"]  # fmt: skip
    assert_ok(_sweep(tmp_path, "whole", *common))
    args = [a for a in run_cli_args(tmp_path, "killed", *common) if a != "-m"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = forked_cli.Started(["-m", "ablate.train", "-m", *args], REPO, env)
    deadline = time.monotonic() + 120
    while len(list((tmp_path / "killed").glob("*/checkpoints/group-*.ckpt"))) < 2:
        assert proc.poll() is None and time.monotonic() < deadline, "no group saved a step"
        time.sleep(0.05)
    children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
    assert len(children) == 2, children
    proc.kill()
    proc.wait()
    for pid in map(int, children):  # each worker saves its group, then ends
        while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not Path(f"/proc/{pid}").exists(), f"worker {pid} outlived the sweep"
    # a group that had reached its last step when the signal came finishes its test: completed
    statuses = [r["status"] for r in _runs(tmp_path / "killed").values()]
    assert "interrupted" in statuses and set(statuses) <= {"interrupted", "completed"}, statuses
    assert_ok(_sweep(tmp_path, "killed", *common))
    whole, again = _runs(tmp_path / "whole"), _runs(tmp_path / "killed")
    for name in whole:
        _same_run(whole[name], again[name], name, exact=True)


@pytest.mark.parametrize("n_jobs", ["0", "-2", "two", "1.5"])
def test_a_bad_n_jobs_is_one_line_naming_it(n_jobs: str) -> None:
    from ablate.preflight import command_line_problems

    problems = command_line_problems(["-m", "seed=0,1", f"hydra.launcher.n_jobs={n_jobs}"])
    assert len(problems) == 1 and problems[0].startswith(f"hydra.launcher.n_jobs={n_jobs} "), (
        problems
    )
    assert "e.g. hydra.launcher.n_jobs=2" in problems[0]
