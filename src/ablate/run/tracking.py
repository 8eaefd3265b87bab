"""MLflow and Weights & Biases (logger=mlflow, logger=wandb): Lightning's own loggers, named by folder.

Each is an optional extra (`make install EXTRAS=mlflow,wandb`; checked by ablate.run.extras).
The experiment (MLflow) or group (W&B) is the folder holding the run, relative to log_dir: a
sweep's folder such as `multiruns/<name>`, or `runs` for single runs; the run is its own folder.
At the end a run gets the TensorBoard HParams entry's columns as parameters and its metrics.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Callable, Mapping
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any

from filelock import FileLock
from lightning.pytorch.loggers import Logger, MLFlowLogger, WandbLogger
from omegaconf import DictConfig, OmegaConf

from ablate.run.extras import EXTRA_KEY
from ablate.run.record import Status

log = logging.getLogger(__name__)


def arguments(entry: DictConfig) -> DictConfig | dict:
    """A logger entry as its `_target_` takes it: without `_extra_` (interpolations resolved)."""
    if EXTRA_KEY not in entry:
        return entry
    resolved = OmegaConf.to_container(entry, resolve=True)
    return {k: v for k, v in resolved.items() if k != EXTRA_KEY}


def folder_names(run_dir: str, log_dir: str) -> tuple[str, str]:
    """(the run's parent folder relative to log_dir, the run's folder name): its group and name."""
    run, root = Path(run_dir).resolve(), Path(log_dir).resolve()
    parent = run.parent
    group = parent.relative_to(root).as_posix() if parent.is_relative_to(root) else str(parent)
    return group or ".", run.name


def mlflow_logger(run_dir: str, log_dir: str, **kwargs: Any) -> MLFlowLogger:
    """Lightning's MLFlowLogger: experiment = the sweep's folder (`runs` for single runs)."""
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")  # no network unless asked for
    # MLflow 3 keeps the file store (no server, no database) behind this opt-in.
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    experiment, name = folder_names(run_dir, log_dir)
    kwargs.setdefault("experiment_name", experiment)
    kwargs.setdefault("run_name", name)
    if kwargs.get("run_id") is None:  # the store as MLFlowLogger picks it
        uri = kwargs.get("tracking_uri", os.getenv("MLFLOW_TRACKING_URI"))
        uri = uri or f"file:{kwargs.get('save_dir') or './mlruns'}"
        create_experiment(uri, kwargs["experiment_name"])
    return MLFlowLogger(**kwargs)


def create_experiment(tracking_uri: str, name: str) -> None:
    """The experiment, made once also when a sweep's cells start together (hydra/launcher=joblib):
    MLflow's file store checks the name and then writes, so two cells could make two."""
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    lock: AbstractContextManager = nullcontext()
    if tracking_uri.startswith("file:"):
        store = Path(tracking_uri.removeprefix("file:"))
        store.parent.mkdir(parents=True, exist_ok=True)
        lock = FileLock(f"{store}.lock")  # beside the store: MLflow reads every folder inside it
    with lock:
        client = MlflowClient(tracking_uri)
        if client.get_experiment_by_name(name) is None:
            try:
                client.create_experiment(name)
            except MlflowException:  # a database or server store: another cell made it first
                if client.get_experiment_by_name(name) is None:
                    raise


def wandb_logger(run_dir: str, log_dir: str, **kwargs: Any) -> WandbLogger:
    """Lightning's WandbLogger: group = the sweep's folder (`runs` for single runs)."""
    import wandb

    if kwargs.get("offline"):  # nothing leaves the machine, crash reports included
        os.environ.setdefault("WANDB_ERROR_REPORTING", "false")
    if wandb.run is not None:  # an earlier cell of this process (a diverged or failed run)
        wandb.finish()
    group, name = folder_names(run_dir, log_dir)
    kwargs.setdefault("group", group)
    kwargs.setdefault("name", name)
    return WandbLogger(**kwargs)


def _plain(params: Mapping[str, Any]) -> dict[str, Any]:
    """The HParams columns with whole numbers as integers (seed 3, not 3.0)."""
    return {k: int(v) if isinstance(v, float) and v.is_integer() else v for k, v in params.items()}


def _record_mlflow(
    lg: MLFlowLogger, params: Mapping, metrics: Mapping, step: int, ok: bool
) -> None:
    lg.log_hyperparams(_plain(params))
    lg.log_metrics(dict(metrics), step)
    lg.experiment.set_terminated(lg.run_id, "FINISHED" if ok else "FAILED")
    if (store := lg.save_dir) is not None:  # a local file store
        mlflow = Path(sys.executable).with_name("mlflow")
        shown = os.path.relpath(mlflow) if mlflow.is_relative_to(Path.cwd()) else str(mlflow)
        command = f"MLFLOW_ALLOW_FILE_STORE=true {shown} ui --backend-store-uri {store}"
        log.info("MLflow: %s", "make mlflow" if store == "logs/mlruns" else command)


def _record_wandb(lg: WandbLogger, params: Mapping, metrics: Mapping, step: int, ok: bool) -> None:
    lg.log_hyperparams(_plain(params))
    lg.log_metrics(dict(metrics), step)
    lg.experiment.summary.update(dict(metrics))
    # wandb prints where the offline run is and the `wandb sync` command; a sweep's next cell in
    # this process would otherwise log into this run.
    lg.experiment.finish(exit_code=0 if ok else 1)


RECORDERS: dict[type[Logger], Callable[[Any, Mapping, Mapping, int, bool], None]] = {
    MLFlowLogger: _record_mlflow,
    WandbLogger: _record_wandb,
}


def record_run(
    lg: Logger, params: Mapping[str, Any], metrics: Mapping[str, float], step: int, status: str
) -> None:
    """The HParams entry's columns as parameters and its metrics, for MLflow and W&B; else nothing."""
    for kind, record in RECORDERS.items():
        if isinstance(lg, kind):
            record(lg, params, metrics, step, status == Status.COMPLETED)
