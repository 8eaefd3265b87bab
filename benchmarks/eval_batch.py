"""Evaluation images/s against the eval batch size: which `data.eval_batch_size` is fastest here.

Forward passes only (eval mode, `torch.inference_mode`), on random inputs, for the nets the presets
evaluate: the default CNN on MNIST, the CIFAR-10 CNN [32, 64, 128], and two MLPs. Each batch size
is timed over the same images, the sizes interleaved over `--repeats` so drift in machine speed
hits them alike; the median is printed. `data.eval_batch_size` defaults to
`${per_device:<accelerator>,<gpu>,<cpu>}` in conf/data/mnist.yaml; this is how its CPU value was chosen.

    python benchmarks/eval_batch.py [--quick] [--images 6000] [--repeats 3] [--sizes 64 128 256 512 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import torch

from ablate.testing.bench import build_net, compose_cfg, figure, parse_args

# name -> (config overrides, input shape): the nets the presets evaluate
NETS = {
    "cnn_32_64_mnist": ([], (1, 28, 28)),
    "cnn_32_64_128_cifar10": (["data=cifar10", "model.channels=[32,64,128]"], (3, 32, 32)),
    "mlp_3x100_sigmoid_mnist": (
        ["model=mlp", "model.depth=3", "model.width=100", "model.activation=sigmoid"],
        (1, 28, 28),
    ),
    "mlp_2x1024_mnist": (["model=mlp", "model.depth=2", "model.width=1024"], (1, 28, 28)),
}


def nets() -> dict[str, tuple[torch.nn.Module, tuple[int, int, int]]]:
    """The evaluated nets (BatchNorm, as composed by the default config) and their input shapes."""
    return {
        name: (build_net(compose_cfg(["trainer=cpu", *overrides]), shape, 10), shape)
        for name, (overrides, shape) in NETS.items()
    }


def main() -> None:
    """Print the median eval images/s per net and batch size."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=6000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1000])
    args = parse_args(p, quick={"images": 256, "repeats": 1, "sizes": [64, 128]})
    torch.manual_seed(0)
    print(f"{os.cpu_count()} CPUs, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"{platform.processor() or platform.machine()}")  # fmt: skip
    print("net".ljust(30) + "".join(f"{s:>10}" for s in args.sizes) + "   (images/s, median)")
    for name, (net, shape) in nets().items():
        net.eval()
        x = torch.randn(args.images, *shape)
        speeds: dict[int, list[float]] = {s: [] for s in args.sizes}
        with torch.inference_mode():
            for _ in range(args.repeats):
                for size in args.sizes:
                    net(x[:size])  # warm-up at this shape
                    start = time.perf_counter()
                    for i in range(0, args.images, size):
                        net(x[i : i + size])
                    speeds[size].append(args.images / (time.perf_counter() - start))
        medians = [statistics.median(speeds[s]) for s in args.sizes]
        best = args.sizes[medians.index(max(medians))]
        print(name.ljust(30) + "".join(f"{m:>10,.0f}" for m in medians) + f"   best: {best}")
        for size, m in zip(args.sizes, medians, strict=True):
            figure(f"eval_batch/{name}/batch_{size}", m, "img/s")
        figure(f"eval_batch/{name}/best_batch", best, "images")


if __name__ == "__main__":
    main()
