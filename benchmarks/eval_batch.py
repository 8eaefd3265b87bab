"""Evaluation images/s against the eval batch size: which `data.eval_batch_size` is fastest here.

Forward passes only (eval mode, `torch.inference_mode`), on random inputs, for the nets the presets
evaluate: the default CNN on MNIST, the CIFAR-10 CNN [32, 64, 128], and two MLPs. Each batch size
is timed over the same images, the sizes interleaved over `--repeats` so drift in machine speed
hits them alike; the median is printed. `data.eval_batch_size` defaults to
`${per_device:<accelerator>,<gpu>,<cpu>}` in conf/data/mnist.yaml; this is how its CPU value was chosen.

    python benchmarks/eval_batch.py [--images 6000] [--repeats 3] [--sizes 64 128 256 512 1000]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from ablate.models.cnn import CNN  # noqa: E402
from ablate.models.mlp import MLP  # noqa: E402
from ablate.techniques.norm import batch  # noqa: E402


def nets() -> dict[str, tuple[torch.nn.Module, tuple[int, int, int]]]:
    """The evaluated nets and their input shapes."""
    digits = {"in_channels": 1, "num_classes": 10, "image_size": (28, 28), "norm": batch()}
    return {
        "cnn [32, 64], MNIST": (CNN(channels=[32, 64], **digits), (1, 28, 28)),
        "cnn [32, 64, 128], CIFAR-10": (
            CNN(3, 10, (32, 32), channels=[32, 64, 128], norm=batch()),
            (3, 32, 32),
        ),
        "mlp 3 x 100 sigmoid, MNIST": (
            MLP(depth=3, width=100, activation="sigmoid", **digits),
            (1, 28, 28),
        ),
        "mlp 2 x 1024, MNIST": (MLP(depth=2, width=1024, **digits), (1, 28, 28)),
    }


def main() -> None:
    """Print the median eval images/s per net and batch size."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--images", type=int, default=6000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--sizes", type=int, nargs="+", default=[64, 128, 256, 512, 1000])
    args = p.parse_args()
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


if __name__ == "__main__":
    main()
