"""What the scripts in benchmarks/ share: the figure line, `--quick`, the composed config, a plain loop.

Every benchmark prints each of its results as one line, `figure: <name> = <value> <unit> (<machine>)`,
which `make bench` greps and tests/test_benchmarks.py parses. Ratios are taken against a plain
PyTorch loop (or a baseline option) timed in the same process, never against a stored number.
"""

from __future__ import annotations

import argparse
import math
import os
import platform
import re
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from hydra import compose, initialize_config_dir
from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, OmegaConf

from ablate.config import CONF_DIR, REPO_ROOT
from ablate.models import build_model

# Lightning is imported by a data source only, so that the scripts without one start faster.
if TYPE_CHECKING:
    import lightning as L

# --quick checks that a script runs, not how fast: its whole-process commands are forked from a
# process that imported torch and Lightning once (ablate.run.forked), not started fresh
_forked = False
QUICK_SUBSET = 256  # training images under --quick: fewer than the tests' generated datasets hold
# Under --quick, a CLI run validates and tests on 2 batches (whether the preset sets these or not),
# on one thread like the benchmark itself: quick runs share the cores with a parallel test suite,
# where two threads per process spin against each other (steps 10-50x slower on a loaded machine).
QUICK_CLI = ["threads=1", "++trainer.limit_val_batches=2", "++trainer.limit_test_batches=2"]
FIGURE = re.compile(
    r"^figure: (?P<name>\S+) = (?P<value>\S+) (?P<unit>\S+) \((?P<machine>[^()]+)\)$"
)


@dataclass(frozen=True)
class Figure:
    """One printed result: a named value with its unit, measured on `machine`."""

    name: str
    value: float
    unit: str
    machine: str


def machine() -> str:
    """The hardware a figure was measured on, in a few words."""
    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    return f"{platform.machine()}, {os.cpu_count()} CPUs, {gpu}, torch {torch.__version__}"


def figure(name: str, value: float, unit: str) -> None:
    """Print one figure line (the format `make bench` greps and `parse_figures` reads)."""
    if " " in name or " " in unit:
        raise ValueError(f"figure name and unit are single words: {name!r} {unit!r}")
    text = f"{value:.0f}" if abs(value) >= 1e4 else f"{value:.4g}"  # 12345, not 1.234e+04
    print(f"figure: {name} = {text} {unit} ({machine()})", flush=True)


def parse_figures(text: str) -> list[Figure]:
    """The figures in a benchmark's output; a line that starts `figure:` but does not parse raises."""
    figures = []
    for line in text.splitlines():
        if not line.startswith("figure:"):
            continue
        m = FIGURE.match(line)
        try:
            value = float(m["value"]) if m else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise ValueError(f"not a figure line: {line!r}")
        figures.append(Figure(m["name"], value, m["unit"], m["machine"]))
    return figures


def parse_args(p: argparse.ArgumentParser, quick: dict[str, object]) -> argparse.Namespace:
    """Parse with `--quick` (seconds: the `quick` sizes, where not given) and the data location flags."""
    p.add_argument(
        "--quick", action="store_true", help=f"a tiny size that runs in seconds: {quick}"
    )
    p.add_argument("--data-root", help="datasets folder (default: the config's data.root)")
    p.add_argument("--cache-dir", help="decoded-dataset cache (default: the config's)")
    global _forked
    args = p.parse_args()
    if args.quick:
        _forked = True
        torch.set_num_threads(1)
        for key, value in quick.items():
            if getattr(args, key) == p.get_default(key):  # an explicit flag wins
                setattr(args, key, value)
    return args


def data_overrides(args: argparse.Namespace, subset: bool = True) -> list[str]:
    """Overrides for `--data-root`/`--cache-dir` where given, never downloading; with `--quick` (and
    `subset`) a small training subset, so that setting up the data takes no longer than the rest."""
    given = {"data.root": args.data_root, "data.cache_dir": args.cache_dir}
    quick = [f"data.train_subset={QUICK_SUBSET}"] if args.quick and subset else []
    return [f"{k}={v}" for k, v in given.items() if v] + ["data.download=false", *quick]


def compose_cfg(overrides: list[str]) -> DictConfig:
    """The app's config for these overrides, as `python -m ablate.train` would compose it."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose(config_name="train", overrides=overrides)


def run_python(program: list[str]) -> subprocess.CompletedProcess:
    """`python <program>` from the repository root, output captured (forked under --quick)."""
    if _forked:
        from ablate.run import forked

        return forked.run(program, REPO_ROOT)
    return subprocess.run([sys.executable, *program], cwd=REPO_ROOT, capture_output=True, text=True)


def run_cli(overrides: list[str]) -> subprocess.CompletedProcess:
    """`python -m ablate.train <overrides>` from the repository root; exits with its error if it fails."""
    cmd = [sys.executable, "-m", "ablate.train", *overrides]
    proc = run_python(cmd[1:])
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)}\nexited {proc.returncode}")
    return proc


def import_floor() -> float:
    """Seconds for `import lightning, hydra, torch` alone: the floor for any start-up."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lightning, hydra, torch"], check=True)
    return time.perf_counter() - t


def sync(device: torch.device) -> None:
    """Wait for queued GPU work, so the clock measures finished steps."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def datamodule(cfg: DictConfig, device: torch.device) -> L.LightningDataModule:
    """The run's datamodule (its data source), set up, slicing batches for `device` without a Trainer."""
    source = get_class(cfg.data._target_)

    class OnDevice(source):  # the datamodule asks its trainer for the device; there is none here
        @property
        def device(self) -> torch.device:
            return self.trainer.strategy.root_device if self.trainer else device

    OnDevice.__name__ = OnDevice.__qualname__ = source.__name__
    kwargs = OmegaConf.to_container(cfg.data, resolve=True)
    kwargs.pop("_target_")
    dm = OnDevice(**kwargs, aug=OmegaConf.to_container(cfg.aug, resolve=True), seed=cfg.seed)
    dm.setup("fit")
    return dm


def batches(dm: L.LightningDataModule, device: torch.device) -> Iterator[tuple[torch.Tensor, ...]]:
    """Standardized training batches on `device`, epoch after epoch."""
    while True:
        for x, y in dm.train_dataloader():
            x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
            yield dm.on_after_batch_transfer((x, y), 0)


def build_net(cfg: DictConfig, shape: tuple[int, int, int], num_classes: int) -> torch.nn.Module:
    """The config's net for inputs of `shape` (channels, height, width), seeded by cfg.seed."""
    torch.manual_seed(cfg.seed)
    return build_model(cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=shape[0],
                       num_classes=num_classes, image_size=shape[1:])  # fmt: skip


def autocast(device: torch.device, precision: str):
    """The autocast context Lightning's precision plugin uses for `precision`."""
    dtype = {"bf16-mixed": torch.bfloat16, "16-mixed": torch.float16}.get(precision)
    return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)


def plain_steps(
    cfg: DictConfig, data: Iterable, device: torch.device, steps: int, skip: int, precision: str
) -> float:
    """SGD steps of a bare PyTorch loop over `data` (the config's optimizer and scheduler); images/s
    after `skip` warm-up steps."""
    shape = (cfg.data.channels, *cfg.data.image_size)
    net = build_net(cfg, shape, cfg.data.num_classes).to(device).train()
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
