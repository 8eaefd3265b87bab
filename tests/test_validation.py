"""Bad input: one clear line naming the key and the allowed values, exit code 2, before any data is read."""

from __future__ import annotations

import pytest
from conftest import fast_overrides, run_cli
from hydra import compose, initialize_config_dir
from hydra._internal.core_plugins.basic_sweeper import BasicSweeper
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ablate.preflight as preflight
from ablate.config import CONF_DIR
from ablate.preflight import check_command_line, command_line_problems
from ablate.validate import sampler_problems, value_problems


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


def test_ddp_on_the_cpu_path_needs_lightnings_sampler_off():
    cfg = _compose("trainer.devices=2", "+trainer.strategy=ddp_spawn")
    (line,) = sampler_problems(cfg, cfg.data)
    assert line.startswith("trainer.devices=2 with data.on_device=null: the datamodule shards")
    assert sampler_problems(_compose("trainer=ddp"), cfg.data) == []  # trainer=ddp turns it off
    assert sampler_problems(_compose(), cfg.data) == []  # one device


def test_default_config_has_no_problems():
    assert value_problems(_compose()) == []


def _refused(overrides: list[str], capsys) -> list[str]:
    """Run the check `python -m ablate.train` starts with: exit 2 and its `error:` lines."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_:
        check_command_line(overrides)
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return [line for line in err.splitlines() if line.startswith("error:")]


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
        (["+trainer.max_epoch=3"], "not a lightning.Trainer argument (did you mean trainer.max_epochs?)"),
        # what a constructor refuses, and what ended in a traceback (exit 1) before
        (["seed=-1"], "error: seed=-1 is not allowed: null or an integer >= 0"),
        (["model.channels=[32,64,128,256,512,1024]"], "model.channels has 6 pooled blocks"),
        (["optim=adam", "optim.betas=[1.5,0.9]"], "optim.betas=[1.5, 0.9] is not allowed: a pair"),
        (["norm=btach"], "norm=btach is not allowed: one of ['batch', 'batch_keras', 'batch_noisy',"),
        (["data.on_device=true", "aug=strong"], "data.on_device=true but aug for digits has no"),
        (["data=cifar10", "data.dataset=mnist"], "data.dataset='mnist', but CIFAR10 reads cifar10: choose the dataset with data=mnist"),
        (["data.dataset=digits"], "but MNIST reads mnist: choose the dataset with data=<option>"),
        (["model=plain_deep", "model.pool_stages=6"], "model=plain_deep cannot be built for 1x28x28"),
        (["norm=instance", "model.head_norm=true"], "model.head_norm=true with norm=instance"),
        (["scheduler=none", "+scheduler.gamma=0.5"], "unknown key scheduler.gamma for scheduler=none"),
        # a key the option's record takes but its yaml does not set: Hydra wants the +
        (["eval=noisy", "eval.mc_samples=[2]"], "eval.mc_samples is not set by eval=noisy yet: add it with +eval.mc_samples=[2]"),
        (["+trainer.deterministic=true"], "trainer.deterministic=true is not allowed: not set here"),
        (["data.eval_batch_size=${oops}"], "data.eval_batch_size cannot be resolved"),
        (["reg.dropout=["], "reg.dropout=[ cannot be parsed"),
        (["-m", "reg.dropout=0.1,1.5"], "reg.dropout=1.5 is not allowed"),  # a sweep: before it starts
        (["-m", "norm=batch,btach"], "norm=btach is not allowed"),
    ],
)  # fmt: skip
def test_bad_config_exits_2_with_one_line_and_writes_nothing(
    overrides, expected, data_root, tmp_path, capsys
):
    run = tmp_path / "run"
    fast = fast_overrides(data_root, tmp_path)
    if "data=image_folder" in overrides:
        fast = [o for o in fast if not o.startswith("data.root")]
    errors = _refused([*overrides, *fast, f"hydra.run.dir={run}"], capsys)
    assert len(errors) == 1 and expected in errors[0], errors
    assert not run.exists() and not (tmp_path / "logs").exists()


@pytest.mark.parametrize("seed", ["0", "null", "7"])
def test_good_configs_pass_every_check(seed, data_root, tmp_path):
    overrides = [*fast_overrides(data_root, tmp_path), f"seed={seed}"]
    assert command_line_problems(overrides) == []  # seed 0 is a seed, null draws one
    assert command_line_problems(["-m", "norm=group", "norm.groups=2,3", *overrides]) == []


# keys bn_mlp_quick's sweeper params sweep (init, optim.momentum, data.standardize) and two they do not
SWEPT = {"init": ["gaussian", "xavier_normal", "he_normal"], "optim.momentum": ["0.0", "0.9", "0.5"],
         "data.standardize": ["false", "true"], "seed": ["0", "1", "2"], "norm": ["none", "batch"]}  # fmt: skip


def _settings(overrides: list[str]) -> dict[str, str]:
    """An override list as key -> value (the last one), the way Hydra applies it."""
    parsed = OverridesParser.create().parse_overrides(overrides)
    return {o.get_key_element(): o.get_value_element_as_str() for o in parsed}


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(chosen=st.dictionaries(st.sampled_from(sorted(SWEPT)), st.integers(1, 3), max_size=4),
       data=st.data())  # fmt: skip
def test_a_sweep_is_checked_at_the_jobs_hydra_will_run(chosen, data, monkeypatch, tmp_path):
    """The config check of a sweep composes Hydra's own jobs: a command-line value of a key the
    preset's sweeper params also sweep replaces them (was: the params' value won in the check)."""
    argv = ["experiment=bn_mlp_quick", f"log_dir={tmp_path}"]
    for key, n in chosen.items():
        n = min(n, len(SWEPT[key]))
        values = data.draw(
            st.lists(st.sampled_from(SWEPT[key]), min_size=n, max_size=n, unique=True)
        )
        argv.append(f"{key}={','.join(values)}")
    checked: list[list[str]] = []
    monkeypatch.setattr(
        preflight, "_cell_problems", lambda cell, multirun: checked.append(cell) or []
    )
    assert command_line_problems(["-m", *argv]) == []
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        base = compose(config_name="train", overrides=argv[:1], return_hydra_config=True)
    params = [f"{k}={v}" for k, v in base.hydra.sweeper.params.items()]
    (jobs,) = BasicSweeper.split_arguments(
        OverridesParser.create().parse_overrides([*params, *argv]), None
    )
    wanted = [_settings(job) for job in jobs]
    seen = [_settings(cell) for cell in checked]
    assert all(cell.pop("hydra.mode") == "MULTIRUN" for cell in seen)  # as `-m` composes a job
    assert seen[0] == wanted[0]  # the first job, then each other value of each swept key
    assert all(cell in wanted for cell in seen), (seen, wanted)
    every_value = {(k, v) for job in wanted for k, v in job.items()}
    assert every_value == {(k, v) for cell in seen for k, v in cell.items()}
    assert len(seen) == 1 + sum(len({j[k] for j in wanted}) - 1 for k in wanted[0])


def test_refused_run_leaves_no_folder_and_no_summary_through_the_cli(tmp_path):
    """data.on_device=true with aug=strong: the datamodule refuses it, before Hydra makes the run dir."""
    proc = run_cli("data.on_device=true", "aug=strong", f"log_dir={tmp_path / 'logs'}")
    assert proc.returncode == 2, proc.stderr[-3000:]
    (line,) = [x for x in proc.stderr.splitlines() if x.startswith("error:")]
    assert "data.on_device=true" in line and "data.on_device=null" in line
    assert "Traceback" not in proc.stderr and not (tmp_path / "logs").exists()


def test_unknown_option_name_keeps_hydras_list_of_choices(tmp_path):
    proc = run_cli("norm=btach", f"hydra.run.dir={tmp_path / 'run'}")
    assert proc.returncode == 2
    assert (
        "Could not find 'norm/btach'" in proc.stderr
        and "group" in proc.stderr
        and "batch" in proc.stderr
    )
    assert not (tmp_path / "run").exists()


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
def test_output_paths_outside_the_run_dir_are_refused(override, data_root, tmp_path, capsys):
    run_dir = tmp_path / "run"
    overrides = [*fast_overrides(data_root, tmp_path), f"hydra.run.dir={run_dir}", override]
    (line,) = _refused(overrides, capsys)
    assert override.split("=")[0] in line and "outside the run directory" in line
    assert not run_dir.exists()


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
