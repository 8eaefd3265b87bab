"""Bad input: one clear line naming the key and the allowed values, exit code 2, before any data is read."""

from __future__ import annotations

import pytest
from conftest import fast_overrides, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig

from ablate.config import CONF_DIR
from ablate.validate import value_problems


def _compose(*overrides: str):
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=list(overrides), return_hydra_config=True)
    HydraConfig.instance().set_config(cfg)  # configs refer to ${hydra:runtime.output_dir}
    return cfg


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.batch_size=0"], "data.batch_size=0 is not allowed: a positive integer"),
        (["data.batch_size=abc"], "data.batch_size='abc' is not allowed: a positive integer"),
        (["reg.dropout=1.0"], "reg.dropout=1.0 is not allowed: a number in [0, 1)"),
        (["reg.dropout2d=-0.1"], "reg.dropout2d=-0.1 is not allowed"),
        (["reg.l1=-1e-4"], "reg.l1=-0.0001 is not allowed: a number >= 0"),
        (["reg.l2=-1"], "reg.l2=-1 is not allowed"),
        (
            ["norm=group", "norm.groups=5"],
            "norm.groups=5 does not divide the channel counts [32, 64]",
        ),
        (
            ["model=plain_deep", "norm=group", "norm.groups=3"],
            "norm.groups=3 does not divide the channel counts [16]",
        ),
        (
            ["norm.placement=middle"],
            "norm.placement='middle' is not allowed: one of ['after_act', 'before_act']",
        ),
        (["optim.lr=0"], "optim.lr=0 is not allowed"),
        (
            ["optim.weight_decay=0.1"],
            "optim.weight_decay=0.1 is not allowed: 0 (decay is reg.weight_decay",
        ),
        (["data.val_fraction=1.5"], "data.val_fraction=1.5 is not allowed: a number in (0, 1)"),
        (["model.activation=swish"], "model.activation='swish' is not allowed"),
    ],
)
def test_value_problems_name_key_and_allowed_values(overrides, expected):
    problems = value_problems(_compose(*overrides))
    assert len(problems) == 1, problems
    assert expected in problems[0]


def test_default_config_has_no_problems():
    assert value_problems(_compose()) == []


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["reg.dropout=1.5"], "reg.dropout=1.5 is not allowed: a number in [0, 1)"),
        (["reg.l3=0.1"], "unknown key reg.l3"),
        (["+reg.l3=0.1"], "unknown key reg.l3 for reg=none"),
        (["data=image_folder", "data.root=/does/not/exist"], "/does/not/exist"),
        (["data=image_folder"], "data.root"),
        (["norm=group", "norm.groups=5"], "norm.groups=5"),
        (["trainer.max_epoch=3"], "unknown key trainer.max_epoch"),
    ],
)
def test_cli_exits_2_with_one_line_and_writes_no_results(overrides, expected, data_root, tmp_path):
    run = tmp_path / "run"
    proc = run_cli(
        *overrides,
        *[
            o
            for o in fast_overrides(data_root, tmp_path)
            if not o.startswith("data.root") or "data=image_folder" not in overrides
        ],
        f"hydra.run.dir={run}",
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and expected in errors[0], proc.stderr[-3000:]
    assert not (run / "summary.json").exists() and not (run / "checkpoints").exists()


def test_unknown_option_name_keeps_hydras_list_of_choices(tmp_path):
    proc = run_cli("norm=btach", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode != 0
    assert (
        "Could not find 'norm/btach'" in proc.stderr
        and "group" in proc.stderr
        and "batch" in proc.stderr
    )


def test_a_finished_run_directory_is_never_written_over(data_root, tmp_path):
    run = tmp_path / "run"
    first = run_cli(*fast_overrides(data_root, tmp_path), f"hydra.run.dir={run}")
    assert first.returncode == 0, first.stderr[-3000:]
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    again = run_cli(*fast_overrides(data_root, tmp_path), "seed=1", f"hydra.run.dir={run}")
    assert again.returncode == 2
    assert f"error: {run} already holds a run" in again.stderr
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


@pytest.mark.parametrize(
    "override",
    [
        "callbacks.model_checkpoint.dirpath=/tmp/elsewhere",
        "logger.tensorboard.save_dir=../outside",
        "trainer.default_root_dir=/",
    ],
)
def test_output_paths_outside_the_run_dir_are_refused(override, data_root, tmp_path):
    run_dir = tmp_path / "run"
    r = run_cli(*fast_overrides(data_root, tmp_path), f"hydra.run.dir={run_dir}", override)
    assert r.returncode == 2, r.stderr[-2000:]
    (line,) = [x for x in r.stderr.splitlines() if x.startswith("error:")]
    assert override.split("=")[0] in line and "outside the run directory" in line
    assert not (run_dir / "checkpoints").exists() and not (run_dir / "summary.json").exists()


def test_output_paths_inside_the_run_dir_pass():
    from omegaconf import OmegaConf

    from ablate.validate import path_problems

    cfg = OmegaConf.create(
        {
            "trainer": {"default_root_dir": "/runs/a"},
            "callbacks": {"ckpt": {"dirpath": "/runs/a/checkpoints"}, "off": None},
            "logger": {"tb": {"save_dir": "/runs/a/../a/tb"}},
        }
    )
    assert path_problems(cfg, "/runs/a") == []
    cfg.callbacks.ckpt.dirpath = "/runs/a/../b"
    assert len(path_problems(cfg, "/runs/a")) == 1
