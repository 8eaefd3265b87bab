"""What a finished run reports: the best checkpoint, its final metrics, the HParams entry."""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ablate.overrides import bare
from ablate.run.events import merge_event_files
from ablate.run.record import Status, steps_to_target
from ablate.run.tracking import record_run

log = logging.getLogger(__name__)

# Config-group choices shown as one column each (named as the group: `norm`, `reg`, ...).
HPARAM_GROUPS = ("data", "model", "norm", "reg", "init", "aug", "optim", "scheduler", "experiment")
# The values that shape a result, shown when they can differ within the sweep (model keys per
# architecture); constants of a sweep are left out, as the whole config is in summary.json.
HPARAM_KEYS = (
    "optim.lr",
    "data.batch_size",
    "data.train_subset",
    "trainer.max_epochs",
    "trainer.max_steps",
    "reg.dropout",
    "reg.dropout2d",
    "reg.l1",
    "reg.l2",
    "reg.weight_decay",
    "reg.label_smoothing",
    "model.channels",
    "model.hidden",
    "model.depth",
    "model.width",
)
# The HParams tab's metric columns; status is 1 for a completed run, 0 for a diverged one.
HPARAM_METRICS = ("test/acc", "val/acc_best", "gap/train_test", "steps_to_target", "status")
STATUS_VALUE = {Status.COMPLETED: 1.0, Status.DIVERGED: 0.0}
# Keys that say where things are or how a run is watched: never a column.
NOT_HPARAM = ("hydra", "callbacks", "logger", "log_dir", "resume", "threads", "diagnostics")
NOT_HPARAM_LEAF = ("root", "cache_dir", "dir", "path", "num_workers", "download")


def best_checkpoint(trainer: L.Trainer) -> str | None:
    """Path of the best checkpoint on val/acc; None (test the current weights) when there is none."""
    path = trainer.checkpoint_callback.best_model_path if trainer.checkpoint_callback else ""
    if not path:
        log.warning(
            "no best checkpoint (checkpointing off or fast_dev_run): testing current weights"
        )
        return None
    return path


def final_metrics(logged: dict) -> dict[str, float]:
    """Scalar metrics of fit and test, plus the generalization gaps of the best checkpoint."""
    m = {k: float(v) for k, v in logged.items() if not hasattr(v, "numel") or v.numel() == 1}
    if "train_eval/acc" in m and "test/acc" in m:
        m["gap/train_test"] = m["train_eval/acc"] - m["test/acc"]
    if "train_eval/acc" in m and "val/acc_best" in m:
        m["gap/train_val"] = m["train_eval/acc"] - m["val/acc_best"]
    return m


def _hparam_value(value: Any) -> bool | float | str | None:
    """A value the HParams tab can show; None for nulls, path-like strings and nested configs."""
    if value is None or isinstance(value, dict):
        return None
    if isinstance(value, bool | str):
        return None if isinstance(value, str) and ("/" in value or value.startswith("~")) else value
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, list | tuple):
        return str(list(value))
    return str(value)


def _shown_key(key: str) -> bool:
    """Whether a config key may become a column (not a path, logger or callback setting)."""
    parts = bare(key).split(".")
    return parts[0] not in NOT_HPARAM and parts[-1] not in NOT_HPARAM_LEAF


def _may_differ(key: str, swept: set[str]) -> bool:
    """Whether a result-shaping key can differ between the runs of a sweep sweeping `swept`.

    In a single run (nothing swept) every key is shown; in a sweep only a swept key, a key of a swept
    group (`reg.dropout` when `reg` is swept) or any key when presets (`experiment`) are swept.
    """
    return not swept or bool({key, key.split(".")[0], "experiment"} & swept)


def select_hparams(
    cfg: DictConfig, choices: dict[str, Any], swept: set[str] | list[str]
) -> dict[str, bool | float | str]:
    """The columns of one run: group choices, swept keys and seed, the result-shaping values."""
    resolved = OmegaConf.to_container(cfg, resolve=True)
    out: dict[str, bool | float | str] = {}

    def lookup(key: str) -> Any:
        node: Any = resolved
        for part in key.split("."):
            if not isinstance(node, dict) or part not in node:
                return None
            node = node[part]
        return node

    for group in HPARAM_GROUPS:
        if (v := _hparam_value(choices.get(group))) is not None:
            out[group] = v
    swept = {bare(k) for k in swept}
    keys = sorted(swept) + ["seed", *(k for k in HPARAM_KEYS if _may_differ(k, swept))]
    for key in keys:
        if key in out or not _shown_key(key):
            continue
        raw = choices[key] if key in choices else lookup(key)
        if key == "trainer.max_steps" and isinstance(raw, int) and raw < 0:
            continue  # -1: no step limit, max_epochs decides
        if (v := _hparam_value(raw)) is not None:
            out[key] = v
    return out


def hparam_metrics(
    metrics: dict[str, float], status: Status, history: list[dict[str, Any]], target: float | None
) -> dict[str, float]:
    """The metric columns a run has (steps_to_target only when the target was reached)."""
    out = {k: float(metrics[k]) for k in HPARAM_METRICS if k in metrics}
    steps = steps_to_target(history, target) if target is not None else None
    if steps is not None:
        out["steps_to_target"] = steps
    if status in STATUS_VALUE:
        out["status"] = STATUS_VALUE[status]
    return {k: v for k, v in out.items() if math.isfinite(v)}


def hparams_summaries(
    hparams: dict[str, bool | float | str],
    metrics: list[str],
    status: Status,
    differs: set[str] | frozenset[str] = frozenset(),
) -> list[Any]:
    """The hparams plugin's experiment, session-start and session-end Summary protos.

    `differs` (the swept keys) come first in the HParams tab, which shows only 5 columns by default.
    """
    from tensorboard.compat.proto.summary_pb2 import Summary, SummaryMetadata
    from tensorboard.plugins.hparams import api_pb2, metadata
    from tensorboard.plugins.hparams import plugin_data_pb2 as pd

    types = {bool: "DATA_TYPE_BOOL", float: "DATA_TYPE_FLOAT64", str: "DATA_TYPE_STRING"}
    start = pd.SessionStartInfo(start_time_secs=time.time())
    infos = []
    for name, value in hparams.items():
        field = {bool: "bool_value", float: "number_value", str: "string_value"}[type(value)]
        setattr(start.hparams[name], field, value)
        kind = api_pb2.DataType.Value(types[type(value)])
        infos.append(api_pb2.HParamInfo(name=name, type=kind, differs=name in differs))
    experiment = api_pb2.Experiment(
        hparam_infos=infos,
        metric_infos=[api_pb2.MetricInfo(name=api_pb2.MetricName(tag=m)) for m in metrics],
    )
    ok = api_pb2.Status.Value("STATUS_SUCCESS" if status == Status.COMPLETED else "STATUS_FAILURE")
    end = pd.SessionEndInfo(status=ok, end_time_secs=time.time())
    contents = (
        (metadata.EXPERIMENT_TAG, pd.HParamsPluginData(experiment=experiment)),
        (metadata.SESSION_START_INFO_TAG, pd.HParamsPluginData(session_start_info=start)),
        (metadata.SESSION_END_INFO_TAG, pd.HParamsPluginData(session_end_info=end)),
    )
    out = []
    for tag, content in contents:
        content.version = metadata.PLUGIN_DATA_VERSION
        plugin = SummaryMetadata.PluginData(
            plugin_name=metadata.PLUGIN_NAME, content=content.SerializeToString()
        )
        out.append(
            Summary(value=[Summary.Value(tag=tag, metadata=SummaryMetadata(plugin_data=plugin))])
        )
    return out


def _hydra_context() -> tuple[dict[str, Any], set[str]]:
    """(group choices, swept keys) of the current Hydra job; empty outside Hydra."""
    try:
        from hydra.core.hydra_config import HydraConfig
        from hydra.types import RunMode

        from ablate.config import swept_keys

        hc = HydraConfig.get()
    except (ImportError, ValueError):
        return {}, set()
    swept = swept_keys(hc.sweeper.get("params")) if hc.mode == RunMode.MULTIRUN else set()
    return dict(hc.runtime.choices), swept


def log_hparams(
    trainer: L.Trainer,
    cfg: DictConfig,
    metrics: dict[str, float],
    status: Status,
    history: list[dict[str, Any]],
) -> None:
    """One HParams entry per run: the config choices it is compared on and its result metrics."""
    target = OmegaConf.select(cfg, "report.target_acc", default=None)
    choices, swept = _hydra_context()
    hparams = select_hparams(cfg, choices, swept)
    shown = hparam_metrics(metrics, status, history, float(target) if target is not None else None)
    names = [m for m in HPARAM_METRICS if m in shown or (m == "steps_to_target" and target)]
    for lg in trainer.loggers:
        if not trainer.is_global_zero:
            continue
        if not isinstance(lg, TensorBoardLogger):  # MLflow, W&B: the same columns and metrics
            record_run(lg, hparams, shown, trainer.global_step, status)
            continue
        writer = lg.experiment  # fit and test closed it: this reopens it on a new event file
        file_writer = writer._get_file_writer()
        if file_writer is None:  # Lightning's DummyExperiment (a rank it takes for non-zero)
            log.warning("no HParams entry: the TensorBoard logger has no writer in this process")
            continue
        for name, value in shown.items():
            writer.add_scalar(name, value, trainer.global_step)
        differs = {bare(k) for k in swept}
        for summary in hparams_summaries(hparams, names, status, differs):
            file_writer.add_summary(summary, trainer.global_step)
        writer.flush()
        writer.close()
        merge_event_files(lg.log_dir)
