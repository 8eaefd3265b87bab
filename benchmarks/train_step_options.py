"""Training images/s of the norm_compare CNNs per norm under the speed options a CPU offers.

One SGD step at a time on random CIFAR-sized inputs (batch 32), for each norm: fp32 (the presets'
setting), channels-last, bf16 autocast with channels-last, and `torch.compile`. The first steps
(and the compile) are not timed. This is how `norm_compare_quick` was found to need a cheaper
design rather than a faster step: no option speeds every norm alike.

    python benchmarks/train_step_options.py [--quick] [--channels 32 64 128] [--steps 30] [--threads 2]
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from contextlib import nullcontext

import torch
from torch import nn

from ablate.testing.bench import build_net, compose_cfg, figure, parse_args

NORMS = ("none", "batch", "layer", "group", "instance")
OPTIONS = ("fp32", "channels_last", "bf16+channels_last", "compile")


def images_per_s(norm: str, channels: list[int], option: str, steps: int, batch: int = 32) -> float:
    """Training images/s of one net under one option, after 5 untimed steps."""
    cfg = compose_cfg(
        ["data=cifar10", f"model.channels=[{','.join(map(str, channels))}]", "model.convs=2",
         f"norm={norm}", "model.channels_last=false", "model.compile=false"]
    )  # fmt: skip
    net = build_net(cfg, (3, 32, 32), 10)
    x, y = torch.randn(batch, 3, 32, 32), torch.randint(0, 10, (batch,))
    if option in ("channels_last", "bf16+channels_last"):
        net, x = net.to(memory_format=torch.channels_last), x.to(memory_format=torch.channels_last)
    if option == "compile":
        net.compile()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    bf16 = option.startswith("bf16")
    for i in range(steps + 5):
        if i == 5:
            start = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16) if bf16 else nullcontext():
            loss = nn.functional.cross_entropy(net(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - start)


def main() -> None:
    """Print a table: norm x option, training images/s, and each option's speed-up over fp32."""
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--channels", type=int, nargs="+", default=[32, 64, 128])
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--norms", nargs="+", default=list(NORMS), help=f"of {NORMS}")
    p.add_argument("--options", nargs="+", default=list(OPTIONS), help=f"of {OPTIONS}; fp32 first")
    args = parse_args(
        p,
        quick={
            "channels": [4, 8],
            "steps": 2,
            "threads": 1,
            "norms": ["batch"],
            "options": list(OPTIONS[:3]),
        },
    )
    torch.set_num_threads(args.threads)
    print(f"# {platform.machine()}, {os.cpu_count()} CPUs, {args.threads} threads, torch "
          f"{torch.__version__}; CNN {args.channels}, 2 convs per block, batch 32")  # fmt: skip
    print(f"{'norm':<10}" + "".join(f"{o:>22}" for o in args.options))
    for name in args.norms:
        rates = [images_per_s(name, args.channels, o, args.steps) for o in args.options]
        cells = [f"{r:8,.0f} ({r / rates[0]:4.2f}x)" for r in rates]
        print(f"{name:<10}" + "".join(f"{c:>22}" for c in cells), flush=True)
        for option, rate in zip(args.options, rates, strict=True):
            figure(f"train_step_options/{name}/{option}", rate, "img/s")
            if option != args.options[0]:
                figure(
                    f"train_step_options/{name}/{option}_vs_{args.options[0]}", rate / rates[0], "x"
                )


if __name__ == "__main__":
    main()
