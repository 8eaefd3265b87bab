"""Entry point: `python -m ablate.train <overrides>` (Hydra app; primary config conf/train.yaml)."""

from __future__ import annotations

import logging
import os
import secrets
import sys

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations would query PyPI at import

import hydra
import lightning as L
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from hydra.utils import instantiate
from omegaconf import DictConfig, OmegaConf

from ablate.config import CONF_DIR, swept_keys
from ablate.datasets import DatasetNotFoundError
from ablate.instantiate import build_loggers_and_callbacks
from ablate.models import build_model
from ablate.module import Classifier
from ablate.results import best_checkpoint, final_metrics, log_hparams
from ablate.summary import RunSummary
from ablate.validate import fail, preflight, validate

log = logging.getLogger(__name__)


def train(cfg: DictConfig) -> dict[str, float]:
    """Validate, build data/model/trainer, fit, test the best checkpoint, write summary.json."""
    hc = HydraConfig.get()
    validate(cfg, choices=dict(hc.runtime.choices), run_dir=hc.runtime.output_dir)
    seed = (
        cfg.seed if cfg.seed is not None else secrets.randbelow(2**31)
    )  # null: a fresh seed, recorded
    L.seed_everything(seed, workers=True)
    multirun = hc.mode == RunMode.MULTIRUN
    swept = swept_keys(hc.sweeper.get("params")) if multirun else set()
    summary = RunSummary(
        hc.runtime.output_dir,
        cfg,
        seed,
        overrides=list(hc.overrides.task),
        swept=sorted(swept),
        choices=dict(hc.runtime.choices),
    )
    try:
        # aug is handed over resolved and un-instantiated: the datamodule builds only its family's pipeline.
        aug = OmegaConf.to_container(cfg.aug, resolve=True)
        datamodule = instantiate(cfg.data, aug=aug, seed=seed, _recursive_=False)
        datamodule.prepare_data()
        datamodule.setup("fit")
        net = build_model(cfg, datamodule.channels, datamodule.num_classes, datamodule.image_size)
        model = Classifier(
            net,
            optimizer=instantiate(cfg.optim),
            scheduler=instantiate(cfg.scheduler) or None,
            num_classes=datamodule.num_classes,
            l1=cfg.reg.l1,
            l2=cfg.reg.l2,
            weight_decay=cfg.reg.weight_decay,
        )
        loggers, callbacks = build_loggers_and_callbacks(cfg.logger, cfg.callbacks)
        trainer: L.Trainer = instantiate(
            cfg.trainer,
            callbacks=callbacks,
            logger=loggers or False,
            deterministic="warn" if cfg.deterministic else False,
        )
        trainer.fit(model, datamodule=datamodule)
        fit_metrics = dict(trainer.callback_metrics)  # test() replaces these
        trainer.test(model, datamodule=datamodule, ckpt_path=best_checkpoint(trainer))
        metrics = final_metrics({**fit_metrics, **trainer.callback_metrics})
        log_hparams(trainer, cfg, metrics)
        summary.finish(
            "completed",
            metrics,
            steps=trainer.global_step,
            epochs=trainer.current_epoch,
            splits=datamodule.split_sizes(),
            best_checkpoint=best_checkpoint(trainer),
            history=model.history,
        )
    except DatasetNotFoundError as e:
        summary.failed(e)
        fail([" ".join(str(e).split())])
    except BaseException as e:
        summary.failed(e)
        raise
    log.info("run directory: %s", hc.runtime.output_dir)
    log.info("summary: %s  |  TensorBoard: make tensorboard (serves ./logs)", summary.path)
    log.info(
        "test/acc=%.4f val/acc_best=%.4f",
        metrics.get("test/acc", float("nan")),
        metrics.get("val/acc_best", float("nan")),
    )
    return metrics


@hydra.main(version_base="1.3", config_path=str(CONF_DIR), config_name="train")
def _hydra_main(cfg: DictConfig) -> float:
    """The value a Hydra sweeper optimizes: best validation accuracy (0 when there is none)."""
    return train(cfg).get("val/acc_best", 0.0)


def main() -> None:
    """Console script `ablate-train`."""
    preflight(sys.argv[1:])
    _hydra_main()


if __name__ == "__main__":
    main()
