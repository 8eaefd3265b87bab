"""Images/s of the two data paths (CPU albumentations, device-resident batched), alone and feeding the model.

For each dataset family and `aug` preset: batches alone (sliced, augmented, standardized, on the
training device), then the same batches through training steps of the default net (the bare loop of
loop_overhead.py, so Lightning's overhead is not in these numbers). A preset whose ops have no device
version prints `n/a` for the device path (see the table in src/ablate/device_aug.py). The natural family
uses generated 32x32 RGB images unless CIFAR-10 is under --data-root.

    python benchmarks/data_path.py [--quick] [--batches 100] [--steps 60] [--presets none light strong]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from ablate.data import cache, decode
from ablate.data.sources import source
from ablate.testing.bench import (
    batches,
    compose_cfg,
    data_overrides,
    datamodule,
    figure,
    parse_args,
    plain_steps,
    sync,
)

DATASETS = {"digits": "mnist", "fashion": "fashion_mnist", "natural": "cifar10"}


def generated_natural(n: int = 20000) -> decode.ImageData:
    """Random 32x32 RGB images standing in for CIFAR-10 (the speed does not depend on content)."""
    rng = np.random.default_rng(0)
    split = lambda k: decode.Split(  # noqa: E731
        rng.integers(0, 256, (k, 32, 32, 3), dtype=np.uint8), rng.integers(0, 10, k)
    )
    return decode.ImageData(split(n), split(n // 5), [str(k) for k in range(10)])


def batches_alone(dm, device: torch.device, n: int, skip: int = 5) -> float:
    """Images/s of `n` standardized training batches on `device`, nothing else."""
    it, images = batches(dm, device), 0
    for i in range(n + skip):
        if i == skip:
            sync(device)
            t0 = time.perf_counter()
        x, y = next(it)
        images += len(y) if i >= skip else 0
    sync(device)
    return images / (time.perf_counter() - t0)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--batches", type=int, default=100, help="batches timed alone")
    p.add_argument("--steps", type=int, default=60, help="training steps timed with the model")
    p.add_argument("--skip", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--families", nargs="*", default=["fashion", "natural"])
    p.add_argument("--presets", nargs="*", default=["none", "light", "strong"])
    args = parse_args(
        p, quick={"batches": 4, "steps": 6, "skip": 2, "batch_size": 32, "presets": ["light"]}
    )
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    print(
        f"torch {torch.__version__} on {device} ({torch.get_num_threads()} threads), batch {args.batch_size}"
    )
    print(f"{'family':8} {'preset':7} {'path':7} {'batches img/s':>14} {'with model img/s':>17}")
    real_load = cache.load
    for family in args.families:
        name = DATASETS[family]
        common = [*data_overrides(args), f"data={name}", f"data.batch_size={args.batch_size}"]
        try:
            source(name).locate(Path(compose_cfg(common).data.root).resolve(), download=False)
            cache.load = real_load
        except decode.DatasetNotFoundError:
            cache.load = lambda *a, **k: generated_natural()
            name += " (generated)"
        for preset in args.presets:
            speeds = {}
            for on_device in ("false", "true"):
                path = "device" if on_device == "true" else "cpu"
                cfg = compose_cfg([*common, f"aug={preset}", f"data.on_device={on_device}"])
                try:
                    dm = datamodule(cfg, device)
                except ValueError as e:
                    if "data.on_device=true" not in str(e):  # a preset with no device version
                        raise
                    print(f"{family:8} {preset:7} {path:7} {'n/a':>14} {'n/a':>17}")
                    continue
                alone = batches_alone(dm, device, args.batches)
                data = batches(dm, device)
                model = plain_steps(cfg, data, device, args.steps, args.skip, "32-true")
                print(f"{family:8} {preset:7} {path:7} {alone:14.0f} {model:17.0f}   {name}")
                figure(f"data_path/{family}/{preset}/{path}/batches", alone, "img/s")
                figure(f"data_path/{family}/{preset}/{path}/with_model", model, "img/s")
                speeds[path] = model
            if len(speeds) == 2:
                figure(
                    f"data_path/{family}/{preset}/device_vs_cpu",
                    speeds["device"] / speeds["cpu"],
                    "x",
                )
    cache.load = real_load


if __name__ == "__main__":
    main()
