"""The Ioffe & Szegedy MLP study through ablate against a plain PyTorch script: whole processes.

The study is bn_mlp_quick's at its first design's setup (one point of its open grid, grey-level
pixels: what the plain script implements, SETUP below): 2 cells (norm none, batch) x 3 seeds of the
784-100-100-100-10 sigmoid MLP, SGD at batch 60 for 2,000 steps, validated every 100 steps on the
6,000-image split, the best validation point tested on the 10,000 test images. ablate runs it as
one command, `python -m ablate.train -m experiment=bn_mlp_quick norm=none,batch seed=0,1,2 <SETUP>` (Hydra's basic
launcher: the 6 runs one after another in one process, each writing its run folder, checkpoints,
TensorBoard and summary.json), at steps_per_call=1 and at auto, and with group_seeds=3 (the 3
seeds of each cell as one stacked model, each seed written as its solo run: src/ablate/group/), the
two cells' groups one after another and in parallel (hydra.launcher.n_jobs=2, the preset's: one per
core, one thread each, in workers forked from the launcher). The plain script (this file with
--plain) trains the same 6 runs one after another in one process: numpy reads the IDX files, a
shuffled index per epoch, nn.Sequential, the best weights kept in memory, nothing written. Every
command is a fresh process timed from launch to exit (start-up included), interleaved over
`--repeats`, so drift in machine speed hits each alike. `--quick` (a check that the script runs)
times the plain script, `ablate` and `ablate_group` only; `auto` and `n_jobs` are tested elsewhere.

    python benchmarks/ioffe_mlp.py [--quick] [--repeats 2] [--steps 2000] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ablate.testing.bench import QUICK_CLI, data_overrides, figure, parse_args, run_cli, run_python

SEEDS, NORMS = (0, 1, 2), ("none", "batch")


def idx(path: Path) -> np.ndarray:
    """An IDX file (MNIST's format) as a numpy array."""
    raw = path.read_bytes()
    dims = raw[3]
    shape = np.frombuffer(raw, ">u4", dims, 4)
    return np.frombuffer(raw, np.uint8, offset=4 + 4 * dims).reshape(shape)


def mlp(norm: str) -> nn.Module:
    """784-100-100-100-10, sigmoid units, BatchNorm before each nonlinearity when norm=batch."""
    layers, width = [], 784
    for _ in range(3):
        layers += [nn.Linear(width, 100), nn.BatchNorm1d(100) if norm == "batch" else nn.Identity(),
                   nn.Sigmoid()]  # fmt: skip
        width = 100
    net = nn.Sequential(nn.Flatten(), *layers, nn.Linear(width, 10))
    for m in net.modules():
        if isinstance(m, nn.Linear):
            nn.init.xavier_normal_(m.weight)
            nn.init.zeros_(m.bias)
    return net


def accuracy(net: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int) -> float:
    net.eval()
    with torch.no_grad():
        right = sum(int((net(x[i : i + batch]).argmax(1) == y[i : i + batch]).sum())
                    for i in range(0, len(y), batch))  # fmt: skip
    net.train()
    return right / len(y)


def plain(root: Path, steps: int, every: int, eval_batch: int, subset: int | None) -> None:
    """The 6 runs in plain PyTorch, one after another; prints each test accuracy."""
    raw = root / "MNIST" / "raw"
    x = torch.from_numpy(idx(raw / "train-images-idx3-ubyte").astype(np.float32) / 255)
    y = torch.from_numpy(idx(raw / "train-labels-idx1-ubyte").astype(np.int64))
    xt = torch.from_numpy(idx(raw / "t10k-images-idx3-ubyte").astype(np.float32) / 255)
    yt = torch.from_numpy(idx(raw / "t10k-labels-idx1-ubyte").astype(np.int64))
    for norm in NORMS:
        for seed in SEEDS:
            g = torch.Generator().manual_seed(seed)
            order = torch.randperm(len(y), generator=g)
            n_val = len(y) // 10
            val, train = order[:n_val], order[n_val:][:subset]
            mean, std = x[train].mean(), x[train].std()
            xs, xv, xts = ((t - mean) / std for t in (x[train], x[val], xt))
            ys, yv = y[train], y[val]
            torch.manual_seed(seed)
            net = mlp(norm)
            opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
            best, best_state, perm, pos = -1.0, None, torch.randperm(len(ys), generator=g), 0
            for step in range(1, steps + 1):
                if pos + 60 > len(ys):
                    perm, pos = torch.randperm(len(ys), generator=g), 0
                i = perm[pos : pos + 60]
                pos += 60
                loss = F.cross_entropy(net(xs[i]), ys[i])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step % every == 0 and (acc := accuracy(net, xv, yv, eval_batch)) > best:
                    best, best_state = acc, copy.deepcopy(net.state_dict())
            net.load_state_dict(best_state)
            print(f"norm={norm} seed={seed} test/acc={accuracy(net, xts, yt, eval_batch):.4f}")


def timed(cmd: list[str]) -> float:
    """Seconds from launch to exit of `python <cmd>` (a fresh process); exits with its error if it fails."""
    t = time.perf_counter()
    proc = run_python(cmd)
    if proc.returncode:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"{' '.join(cmd)}\nexited {proc.returncode}")
    return time.perf_counter() - t


# the plain script's setup: Xavier-normal init, momentum 0.9, standardized grey-level pixels
SETUP = ["init=xavier_normal", "optim.momentum=0.9", "data.standardize=true", "data.binarize=false"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--steps", type=int, default=2000)
    p.add_argument("--every", type=int, default=100, help="steps between validations")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--eval-batch", type=int, default=1000, help="the preset's")
    p.add_argument("--plain", action="store_true", help="run the plain script's 6 runs, untimed")
    p.add_argument("--subset", type=int, default=None, help="training images (default: all)")
    args = parse_args(p, quick={"steps": 40, "every": 20, "repeats": 1, "subset": 256})
    root = Path(args.data_root or Path(__file__).resolve().parents[2] / "shared" / "data")
    if args.plain:
        return plain(root, args.steps, args.every, args.eval_batch, args.subset)
    threads = torch.get_num_threads()
    plain_cmd = [str(Path(__file__).resolve()), "--plain", "--data-root", str(root), "--steps",
                 str(args.steps), "--every", str(args.every), "--eval-batch", str(args.eval_batch),
                 *(["--subset", str(args.subset)] if args.subset else [])]  # fmt: skip
    serial = ["hydra.launcher.n_jobs=1", f"threads={threads}"]  # the preset runs 2 units at once
    versions = (("ablate", ["steps_per_call=1", "group_seeds=1", *serial]),
                ("ablate_auto", ["steps_per_call=auto", "group_seeds=1", *serial]),
                ("ablate_group", ["group_seeds=3", *serial]),
                ("ablate_group_parallel", ["group_seeds=3", "threads=auto",  # a cell per core
                                           f"hydra.launcher.n_jobs={min(threads, len(NORMS))}"]))  # fmt: skip
    if args.quick:
        versions = tuple(v for v in versions if v[0] in ("ablate", "ablate_group"))
    times: dict[str, list[float]] = {"plain": [], **{name: [] for name, _ in versions}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            times["plain"].append(timed(plain_cmd))
            for name, how in versions:
                t = time.perf_counter()
                run_cli(["-m", "experiment=bn_mlp_quick", "norm=none,batch", "seed=0,1,2", *SETUP,
                         *how,
                         f"trainer.max_steps={args.steps}",
                         f"trainer.val_check_interval={args.every}",
                         f"log_dir={tmp}/{name}-{r}", "callbacks.progress_bar=null",
                         *data_overrides(args), *(QUICK_CLI[1:] if args.quick else [])])  # fmt: skip
                times[name].append(time.perf_counter() - t)
            print(" | ".join(f"{k} {v[-1]:.1f} s" for k, v in times.items()), flush=True)
    mean = {k: statistics.mean(v) for k, v in times.items()}
    for name, seconds in mean.items():
        figure(f"ioffe_mlp/{name}_s", seconds, "s")
    for name, _ in versions:  # ratio_vs_plain, ratio_auto_vs_plain, ratio_group_vs_plain, ...
        figure(f"ioffe_mlp/ratio{name.removeprefix('ablate')}_vs_plain", mean["plain"] / mean[name],
               "x")  # fmt: skip


if __name__ == "__main__":
    main()
