"""Training images/s of ablate's loop (Lightning Trainer + Classifier) against a hand-written PyTorch loop.

One process, interleaved repeats (plain, ablate, plain, ablate, ...) so drift in machine speed hits
both alike. Both get the same net (the composed config, fresh and seeded each repeat), optimizer and
scheduler, batch size, precision and batches (the same datamodule path, `--on-device` or not,
standardized by its `on_after_batch_transfer`); validation, logging to disk and checkpoints are off,
and the first `--skip` steps (warm-up, cuDNN autotuning, compilation) are left out of both timings.
The ratio is the cost of Lightning's hooks, logging and the Classifier's metrics per step.
`benchmarks/throughput.py` measures the whole CLI process (start-up included) instead.

    python benchmarks/loop_overhead.py [--steps 300] [--precision bf16-mixed] [--on-device true] \
        [--override model.channels_last=true ...]
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable, Iterator

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import lightning as L  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from hydra import compose, initialize_config_dir  # noqa: E402
from hydra.utils import instantiate  # noqa: E402
from omegaconf import DictConfig, OmegaConf  # noqa: E402
from throughput import REPO, default_data_root  # noqa: E402 (same folder: on sys.path when run)

from ablate.config import CONF_DIR  # noqa: E402
from ablate.data.datamodule import ImageDataModule  # noqa: E402
from ablate.models import build_model  # noqa: E402
from ablate.module import Classifier  # noqa: E402


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The app's config for these overrides, as `python -m ablate.train` would compose it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures finished steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def datamodule(cfg: DictConfig, device: torch.device) -> ImageDataModule:
    """The run's datamodule, set up, slicing batches for `device` even without a Trainer."""

    class Pinned(ImageDataModule):
        @property
        def device(self) -> torch.device:
            return self.trainer.strategy.root_device if self.trainer else device

    aug = OmegaConf.to_container(cfg.aug, resolve=True)
    args = OmegaConf.to_container(cfg.data, resolve=True)
    args.pop("_target_")
    dm = Pinned(**args, aug=aug, seed=cfg.seed)
    dm.setup("fit")
    return dm


def batches(
    dm: ImageDataModule, device: torch.device
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Standardized training batches on `device`, epoch after epoch."""
    while True:
        for x, y in dm.train_dataloader():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield dm.on_after_batch_transfer((x, y), 0)


def autocast(device: torch.device, precision: str):
    """The autocast context Lightning's precision plugin uses for `precision`."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def plain_steps(
    cfg: DictConfig, data: Iterable, device: torch.device, steps: int, skip: int, precision: str
) -> float:
    """SGD steps of a bare PyTorch loop over `data`; images/s after `skip` warm-up steps."""
    torch.manual_seed(cfg.seed)
    shape = (cfg.data.channels, *cfg.data.image_size)
    net = (
        build_model(
            cfg.model,
            cfg.norm,
            cfg.reg,
            cfg.init,
            in_channels=shape[0],
            num_classes=cfg.data.num_classes,
            image_size=shape[1:],
        )
        .to(device)
        .train()
    )
    opt = instantiate(cfg.optim)(params=net.parameters())
    sched = instantiate(cfg.scheduler)
    sched = sched(optimizer=opt, total_steps=steps) if sched else None
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "16-mixed")
    it, images = iter(data), 0
    for step in range(steps):
        if step == skip:
            sync(device)
            t0 = time.perf_counter()
        x, y = next(it)
        with autocast(device, precision):
            loss = F.cross_entropy(net(x), y)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if sched:
            sched.step()
        images += len(y) if step >= skip else 0
    sync(device)
    return images / (time.perf_counter() - t0)


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


def ablate_steps(cfg: DictConfig, dm: ImageDataModule, steps: int, skip: int) -> float:
    """The same steps through Lightning's Trainer and ablate's Classifier; images/s."""
    torch.manual_seed(cfg.seed)
    net = build_model(
        cfg.model,
        cfg.norm,
        cfg.reg,
        cfg.init,
        in_channels=dm.channels,
        num_classes=dm.num_classes,
        image_size=dm.image_size,
    )
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
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=str(REPO / "data" / "cache"))
    p.add_argument("--override", nargs="*", default=[], help="more config overrides")
    args = p.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    cfg = compose_cfg(
        [
            f"data.root={args.data_root}", f"data.cache_dir={args.cache_dir}",
            "data.download=false", f"data.batch_size={args.batch_size}",
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


if __name__ == "__main__":
    main()
