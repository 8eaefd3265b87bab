"""Training images/s of ablate's loop (Lightning Trainer + Classifier) against a hand-written PyTorch loop.

One process, interleaved repeats (plain, ablate, plain, ablate, ...) so drift in machine speed hits
both alike. Both get the same net (the composed config, fresh and seeded each repeat), optimizer and
scheduler, batch size, precision and batches (the same datamodule path, `--on-device` or not,
standardized by its `on_after_batch_transfer`); validation, logging to disk and checkpoints are off,
and the first `--skip` steps (warm-up, cuDNN autotuning, compilation) are left out of both timings.
The ratio is the cost of Lightning's hooks, logging and the Classifier's metrics per step.
`benchmarks/throughput.py` measures the whole CLI process (start-up included) instead.

    python benchmarks/loop_overhead.py [--quick] [--steps 300] [--precision bf16-mixed] [--on-device true] \
        [--override model.channels_last=true ...]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from hydra.utils import instantiate
from omegaconf import DictConfig

from ablate.module import Classifier
from ablate.testing.bench import (
    batches,
    build_net,
    compose_cfg,
    data_overrides,
    datamodule,
    figure,
    parse_args,
    plain_steps,
    sync,
)


class _Clock(L.Callback):
    """Images/s from the start of batch `skip` to the end of the last batch."""

    def __init__(self, skip: int) -> None:
        self.skip, self.images, self.t0 = skip, 0, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx: int) -> None:
        if trainer.global_step == self.skip:
            sync(module.device)
            self.t0 = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx: int) -> None:
        if self.t0 is not None:
            self.images += len(batch[1])

    def rate(self, device: torch.device) -> float:
        sync(device)
        return self.images / (time.perf_counter() - self.t0)


def ablate_steps(cfg: DictConfig, dm: L.LightningDataModule, steps: int, skip: int) -> float:
    """The same steps through Lightning's Trainer and ablate's Classifier; images/s."""
    net = build_net(cfg, (dm.channels, *dm.image_size), dm.num_classes)
    model = Classifier(
        net, optimizer=instantiate(cfg.optim), scheduler=instantiate(cfg.scheduler) or None,
        num_classes=dm.num_classes, reg=instantiate(cfg.reg),
    )  # fmt: skip
    clock = _Clock(skip)
    trainer = L.Trainer(
        accelerator=cfg.trainer.accelerator, devices=1, precision=cfg.trainer.precision,
        max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0, logger=False,
        enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[clock],
    )  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return clock.rate(model.device)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--precision", default="32-true", help="32-true, bf16-mixed or 16-mixed")
    p.add_argument("--on-device", default="null", help="data.on_device: null (auto), true, false")
    p.add_argument("--override", nargs="*", default=[], help="more config overrides")
    args = parse_args(p, quick={"steps": 8, "skip": 3, "repeats": 1, "batch_size": 32})
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = compose_cfg(
        [
            *data_overrides(args), f"data.batch_size={args.batch_size}",
            f"data.on_device={args.on_device}", f"trainer.precision={args.precision}",
            *args.override,
        ]
    )  # fmt: skip
    dm = datamodule(cfg, device)
    print(
        f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads), "
        f"{cfg.data.dataset}, batch {args.batch_size}, {args.steps} steps ({args.skip} warm-up), "
        f"precision {args.precision}, data path {dm.data_path}, overrides {args.override}"
    )
    rows = []
    for r in range(args.repeats):  # alternate, so drift in machine speed hits both alike
        plain = plain_steps(cfg, batches(dm, device), device, args.steps, args.skip, args.precision)
        ours = ablate_steps(cfg, dm, args.steps, args.skip)
        rows.append((plain, ours))
        print(
            f"repeat {r}: plain {plain:8.0f} img/s | ablate {ours:8.0f} img/s | ratio {ours / plain:.3f}"
        )
    plain, ours = (sum(col) / len(rows) for col in zip(*rows, strict=True))
    print(f"mean: plain {plain:.0f} img/s, ablate {ours:.0f} img/s, ratio {ours / plain:.3f}")
    figure("loop_overhead/plain_images_per_s", plain, "img/s")
    figure("loop_overhead/ablate_images_per_s", ours, "img/s")
    figure("loop_overhead/ratio_vs_plain", ours / plain, "x")
    # what a step costs beyond the plain loop's, whatever the net: Lightning's hooks and the metrics
    figure("loop_overhead/extra_per_step", 1000 * args.batch_size * (1 / ours - 1 / plain), "ms")


if __name__ == "__main__":
    main()
