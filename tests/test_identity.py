"""Run identity (ablate.run.identity): what makes two runs the same, across code versions."""

from __future__ import annotations

import copy
import hashlib
import json
import os
import platform
import subprocess
import zipfile
from pathlib import Path

import pytest

from ablate.run.identity import config_hash, previous_run

# A resolved config as summary.json recorded it before the package was split into subpackages:
# every `_target_` names a module that no longer exists, the reg node had none.
BEFORE_THE_MOVE = {
    "seed": 0,
    "resume": "auto",
    "log_dir": "/old/logs",
    "data": {
        "_target_": "ablate.datamodule.ImageDataModule",
        "dataset": "mnist",
        "root": "/old/data",
        "cache_dir": "/old/cache",
        "num_workers": 0,
        "batch_size": 128,
        "train_subset": None,
    },
    "model": {"_target_": "ablate.models.CNN", "_partial_": True, "channels": [32, 64]},
    "norm": {"_target_": "ablate.norm.batch", "placement": "before_act"},
    "reg": {"l1": 0.0, "l2": 0.0, "dropout": 0.5},
    "callbacks": {
        "aug_preview": {"_target_": "ablate.callbacks.AugmentationPreview", "n": 32},
        "model_checkpoint": {"dirpath": "/old/run/checkpoints", "monitor": "val/acc"},
        "progress_bar": {"refresh_rate": 10},
    },
}


def _today() -> dict:
    """The same run's config as the current package resolves it, on another machine."""
    cfg = copy.deepcopy(BEFORE_THE_MOVE)
    cfg["data"].update(_target_="ablate.data.sources.mnist.MNIST", root="/new/data", num_workers=4)
    cfg["data"]["cache_dir"] = "/new/cache"
    cfg["log_dir"] = "/new/logs"
    cfg["model"]["_target_"] = "ablate.models.cnn.CNN"
    cfg["norm"]["_target_"] = "ablate.techniques.norm.batch"
    cfg["reg"]["_target_"] = "ablate.techniques.reg.Reg"
    cfg["reg"]["max_norm"] = None  # a switch added later, off by default
    cfg["callbacks"]["aug_preview"]["_target_"] = "ablate.data.preview.AugmentationPreview"
    cfg["callbacks"]["model_checkpoint"]["dirpath"] = "/new/run/checkpoints"
    cfg["callbacks"]["progress_bar"] = None
    return cfg


def _write_run(run_dir, config: dict, status: str, checkpoint: bool = False) -> None:
    run_dir.mkdir(parents=True)
    old_hash = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]
    summary = {"status": status, "config": config, "config_hash": old_hash}
    (run_dir / "summary.json").write_text(json.dumps(summary))
    if checkpoint:
        (run_dir / "checkpoints").mkdir()
        with zipfile.ZipFile(run_dir / "checkpoints" / "last.ckpt", "w") as zf:
            zf.writestr("archive/data.pkl", b"weights")


def test_import_paths_locations_and_null_switches_are_not_identity():
    assert config_hash(BEFORE_THE_MOVE) == config_hash(_today())


def test_a_study_budget_is_not_identity():
    # a preset that declares `study: {max_seeds: 16}` keeps the runs it had before
    assert config_hash({**_today(), "study": {"max_seeds": 16}}) == config_hash(_today())


@pytest.mark.parametrize(
    ("key", "value"),
    [("seed", 1), ("data.batch_size", 64), ("reg.dropout", 0.0), ("norm.placement", "after_act")],
)
def test_what_changes_a_result_is_identity(key, value):
    changed = _today()
    group, _, leaf = key.rpartition(".")
    (changed[group] if group else changed)[leaf] = value
    assert config_hash(changed) != config_hash(_today())


def test_a_finished_run_written_before_the_move_is_still_skipped(tmp_path):
    _write_run(tmp_path / "run", BEFORE_THE_MOVE, "completed", checkpoint=True)
    previous = previous_run(tmp_path / "run", config_hash(_today()))
    assert previous is not None and previous.finished and previous.resume_from is None


def test_an_interrupted_run_written_before_the_move_still_resumes(tmp_path):
    _write_run(tmp_path / "run", BEFORE_THE_MOVE, "interrupted", checkpoint=True)
    previous = previous_run(tmp_path / "run", config_hash(_today()))
    assert previous is not None and not previous.finished
    assert previous.resume_from == tmp_path / "run" / "checkpoints" / "last.ckpt"


def test_a_different_config_is_still_refused(tmp_path):
    _write_run(tmp_path / "run", BEFORE_THE_MOVE, "interrupted", checkpoint=True)
    other = _today()
    other["seed"] = 7
    with pytest.raises(ValueError, match="already holds a run of a different config"):
        previous_run(tmp_path / "run", config_hash(other))


def test_a_failed_run_is_rerun_in_place_whatever_changed(tmp_path):
    _write_run(tmp_path / "run", BEFORE_THE_MOVE, "failed", checkpoint=True)
    other = _today()
    other["data"]["batch_size"] = 32
    previous = previous_run(tmp_path / "run", config_hash(other))
    assert previous is not None and not previous.finished and previous.resume_from is None
    assert not (tmp_path / "run" / "checkpoints").exists()  # its weights belong to another config
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["status"] == "failed"


def test_git_commit_is_dirty_only_when_code_or_configs_changed(tmp_path: Path):
    """A run's commit names the code it ran: changed docs or results do not make it '-dirty'."""
    from ablate.run.summary import git_commit

    def git(*args: str) -> str:
        out = subprocess.run(["git", "-C", str(tmp_path), *args], check=True, capture_output=True)
        return out.stdout.decode().strip()

    git("init", "-q")
    for name in ("src/ablate/x.py", "conf/train.yaml", "docs/results/timings.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("a\n")
    git("add", "-A")
    git("-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "c")
    head = git("rev-parse", "HEAD")
    assert git_commit(tmp_path) == head
    (tmp_path / "docs/results/timings.txt").write_text("a\nb\n")
    (tmp_path / "notes.txt").write_text("untracked\n")
    assert git_commit(tmp_path) == head
    (tmp_path / "conf/train.yaml").write_text("b\n")
    assert git_commit(tmp_path) == head + "-dirty"


def test_the_machine_names_gpus_only_once_cuda_is_up(monkeypatch):
    import torch

    from ablate.run import summary

    cpus = f"{platform.machine()}, {os.cpu_count()} CPUs (Test CPU 9000)"
    monkeypatch.setattr(summary, "cpu_model", lambda: "Test CPU 9000")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert summary.machine() == cpus and summary.gpu_models() is None
    names = ["NVIDIA H200", "NVIDIA H200", "NVIDIA A100"]
    asked = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: len(names))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: asked.append(i) or names[i])
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: False)
    assert summary.machine() == f"{cpus}, 3 CUDA GPUs" and asked == []  # no context made for it
    monkeypatch.setattr(torch.cuda, "is_initialized", lambda: True)
    assert summary.machine() == f"{cpus}, 2 x NVIDIA H200, 1 x NVIDIA A100"
    assert summary.hardware()["gpu_models"] == names
