"""Integration: the real entry point (`python -m ablate.train`, `make train`) on generated data."""

from __future__ import annotations

import json
import os
import platform
import subprocess
from importlib.metadata import version

import pytest
import torch
from conftest import REPO, assert_ok, fast_overrides, run_cli, summaries

GROUPS = [
    "model",
    "norm",
    "reg",
    "init",
    "aug",
    "optim",
    "scheduler",
    "logger",
    "callbacks",
    "trainer",
]


def options(group: str) -> list[str]:
    """A group's options; those needing an extra (`_extra_:`, e.g. logger=mlflow) train in
    tests/test_loggers.py, which skips them where the extra is not installed."""
    files = sorted((REPO / "conf" / group).glob("*.yaml"))
    return [p.stem for p in files if "\n  _extra_:" not in p.read_text()]


@pytest.mark.parametrize("group", GROUPS)
def test_every_option_of_a_group_trains(group, data_root, tmp_path):
    """One multirun per group: each option composes with the defaults and trains end to end."""
    runnable = [
        o
        for o in options(group)
        if not (group == "trainer" and o == "gpu" and not torch.cuda.is_available())
    ]
    sweep = tmp_path / "sweep"
    overrides = fast_overrides(data_root, tmp_path)
    if group == "callbacks":  # callbacks=none has no progress_bar to switch off
        overrides.remove("callbacks.progress_bar=null")
    if group == "trainer":
        overrides.remove("trainer=cpu")
    proc = run_cli("-m", f"{group}={','.join(runnable)}", *overrides, f"hydra.sweep.dir={sweep}")
    assert_ok(proc)
    found = summaries(sweep)
    for option in runnable:
        s = found[f"{group}={option}"]
        assert s["status"] == "completed"
        assert 0.0 <= s["metrics"]["test/acc"] <= 1.0
        assert s["config"][group] is not None
    if (
        group == "logger"
    ):  # the TensorBoard hint names the log_dir to serve, only where there are events
        hint = f"TensorBoard: .venv/bin/tensorboard --logdir {tmp_path / 'logs'}"
        assert (proc.stdout + proc.stderr).count(hint) == runnable.count("tensorboard") == 1


def test_gpu_trainer_option_composes(data_root, tmp_path):
    proc = run_cli("trainer=gpu", *fast_overrides(data_root, tmp_path)[:3], "--cfg", "job")
    assert_ok(proc)
    assert "accelerator: gpu" in proc.stdout


@pytest.mark.parametrize("dataset", ["mnist", "fashion_mnist", "cifar10", "image_folder"])
def test_every_dataset_format_trains(dataset, data_root, tmp_path):
    overrides = fast_overrides(data_root, tmp_path)
    if dataset == "image_folder":
        overrides = [o for o in overrides if not o.startswith("data.root")] + [
            f"data.root={data_root / 'folder'}"
        ]
    proc = run_cli(f"data={dataset}", "aug=light", *overrides, f"hydra.run.dir={tmp_path / 'run'}")
    assert_ok(proc)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["status"] == "completed"
    assert s["config"]["data"]["dataset"] == dataset
    assert sum(s["splits"].values()) > 0


def test_two_by_two_multirun_names_runs_by_overrides(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m",
        "norm=batch,group",
        "reg=none,dropout",
        *fast_overrides(data_root, tmp_path),
        f"hydra.sweep.dir={sweep}",
    )
    assert_ok(proc)
    names = sorted(summaries(sweep))
    assert names == [
        "norm=batch,reg=dropout",
        "norm=batch,reg=none",
        "norm=group,reg=dropout",
        "norm=group,reg=none",
    ]
    for name in names:
        assert list((sweep / name).glob("events.out.tfevents.*")), (
            f"no TensorBoard events in {name}"
        )
        assert list((sweep / name / "checkpoints").glob("last.ckpt"))


def test_same_seed_same_metrics_and_seed_changes_them(data_root, tmp_path):
    common = [
        *fast_overrides(data_root, tmp_path),
        "aug=strong",
        "reg=dropout",
        "trainer.max_epochs=2",
    ]
    runs = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 1)):
        assert_ok(run_cli(*common, f"seed={seed}", f"hydra.run.dir={tmp_path / name}"))
        runs[name] = json.loads((tmp_path / name / "summary.json").read_text())["metrics"]
    keys = ["test/acc", "test/loss", "val/acc_best", "train/loss_epoch", "train_eval/acc"]
    assert {k: runs["a"][k] for k in keys} == {k: runs["b"][k] for k in keys}
    assert runs["a"]["train/loss_epoch"] != runs["c"]["train/loss_epoch"]


def test_worker_processes_keep_augmentation_reproducible(data_root, tmp_path):
    common = [*fast_overrides(data_root, tmp_path), "aug=light", "data.num_workers=2"]
    losses = []
    for name in ("a", "b"):
        assert_ok(run_cli(*common, f"hydra.run.dir={tmp_path / name}"))
        losses.append(
            json.loads((tmp_path / name / "summary.json").read_text())["metrics"][
                "train/loss_epoch"
            ]
        )
    assert losses[0] == losses[1]


def test_summary_and_tensorboard_contents(data_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    assert_ok(
        run_cli(
            *fast_overrides(data_root, tmp_path),
            "reg=all",
            "aug=light",
            "seed=0",
            "trainer.log_every_n_steps=5",
            f"hydra.run.dir={run}",
        )
    )
    s = json.loads((run / "summary.json").read_text())
    assert s["status"] == "completed" and s["seed"] == 0
    assert s["config"]["reg"]["l2"] == 1e-4
    for key in (
        "test/acc",
        "test/loss",
        "val/acc_best",
        "train/acc",
        "train_eval/acc",
        "gap/train_test",
        "gap/train_val",
    ):
        assert key in s["metrics"], key
    assert s["steps"] > 0 and s["epochs"] >= 1 and s["wall_time_s"] > 0
    assert s["versions"]["torch"] == version("torch") and s["versions"]["lightning"] == version(
        "lightning"
    )
    assert "git_commit" in s
    assert s["machine"].startswith(f"{platform.machine()}, {os.cpu_count()} CPUs")  # GPUs follow
    assert "reg=all" in s["overrides"] and s["choices"]["reg"] == "all" and s["swept"] == []
    assert [h["epoch"] for h in s["history"]] == [0]
    assert s["history"][0]["step"] == s["steps"] and 0 <= s["history"][0]["val/acc"] <= 1
    assert (run / ".hydra" / "config.yaml").exists()

    acc = EventAccumulator(
        str(run), size_guidance={"images": 4, "scalars": 0, "tensors": 0}
    ).Reload()
    scalars = set(acc.Tags()["scalars"])
    for tag in (
        "train/loss_step",
        "train/penalty_step",
        "train/data_loss_step",
        "train/acc",
        "val/loss",
        "val/acc",
        "test/acc",
        "test/loss",
        "lr-SGD",
    ):
        assert any(t.startswith(tag) for t in scalars), (tag, sorted(scalars))
    assert {"aug/original", "aug/augmented"} <= set(acc.Tags()["images"])
    hparams_files = [p for p in run.glob("events.out.tfevents.*")]
    assert any(b"_hparams_/session_start_info" in p.read_bytes() for p in hparams_files)


def test_missing_dataset_fails_before_training_with_where_to_put_files(tmp_path):
    empty = tmp_path / "nodata"
    empty.mkdir()
    proc = run_cli(
        f"data.root={empty}",
        "data.download=false",
        f"log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert str(empty / "MNIST" / "raw") in proc.stderr and "train-images-idx3-ubyte" in proc.stderr
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_make_train_runs_the_cli(data_root, tmp_path):
    args = " ".join([*fast_overrides(data_root, tmp_path), f"hydra.run.dir={tmp_path / 'run'}"])
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    proc = subprocess.run(
        ["make", "-s", "train", f"ARGS={args}"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert_ok(proc)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "completed"
    assert "summary" in proc.stdout + proc.stderr


@pytest.mark.real_data
def test_real_mnist_reaches_95_percent_in_300_steps(tmp_path):
    from conftest import REAL_CACHE, SHARED_DATA

    if not (SHARED_DATA / "MNIST" / "raw").exists():
        pytest.skip("real MNIST not available in ../shared/data")
    proc = run_cli(
        f"data.root={SHARED_DATA}",
        f"data.cache_dir={REAL_CACHE}",
        "data.download=false",
        "trainer=cpu",
        "trainer.max_steps=300",
        "data.eval_train_max=0",  # no train-test gap re-scoring (10,000 images): not what it tests
        "callbacks.progress_bar=null",
        f"log_dir={tmp_path / 'logs'}",
        f"hydra.run.dir={tmp_path / 'run'}",
    )
    assert_ok(proc)
    s = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert s["steps"] == 300
    assert s["metrics"]["test/acc"] > 0.95
