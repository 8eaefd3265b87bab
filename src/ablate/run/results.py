"""What a finished run reports: the best checkpoint, its final metrics, the HParams entry."""

from __future__ import annotations

import logging

import lightning as L
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import DictConfig, OmegaConf

from ablate.module import HPARAM_METRICS

log = logging.getLogger(__name__)


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


def flat_hparams(cfg: DictConfig) -> dict[str, object]:
    """The resolved config flattened to dotted keys with scalar values (what the HParams tab shows)."""
    out: dict[str, object] = {}

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                if k not in ("_target_", "_partial_"):
                    walk(v, f"{prefix}{k}.")
        else:
            out[prefix[:-1]] = node if isinstance(node, int | float | str | bool) else str(node)

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def log_hparams(trainer: L.Trainer, cfg: DictConfig, metrics: dict[str, float]) -> None:
    """One HParams entry per run, with the metrics the runs are compared on."""
    final = {k: metrics[k] for k in HPARAM_METRICS if k in metrics}
    for lg in trainer.loggers:
        if isinstance(lg, TensorBoardLogger):
            lg.log_hyperparams(flat_hparams(cfg), metrics=final)
            lg.experiment.flush()  # test() already finalized the logger: nothing else would flush this
