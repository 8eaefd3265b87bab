"""Values refused before they cost anything: a batch or subset larger than the training split,
devices, worker processes and memory the machine does not have. Each exits 2 with one line naming
the key, the value and the fix, and leaves no run folder; an image folder's counts are known only
once it is read, and are refused then, before training and before summary.json is written."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import torch
from conftest import fast_overrides, run_cli
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ablate.data.datamodule import ImageDataModule
from ablate.data.decode import DataSizeError
from ablate.data.loaders import split_indices
from ablate.data.sources.cifar10 import CIFAR10
from ablate.data.sources.image_folder import ImageFolder
from ablate.data.sources.mnist import MNIST, FashionMNIST
from ablate.preflight import check_command_line, command_line_problems

CORES, GPUS = os.cpu_count() or 1, torch.cuda.device_count()


def _node(**values) -> ImageDataModule:
    args = {"dataset": "toy", "root": "unused", "cache_dir": "unused", **values}
    return ImageDataModule(**args)


@st.composite
def split_and_batch(draw) -> tuple[int, float, int | None, int]:
    n = draw(st.integers(2, 400))
    fraction = draw(st.floats(0.01, 0.9))
    left = n - round(fraction * n)
    subset = draw(st.none() | st.integers(1, left + 3))
    limit = min(subset or left, left)
    batch = draw(st.integers(max(1, limit - 3), limit + 3) | st.integers(1, 10 * n))
    return n, fraction, subset, batch


@settings(max_examples=300, deadline=None)
@given(case=split_and_batch())
def test_batch_and_subset_are_accepted_up_to_the_training_split_and_refused_above(case):
    n, fraction, subset, batch = case
    node = _node(batch_size=batch, val_fraction=fraction, train_subset=subset)
    problems = node.size_problems(n)
    val = round(fraction * n)
    if val == 0:
        (line,) = problems
        assert line.startswith(f"data.val_fraction={fraction} holds out no validation image")
        return
    left = n - val
    if subset is not None and subset > left:
        (line,) = problems
        assert line.startswith(f"data.train_subset={subset} is more than the {left} training")
        assert line.endswith(f"use data.train_subset<={left} (or null: all of them)")
        return
    y = np.arange(n) % 3
    train, _ = split_indices(y, fraction, subset, seed=0)  # the split the run would make
    if batch <= len(train):
        assert problems == []
    else:
        (line,) = problems
        assert line.startswith(f"data.batch_size={batch} is larger than the {len(train)} training")
        assert line.endswith(f"use data.batch_size<={len(train)}")


@pytest.mark.parametrize(
    ("source", "train", "test"),
    [(MNIST, 60000, 10000), (FashionMNIST, 60000, 10000), (CIFAR10, 50000, 10000)],
)
def test_the_built_in_sources_know_their_sizes_unread(source, train, test):
    assert source.images == {"train": train, "test": test}
    assert ImageFolder.images is None  # known only once read


@settings(max_examples=20, deadline=None)
@given(extra=st.integers(0, 3), val_fraction=st.sampled_from([0.1, 0.2, 0.05]))
def test_mnist_batch_limit_without_reading_a_file(extra, val_fraction):
    limit = 60000 - round(val_fraction * 60000)
    node = MNIST(
        dataset="mnist", root="/nowhere", cache_dir="/nowhere", val_fraction=val_fraction,
        batch_size=limit + extra,
    )  # fmt: skip
    assert (node.size_problems() == []) == (extra == 0)


def _refusals() -> list[tuple[list[str], str]]:
    cases = [
        (["data.batch_size=100000"], "data.batch_size=100000 is larger than the 54000 training images (mnist's 60000 less the 6000 held out by data.val_fraction=0.1): use data.batch_size<=54000"),
        (["data.train_subset=70000"], "data.train_subset=70000 is more than the 54000 training images left"),
        (["data.train_subset=500", "data.batch_size=501"], "data.batch_size=501 is larger than the 500 training images (data.train_subset=500): use data.batch_size<=500"),
        (["data=cifar10", "data.batch_size=45001"], "data.batch_size=45001 is larger than the 45000 training images (cifar10's 50000"),
        (["data.val_fraction=0.000001"], "data.val_fraction=1e-06 holds out no validation image of mnist's 60000 training images: use data.val_fraction>=1.7e-05"),
        ([f"data.num_workers={CORES + 1}"], f"data.num_workers={CORES + 1} is more worker processes than this machine's {CORES} CPU cores"),
        (["data=cifar10", "model.channels=[1024]", "data.batch_size=40000"], "data.batch_size=40000 needs at least"),
        (["+trainer.val_check_interval=500", "data.batch_size=128"], "trainer.val_check_interval=500 is more than the 422 training batches of an epoch (54000 images / data.batch_size=128): use trainer.val_check_interval<=422"),
        (["+trainer.val_check_interval=1.5"], "trainer.val_check_interval=1.5 is not allowed: null, a fraction of an epoch in (0, 1] or a number of batches"),
    ]  # fmt: skip
    if GPUS:
        cases.append(([f"trainer.devices={GPUS + 1}", "trainer.accelerator=gpu"], f"trainer.devices={GPUS + 1} but this machine has {GPUS} GPU(s)"))  # fmt: skip
    else:
        cases.append((["trainer.accelerator=gpu"], "trainer.accelerator=gpu but this machine has no CUDA GPU"))  # fmt: skip
        cases.append(([f"trainer.devices={CORES + 2}"], f"trainer.devices={CORES + 2} asks for {CORES + 2} CPU processes but this machine has {CORES} cores"))  # fmt: skip
    return cases


@pytest.mark.parametrize(("overrides", "expected"), _refusals())
def test_values_the_data_or_machine_cannot_hold_exit_2_with_one_line(
    overrides, expected, data_root, tmp_path, capsys
):
    fast = [o for o in fast_overrides(data_root, tmp_path) if not o.startswith("trainer=")]
    fast = [o for o in fast if not any(o.startswith(x.split("=")[0] + "=") for x in overrides)]
    run = tmp_path / "run"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        check_command_line([*overrides, *fast, f"hydra.run.dir={run}"])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    (line,) = [x for x in err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: {expected}"), line
    assert "Traceback" not in err and not run.exists() and not (tmp_path / "logs").exists()


@settings(
    max_examples=2, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(extra=st.integers(1, 50000))
def test_a_batch_above_the_split_is_refused_through_the_cli(extra, data_root, tmp_path):
    logs = tmp_path / f"logs{extra}"
    proc = run_cli(f"data.batch_size={54000 + extra}", f"data.root={data_root}", f"log_dir={logs}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert f"data.batch_size={54000 + extra} is larger than the 54000" in line
    assert "Traceback" not in proc.stderr and not logs.exists()


def test_values_at_the_limits_pass(data_root, tmp_path):
    fast = [o for o in fast_overrides(data_root, tmp_path) if not o.startswith("data.batch_size")]
    assert command_line_problems([*fast, "data.train_subset=500", "data.batch_size=500"]) == []
    assert command_line_problems([*fast, f"data.num_workers={CORES}"]) == []


def test_an_image_folder_too_small_for_the_batch_is_refused_once_read(data_root, tmp_path):
    """Its 200 training images are known only once read: refused then, before training, and
    the run folder's earlier summary.json and checkpoints stay as they were."""
    folder = data_root / "folder"
    args = [
        "data=image_folder", f"data.root={folder}", f"data.cache_dir={tmp_path / 'cache'}",
        "trainer=cpu", "data.batch_size=500", "callbacks.progress_bar=null",
    ]  # fmt: skip
    node = ImageFolder(dataset="image_folder", root=str(folder), cache_dir=str(tmp_path / "cache"),
                       channels=3, image_size=(32, 32), batch_size=500)  # fmt: skip
    with pytest.raises(DataSizeError) as err:
        node.setup("fit")
    (problem,) = err.value.problems
    assert problem.startswith("data.batch_size=500 is larger than the 180 training images")
    assert command_line_problems(args) == []  # the count is not known before reading
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    earlier = {"status": "interrupted", "overrides": args, "note": "an earlier attempt"}
    (run / "summary.json").write_text(json.dumps(earlier))
    (run / "checkpoints" / "best.ckpt").write_bytes(b"weights")
    proc = run_cli(*args, f"hydra.run.dir={run}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "data.batch_size=500 is larger than the 180 training images" in line
    assert "use data.batch_size<=180" in line and "Traceback" not in proc.stderr
    assert json.loads((run / "summary.json").read_text()) == earlier
    assert (run / "checkpoints" / "best.ckpt").read_bytes() == b"weights"


def test_a_sweep_asking_for_more_workers_than_cores_is_refused_before_it_starts(
    data_root, tmp_path, capsys
):
    sweep = tmp_path / "sweep"
    overrides = ["-m", f"data.num_workers=0,{CORES + 1}", *fast_overrides(data_root, tmp_path)]
    with pytest.raises(SystemExit) as exit_:
        check_command_line([*overrides, f"hydra.sweep.dir={sweep}"])
    assert exit_.value.code == 2
    (line,) = [x for x in capsys.readouterr().err.splitlines() if x.startswith("error:")]
    assert line.startswith(f"error: data.num_workers={CORES + 1} is more worker processes")
    assert not sweep.exists()
