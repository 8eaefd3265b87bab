"""What a person sees of a sweep: the TensorBoard HParams columns (read back from the event file),
one event file per run, the sweep's progress lines, and `--help`."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import REPO, fast_overrides, run_cli
from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from omegaconf import open_dict

from ablate.config import CONF_DIR
from ablate.run.events import merge_event_files
from ablate.run.progress import Progress, fmt_duration, progress_line
from ablate.run.results import select_hparams


def _plugin_data(event_file: Path) -> tuple[dict, list[str], dict[str, float]]:
    """(session-start hparams, experiment metric tags, scalar last values) of one event file."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.plugins.hparams import plugin_data_pb2

    hparams, metrics, scalars = {}, [], {}
    for event in EventFileLoader(str(event_file)).Load():
        for value in event.summary.value:
            plugin = value.metadata.plugin_data
            if plugin.plugin_name == "hparams":
                data = plugin_data_pb2.HParamsPluginData.FromString(plugin.content)
                if data.HasField("session_start_info"):
                    for k, v in data.session_start_info.hparams.items():
                        hparams[k] = getattr(v, v.WhichOneof("kind"))
                if data.HasField("experiment"):
                    metrics = [m.name.tag for m in data.experiment.metric_infos]
            elif value.HasField("tensor") and value.tensor.float_val:
                scalars[value.tag] = value.tensor.float_val[0]
            elif value.HasField("simple_value"):
                scalars[value.tag] = value.simple_value
    return hparams, metrics, scalars


def test_hparams_columns_are_the_choices_swept_keys_and_result_shaping_values():
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(
            "train", overrides=["norm=group", "reg=dropout", "data.train_subset=500"],
            return_hydra_config=True,
        )  # fmt: skip
        HydraConfig.instance().set_config(cfg)
        with open_dict(cfg):
            del cfg["hydra"]  # the task config a run gets
    choices = {"data": "mnist", "model": "cnn", "norm": "group", "reg": "dropout", "init": "he_normal",
               "aug": "none", "optim": "sgd", "scheduler": "onecycle", "experiment": None}  # fmt: skip
    cols = select_hparams(cfg, choices, {"norm", "optim.lr"})
    assert {"data", "model", "norm", "reg", "init", "aug", "optim", "scheduler"} <= set(cols)
    assert "experiment" not in cols  # None: not a column
    assert cols["norm"] == "group" and cols["seed"] == 0.0 and cols["optim.lr"] == 0.05
    # constants of this sweep (neither swept nor under a swept group) are not columns
    assert not {"reg.dropout", "data.train_subset", "model.channels", "data.batch_size"} & set(cols)
    # a swept group brings its result-shaping keys, which differ between its options
    by_reg = select_hparams(cfg, choices, {"reg", "seed"})
    assert by_reg["reg"] == "dropout" and by_reg["reg.dropout"] == 0.5 and "optim.lr" not in by_reg
    # a single run (nothing swept) shows every result-shaping value it has
    single = select_hparams(cfg, choices, set())
    assert single["data.train_subset"] == 500.0 and single["model.channels"] == "[32, 64]"
    assert not [k for k in cols if k.split(".")[0] in ("callbacks", "logger", "hydra", "log_dir")]
    assert not [k for k in cols if k.endswith(("root", "cache_dir", "dirpath", "num_workers"))]
    assert len(cols) < 30


@pytest.mark.real_data
def test_a_sweep_has_one_event_file_per_run_whose_hparams_compare_the_choice(data_root, tmp_path):
    sweep = tmp_path / "sweep"
    proc = run_cli(
        "-m", *fast_overrides(data_root, tmp_path), "norm=none,batch", "seed=0",
        "trainer.max_epochs=-1", "trainer.max_steps=3", "data.eval_train_max=64",
        f"hydra.sweep.dir={sweep}",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    log = proc.stdout + proc.stderr
    assert "sweep progress: run 1 of 2 (0 finished earlier, not re-run)" in log
    assert "sweep progress: run 2 of 2 completed" in log and "nothing left to run" in log
    seen = {}
    for run in sorted(sweep.glob("norm=*")):
        (events,) = run.glob("events.out.tfevents.*")  # training, test and HParams in one file
        hparams, metrics, scalars = _plugin_data(events)
        seen[run.name] = hparams["norm"]
        assert {"model", "reg", "init", "optim", "seed"} <= set(hparams)
        assert not {"optim.lr", "data.batch_size"} & set(hparams)  # the same in every run
        assert not [k for k in hparams if k.startswith(("callbacks", "aug.", "hydra", "logger"))]
        assert {"test/acc", "val/acc_best", "status"} <= set(metrics)
        assert 0 <= scalars["test/acc"] <= 1 and scalars["status"] == 1.0
        assert any(t.startswith("train/loss") for t in scalars)
    assert seen == {"norm=batch": "batch", "norm=none": "none"}
    # Re-running finishes nothing new: every run says it was finished earlier.
    again = run_cli(*proc.args[3:])
    assert "run 2 of 2 already finished (2 finished earlier, not re-run), nothing left to run" in (
        again.stdout + again.stderr
    )


def test_merging_event_files_keeps_every_record_in_order(tmp_path):
    from torch.utils.tensorboard import SummaryWriter

    for step in range(3):  # three writers of one process, as fit, test and HParams were
        with SummaryWriter(tmp_path) as w:
            w.add_scalar("x", float(step), step)
    assert len(list(tmp_path.glob("events.out.tfevents.*"))) == 3
    merged = merge_event_files(tmp_path)
    assert list(tmp_path.glob("events.out.tfevents.*")) == [merged]
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(tmp_path))
    acc.Reload()
    assert [(e.step, e.value) for e in acc.Scalars("x")] == [(0, 0.0), (1, 1.0), (2, 2.0)]


def test_progress_counts_the_runs_hydra_launches_when_the_command_line_narrows_a_sweep():
    from omegaconf import OmegaConf

    from ablate.run.progress import planned_combos

    cfg = OmegaConf.create(
        {"hydra": {"sweeper": {"params": {"norm": "none,batch,group", "seed": "100,101,102"}},
                   "overrides": {"task": ["seed=0", "norm=batch,group", "trainer.max_steps=20"]}}}
    )  # fmt: skip
    combos, total = planned_combos(cfg)
    assert total == 2 and combos == [{"norm": "batch", "seed": "0"}, {"norm": "group", "seed": "0"}]


def test_progress_line_counts_runs_and_estimates_time_from_the_finished_ones():
    p = Progress(total=24, skipped=3, done=4, elapsed_s=160.0)
    assert p.left == 17 and p.left_s() == pytest.approx(680.0)
    assert progress_line(8, p) == (
        "sweep progress: run 8 of 24 (3 finished earlier, not re-run), about 11 min left"
    )
    assert "time left known after the first run" in progress_line(1, Progress(24, 0, 0, 5.0))
    assert "run 3 of ?" in progress_line(3, Progress(None, 0, 2, 10.0))
    assert [fmt_duration(s) for s in (0.2, 59, 61, 7200)] == ["1 s", "59 s", "1 min", "2.0 h"]


def test_help_speaks_for_the_project():
    proc = run_cli("--help", cwd=REPO)
    assert proc.returncode == 0, proc.stderr
    first = proc.stdout.splitlines()[0]
    assert first.startswith("ablate: ablation studies") and "powered by Hydra" not in proc.stdout
    for text in ("== Examples ==", "python -m ablate.train -m norm=none,batch", "ablate.report",
                 "logs/experiments/<preset>", "norm: batch", "model: cnn, lecture_cnn"):  # fmt: skip
        assert text in proc.stdout, text
