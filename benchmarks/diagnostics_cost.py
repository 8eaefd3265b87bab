"""Cost of the diagnostics callbacks: training images/s with diagnostics=none, basic and full.

One process, one torch thread, the default config (CNN [32, 64] + BatchNorm, batch 128, MNIST);
the options alternate over the repeats so machine noise hits them alike. Reports images per
second of wall time and per second of CPU time (the latter is robust to other jobs on the machine),
median over repeats, and each option's speed relative to `none`. The intervals are the presets'
own (basic: statistics every 50 steps, histograms every 200; full: + a landscape probe every 50).

    python benchmarks/diagnostics_cost.py [--quick] [--steps 200] [--repeats 3] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import time
import warnings

import lightning as L
import torch
from hydra.utils import instantiate
from lightning.pytorch.loggers import TensorBoardLogger
from omegaconf import OmegaConf

from ablate.models import build_model
from ablate.module import Classifier
from ablate.run.loggers import instantiate_all
from ablate.testing.bench import compose_cfg, data_overrides, figure, parse_args

OPTIONS = ("none", "basic", "full")


def one_run(option: str, args: argparse.Namespace, log_dir: str) -> tuple[float, float]:
    """(images per wall second, images per CPU second) of `args.steps` training steps."""
    cfg = compose_cfg([f"diagnostics={option}", *data_overrides(args)])
    L.seed_everything(0, verbose=False)
    aug = OmegaConf.to_container(cfg.aug, resolve=True)
    dm = instantiate(cfg.data, aug=aug, seed=0, _recursive_=False)
    dm.prepare_data()
    dm.setup("fit")
    net = build_model(
        cfg.model,
        cfg.norm,
        cfg.reg,
        cfg.init,
        in_channels=dm.channels,
        num_classes=dm.num_classes,
        image_size=dm.image_size,
    )
    model = Classifier(net, optimizer=instantiate(cfg.optim), num_classes=dm.num_classes)
    trainer = L.Trainer(
        accelerator="cpu", max_steps=args.steps, limit_val_batches=0, num_sanity_val_steps=0,
        logger=TensorBoardLogger(log_dir, name=option), callbacks=instantiate_all(cfg.diagnostics),
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    wall, cpu = time.perf_counter(), time.process_time()
    trainer.fit(model, datamodule=dm)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    images = args.steps * cfg.data.batch_size
    return images / wall, images / cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--repeats", type=int, default=3)
    args = parse_args(parser, quick={"steps": 6, "repeats": 1})
    torch.set_num_threads(1)
    logging.getLogger("lightning").setLevel(logging.ERROR)
    warnings.filterwarnings("ignore")
    speeds: dict[str, list[tuple[float, float]]] = {o: [] for o in OPTIONS}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for option in OPTIONS:
                speeds[option].append(one_run(option, args, tmp))
                wall, cpu = speeds[option][-1]
                print(
                    f"repeat {r}: diagnostics={option:<5} {wall:6.0f} images/s wall, {cpu:6.0f} per CPU s"
                )
    med = {o: [statistics.median(v[i] for v in speeds[o]) for i in (0, 1)] for o in OPTIONS}
    print(f"\n{args.steps} steps, batch 128, MNIST, 1 thread; median of {args.repeats} repeats")
    print(f"{'diagnostics':<12}{'wall img/s':>12}{'x none':>8}{'CPU img/s':>12}{'x none':>8}")
    for o in OPTIONS:
        (wall, cpu), (w0, c0) = med[o], med["none"]
        print(f"{o:<12}{wall:12.0f}{wall / w0:8.2f}{cpu:12.0f}{cpu / c0:8.2f}")
    for o in OPTIONS:
        (wall, cpu), (w0, c0) = med[o], med["none"]
        figure(f"diagnostics_cost/{o}/images_per_cpu_s", cpu, "img/s")
        if o != "none":
            figure(f"diagnostics_cost/{o}/cpu_vs_none", cpu / c0, "x")
            figure(f"diagnostics_cost/{o}/wall_vs_none", wall / w0, "x")


if __name__ == "__main__":
    main()
