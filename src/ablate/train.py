"""Entry point: `python -m ablate.train <overrides>` (Hydra app; primary config conf/train.yaml)."""

from __future__ import annotations

import json
import logging
import os
import secrets
import sys
from contextlib import ExitStack
from pathlib import Path

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would query PyPI at import

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ablate.config import COMMAND_ENV, CONF_DIR, SWEPT_ENV, cli_swept_keys
from ablate.data.datamodule import ImageDataModule
from ablate.data.decode import DataSizeError
from ablate.diagnostics.base import collect as collect_diagnostics
from ablate.diagnostics.monitors import mark_run_start
from ablate.models import build_model
from ablate.module import Classifier
from ablate.run.checkpoint import AtomicCheckpointIO
from ablate.run.identity import config_hash, previous_run, read_summary
from ablate.run.lock import run_lock
from ablate.run.loggers import build_loggers_and_callbacks
from ablate.run.outcome import Outcome
from ablate.run.record import Status
from ablate.run.results import best_checkpoint, final_metrics, log_hparams
from ablate.run.summary import RunSummary
from ablate.run.threads import set_threads
from ablate.testing.faults import injected_faults
from ablate.training.curve import LearningCurve
from ablate.training.divergence import DivergenceStop
from ablate.training.step_limit import ValidateAtMaxSteps
from ablate.validate import ConfigError, config_problems, fail

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Validate, build data/model/trainer, fit, test the best checkpoint, write summary.json."""
    mark_run_start()
    run_dir = HydraConfig.get().runtime.output_dir
    if problems := config_problems(cfg, dict(HydraConfig.get().runtime.choices), run_dir):
        _reject(cfg, run_dir, problems)
    cfg_hash = config_hash(cfg)
    with ExitStack() as held:
        try:
            held.enter_context(run_lock(run_dir))  # one process per run directory
            previous = previous_run(run_dir, cfg_hash, resume=cfg.resume)
        except ValueError as e:
            fail([str(e)])
        if previous and previous.finished:  # re-running a sweep redoes nothing finished
            log.info("%s: already %s, skipped", run_dir, previous.summary.status)
            return previous.summary.metrics
        return _fit_and_test(cfg, run_dir, cfg_hash, previous.resume_from if previous else None)


def _reject(cfg: DictConfig, run_dir: str, problems: list[str]) -> None:
    """A bad config: exit 2 before anything is written; in a sweep, fail only this cell."""
    in_sweep = HydraConfig.get().mode == RunMode.MULTIRUN
    earlier = read_summary(run_dir)
    if not in_sweep or (earlier is not None and earlier.status != Status.FAILED):
        fail(problems)  # never write over an earlier run (a failed one is re-run in place anyway)
    # One bad cell of a sweep (e.g. norm.groups=3 where a width is 32): recorded in its
    # summary.json, and the sweep goes on; it exits 1 and names the failed cells.
    error = ConfigError("; ".join(problems))
    try:
        RunSummary.for_hydra_job(cfg, cfg.get("seed"), config_hash(cfg)).failed(error)
    except Exception:  # noqa: BLE001 - e.g. a missing (???) value: nothing to record it with
        fail(problems)
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    raise error


def _fit_and_test(
    cfg: DictConfig, run_dir: str, cfg_hash: str, resume: Path | None
) -> dict[str, float]:
    seed = cfg.seed if cfg.seed is not None else secrets.randbelow(2**31)  # null: drawn, recorded
    L.seed_everything(seed, workers=True)
    threads = set_threads(cfg.threads)
    try:  # loaded before summary.json is written: what the data refuses leaves an earlier run as it was
        datamodule = _load_data(cfg, seed)
    except DataSizeError as e:
        _reject(cfg, run_dir, e.problems)
    except Exception:  # noqa: BLE001 - e.g. a damaged dataset: recorded as this run's failure
        with Outcome(RunSummary.for_hydra_job(cfg, seed, cfg_hash)):
            raise
    summary = RunSummary.for_hydra_job(cfg, seed, cfg_hash)
    with Outcome(summary) as outcome:
        net = build_model(
            cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=datamodule.channels,
            num_classes=datamodule.num_classes, image_size=datamodule.image_size,
        )  # fmt: skip
        model = Classifier(
            net, optimizer=instantiate(cfg.optim), scheduler=instantiate(cfg.scheduler) or None,
            num_classes=datamodule.num_classes, reg=instantiate(cfg.reg),
            tta_flip=cfg.model.get("tta_flip", False),
        )  # fmt: skip
        loggers, callbacks = build_loggers_and_callbacks(cfg.logger, cfg.callbacks, cfg.diagnostics)
        # Not from conf/callbacks: a run with callbacks=none still has a curve and a divergence test.
        curve, divergence = LearningCurve(), DivergenceStop(cfg.max_loss)
        watch = [curve, divergence, ValidateAtMaxSteps()]
        trainer: L.Trainer = instantiate(
            cfg.trainer, callbacks=callbacks + watch + injected_faults(cfg), logger=loggers or False,
            deterministic="warn" if cfg.deterministic else False, plugins=[AtomicCheckpointIO()],
        )  # fmt: skip
        outcome.trainer = trainer
        if resume:
            log.info("resuming the interrupted run from %s", resume)
        trainer.fit(model, datamodule=datamodule, ckpt_path=resume)
        diag_metrics, diag_series = collect_diagnostics(callbacks)
        metrics = final_metrics({**trainer.callback_metrics, **diag_metrics})
        status = Status.COMPLETED if divergence.diverged_at_step is None else Status.DIVERGED
        if status == Status.COMPLETED:  # a diverged run is not tested: its weights are not a model
            trainer.test(model, datamodule=datamodule, ckpt_path=best_checkpoint(trainer))
            metrics = final_metrics({**metrics, **trainer.callback_metrics})  # keeps diag_metrics
            log_hparams(trainer, cfg, metrics, status, curve.history)
        summary.finish(
            status, metrics, history=curve.history, steps=trainer.global_step,
            epochs=trainer.current_epoch, splits=datamodule.split_sizes(),
            best_checkpoint=best_checkpoint(trainer), diverged_at_step=divergence.diverged_at_step,
            threads=threads, diagnostics=diag_series or None, data_path=datamodule.data_path,
        )  # fmt: skip
    log.info("run directory: %s", run_dir)
    serve = (
        "make tensorboard"
        if str(cfg.log_dir) == "logs"
        else f".venv/bin/tensorboard --logdir {cfg.log_dir}"
    )
    tensorboard = any(isinstance(lg, TensorBoardLogger) for lg in loggers)
    hint = f"  |  TensorBoard: {serve}" if tensorboard else ""
    log.info("summary: %s%s", summary.path, hint)
    log.info("%s: test/acc=%.4f val/acc_best=%.4f", status, metrics.get("test/acc", float("nan")),
             metrics.get("val/acc_best", float("nan")))  # fmt: skip
    return metrics


def _load_data(cfg: DictConfig, seed: int) -> ImageDataModule:
    """The datamodule, its data loaded and split (exit 2 on values the loaded data refuses)."""
    # aug goes in resolved and un-instantiated: the datamodule builds its family's pipeline only.
    aug = OmegaConf.to_container(cfg.aug, resolve=True)
    datamodule = instantiate(cfg.data, aug=aug, seed=seed, _recursive_=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    """The value a Hydra sweeper optimizes: best validation accuracy (0 when there is none)."""
    if HydraConfig.get().mode != RunMode.MULTIRUN:
        return train(cfg).get("val/acc_best", 0.0)
    try:  # in a sweep, one failed cell is recorded in its summary.json and the sweep goes on
        return train(cfg).get("val/acc_best", 0.0)
    except Exception:
        log.exception("this run failed (see its summary.json); the sweep continues")
        return 0.0  # worst-case score: a sweeper (e.g. Optuna) must not get NaN or an exception


def main() -> None:
    """Console script `ablate-train`."""
    # `experiment` defaults to null in conf/train.yaml, so Hydra wants `experiment=x`; accept `+experiment=x` too.
    sys.argv = [a[1:] if a.startswith("+experiment=") else a for a in sys.argv]
    os.environ[SWEPT_ENV] = ",".join(sorted(cli_swept_keys(sys.argv[1:])))
    os.environ[COMMAND_ENV] = json.dumps(sys.argv[1:])  # run/sweep folders: ablate.config
    from ablate.preflight import check_command_line

    check_command_line(sys.argv[1:])  # exit 2 on a config that cannot train: before Hydra writes
    _hydra_main()


if __name__ == "__main__":
    main()
