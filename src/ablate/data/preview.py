"""The augmentation preview: training images as stored and after the `aug` preset, in TensorBoard."""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.loggers import TensorBoardLogger
from torchvision.utils import make_grid


class AugmentationPreview(L.Callback):
    """Logs n training images as stored and after the `aug` preset to TensorBoard, once at fit start."""

    def __init__(self, n: int = 32) -> None:
        self.n = n

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loggers = [lg for lg in trainer.loggers if isinstance(lg, TensorBoardLogger)]
        dm = trainer.datamodule
        if not loggers or dm is None or not hasattr(dm, "preview"):
            return
        raw, augmented = dm.preview(self.n)
        nrow = max(1, int(self.n**0.5))
        for tag, images in (("aug/original", raw), ("aug/augmented", augmented)):
            if images is None:
                continue
            grid = make_grid(torch.from_numpy(images).permute(0, 3, 1, 2), nrow=nrow, padding=2)
            for lg in loggers:
                lg.experiment.add_image(tag, grid, global_step=0)
