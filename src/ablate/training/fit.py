"""Fit, test the best checkpoint and write summary.json: the heavy half of `ablate.train`.

Imported only once a config has passed every check, so a refusal or a skipped finished run never
pays for importing Lightning (about 4 s of the 7 s a refused command took on a 2-core CPU).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import lightning as L
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ablate import evaluation
from ablate.data.datamodule import ImageDataModule
from ablate.data.decode import DataSizeError
from ablate.diagnostics.base import collect as collect_diagnostics
from ablate.models import build_model
from ablate.module import Classifier
from ablate.run.checkpoint import AtomicCheckpointIO
from ablate.run.loggers import build_loggers_and_callbacks
from ablate.run.outcome import Outcome
from ablate.run.record import Status
from ablate.run.results import best_checkpoint, final_metrics, log_hparams
from ablate.run.summary import RunSummary
from ablate.run.threads import set_threads
from ablate.testing.faults import injected_faults
from ablate.training import chunks
from ablate.training.acted import TechniqueUse
from ablate.training.curve import LearningCurve
from ablate.training.divergence import DivergenceStop
from ablate.training.step_limit import ValidateAtMaxSteps

log = logging.getLogger("ablate.train")


def fit_and_test(
    cfg: DictConfig,
    run_dir: str,
    cfg_hash: str,
    resume: Path | None,
    reject: Callable[[DictConfig, str, list[str]], NoReturn],
) -> dict[str, float]:
    """Seed, load the data, build and fit the model, test its best checkpoint, record the run."""
    seed = cfg.seed if cfg.seed is not None else secrets.randbelow(2**31)  # null: drawn, recorded
    L.seed_everything(seed, workers=True)
    threads = set_threads(cfg.threads)
    try:  # loaded before summary.json is written: what the data refuses leaves an earlier run as it was
        datamodule = load_data(cfg, seed)
    except DataSizeError as e:
        reject(cfg, run_dir, e.problems)
    except Exception:  # noqa: BLE001 - e.g. a damaged dataset: recorded as this run's failure
        with Outcome(RunSummary.for_hydra_job(cfg, seed, cfg_hash)):
            raise
    steps_per_call, problem = chunk_size(cfg, datamodule)
    if problem:
        reject(cfg, run_dir, [problem])
    if resume and (started := chunks.recorded(resume)) != steps_per_call:
        log.info("steps_per_call=%d: the interrupted run's own (this config gives %d)", started,
                 steps_per_call)  # fmt: skip
        steps_per_call = started
    datamodule.steps_per_call = steps_per_call
    summary = RunSummary.for_hydra_job(cfg, seed, cfg_hash)
    with Outcome(summary) as outcome:
        net = build_model(
            cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=datamodule.channels,
            num_classes=datamodule.num_classes, image_size=datamodule.image_size,
        )  # fmt: skip
        model = Classifier(
            net, optimizer=instantiate(cfg.optim), scheduler=instantiate(cfg.scheduler) or None,
            num_classes=datamodule.num_classes, reg=instantiate(cfg.reg),
            tta_flip=cfg.model.get("tta_flip", False), steps_per_call=steps_per_call,
        )  # fmt: skip
        loggers, callbacks = build_loggers_and_callbacks(cfg.logger, cfg.callbacks, cfg.diagnostics)
        # Not from conf/callbacks: a run with callbacks=none still has a curve and a divergence test.
        curve, divergence = LearningCurve(), DivergenceStop(cfg.max_loss)
        use = TechniqueUse(model.reg)  # whether each regularizer that is on acted
        watch = [curve, divergence, use, ValidateAtMaxSteps()]
        first = [chunks.ChunkSteps()] if steps_per_call > 1 else []
        trainer: L.Trainer = instantiate(
            cfg.trainer, callbacks=first + callbacks + watch + injected_faults(cfg),
            logger=loggers or False, deterministic="warn" if cfg.deterministic else False,
            plugins=[AtomicCheckpointIO()], **chunks.trainer_overrides(cfg.trainer, steps_per_call),
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
            scores = evaluation.test_time(evaluation.build(cfg.eval), model, datamodule, seed)
            for lg in trainer.loggers:  # beside test/acc in TensorBoard, at the last step
                lg.log_metrics(scores, step=trainer.global_step)
            metrics |= scores
            log_hparams(trainer, cfg, metrics, status, curve.history)
        summary.finish(
            status, metrics, history=curve.history, steps=trainer.global_step,
            epochs=trainer.current_epoch, splits=datamodule.split_sizes(),
            best_checkpoint=best_checkpoint(trainer), diverged_at_step=divergence.diverged_at_step,
            threads=threads, diagnostics=diag_series or None, data_path=datamodule.data_path,
            techniques=use.record(), steps_per_call=steps_per_call,
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


def chunk_size(cfg: DictConfig, datamodule: ImageDataModule) -> tuple[int, str | None]:
    """(steps_per_call, problem): cfg.steps_per_call resolved against this run's step events."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True)
    events = chunks.step_events(trainer, OmegaConf.to_container(cfg.callbacks, resolve=True),
                                len(datamodule.train_dataloader().loader))  # fmt: skip
    blocked = chunks.blockers(trainer, OmegaConf.to_container(cfg.diagnostics, resolve=True))
    return chunks.resolve(cfg.get("steps_per_call", 1), events, blocked)


def load_data(cfg: DictConfig, seed: int) -> ImageDataModule:
    """The datamodule, its data loaded and split (exit 2 on values the loaded data refuses)."""
    # aug goes in resolved and un-instantiated: the datamodule builds its family's pipeline only.
    aug = OmegaConf.to_container(cfg.aug, resolve=True)
    datamodule = instantiate(cfg.data, aug=aug, seed=seed, _recursive_=False)
    datamodule.prepare_data()
    datamodule.setup("fit")
    return datamodule
