"""Seed-steps/s of K seeds of the Ioffe & Szegedy MLP trained as one model, against one at a time.

The measurement behind issue 26's choice of how to vectorize seeds. The net is bn_mlp's
(784-100-100-100-10, sigmoid, batch 60, SGD with momentum 0.9), each seed with its own weights and
its own batch order (a gather from one shared (N, 784) training tensor). Three ways, each timed in
this process after a warm-up, interleaved over `--repeats`:
- `loop`: K nn.Sequential nets stepped one after another (K = 1 is the plain loop);
- `vmap`: torch.func.functional_call over stacked parameters under vmap, grads by torch.func.grad,
  the SGD update on the stacked tensors (norm=none only: BatchNorm's running statistics are
  in-place buffer writes, which vmap refuses);
- `bmm`: the layers written as batched matmuls over a leading seed dimension, autograd as usual, one
  torch.optim.SGD over the stacked tensors; with `--norm batch` BatchNorm per seed (batch
  statistics over each seed's own 60 images, its own running statistics);
- `group`: the project's own group trainer's step (ablate.group: StackedNet from K solo `model=mlp`
  nets, StackedStep with its per-seed losses, penalties and bookkeeping-free SGD step), what
  `group_seeds` runs.
Figures: seed-steps/s for each way and K, and each K's speed-up over `loop` at K = 1. `--device cuda`
measures the same on a GPU (the clock read after a synchronize; scripts/gpu_check.sh runs it).

    python benchmarks/vectorized_seeds.py [--quick] [--ks 1 2 4 8 16] [--steps 200] [--norm none]
        [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, stack_module_state

from ablate.testing.bench import figure, parse_args

WIDTHS, BATCH, N = (784, 100, 100, 100, 10), 60, 54000


def plain_net(norm: str) -> nn.Module:
    layers: list[nn.Module] = []
    for a, b in zip(WIDTHS[:-2], WIDTHS[1:-1], strict=True):
        layers += [nn.Linear(a, b), nn.BatchNorm1d(b) if norm == "batch" else nn.Identity(),
                   nn.Sigmoid()]  # fmt: skip
    return nn.Sequential(*layers, nn.Linear(WIDTHS[-2], WIDTHS[-1]))


class StackedMLP(nn.Module):
    """K MLPs as stacked (K, in, out) weights: one batched matmul per layer for all seeds."""

    def __init__(self, k: int, norm: str) -> None:
        super().__init__()
        self.norm = norm
        self.w = nn.ParameterList()
        self.b = nn.ParameterList()
        for a, b in zip(WIDTHS[:-1], WIDTHS[1:], strict=True):
            w = torch.empty(k, a, b)
            for i in range(k):
                nn.init.xavier_normal_(w[i].T)
            self.w.append(nn.Parameter(w))
            self.b.append(nn.Parameter(torch.zeros(k, 1, b)))
        hidden = len(WIDTHS) - 2
        # BatchNorm over K x 100 channels: each seed's units are channels of their own
        self.gamma = nn.Parameter(torch.ones(hidden, k * 100))
        self.beta = nn.Parameter(torch.zeros(hidden, k * 100))
        self.register_buffer("running_mean", torch.zeros(hidden, k * 100))
        self.register_buffer("running_var", torch.ones(hidden, k * 100))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: (K, B, 784)
        for i, (w, b) in enumerate(zip(self.w, self.b, strict=True)):
            x = torch.baddbmm(b, x, w)
            if i == len(self.w) - 1:
                return x
            if self.norm == "batch":  # each seed's batch statistics and running ones, one kernel
                k, n, c = x.shape
                flat = x.transpose(0, 1).reshape(n, k * c)
                flat = F.batch_norm(flat, self.running_mean[i], self.running_var[i], self.gamma[i],
                                    self.beta[i], training=True, momentum=0.1, eps=1e-5)  # fmt: skip
                x = flat.view(n, k, c).transpose(0, 1)
            x = torch.sigmoid(x)
        return x


def seed_orders(k: int, steps: int) -> torch.Tensor:
    """(steps, K, BATCH) training indices: each seed's own shuffled order."""
    gens = [torch.Generator().manual_seed(s) for s in range(k)]
    return torch.stack([torch.stack([torch.randint(0, N, (BATCH,), generator=g) for g in gens])
                        for _ in range(steps)])  # fmt: skip


def clock(device: torch.device) -> float:
    """perf_counter once the device's queued work is done (CUDA runs asynchronously)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter()


def loop(x, y, idx, norm: str) -> float:
    k = idx.shape[1]
    nets = [plain_net(norm).to(x.device) for _ in range(k)]
    opts = [torch.optim.SGD(n.parameters(), lr=0.1, momentum=0.9) for n in nets]
    t = clock(x.device)
    for step in idx:
        for net, opt, i in zip(nets, opts, step, strict=True):
            loss = F.cross_entropy(net(x[i]), y[i])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    return clock(x.device) - t


def vmapped(x, y, idx, norm: str) -> float:
    k = idx.shape[1]
    base = plain_net("none").to(x.device)
    params, _ = stack_module_state([plain_net("none").to(x.device) for _ in range(k)])
    bufs = {n: torch.zeros_like(p) for n, p in params.items()}

    def loss(p, xb, yb):
        return F.cross_entropy(functional_call(base, p, (xb,)), yb)

    step_grad = torch.vmap(grad(loss))
    t = clock(x.device)
    for step in idx:
        grads = step_grad(params, x[step], y[step])
        with torch.no_grad():
            for n, g in grads.items():
                bufs[n].mul_(0.9).add_(g)
                params[n].sub_(0.1 * bufs[n])
    return clock(x.device) - t


def stacked(x, y, idx, norm: str) -> float:
    k = idx.shape[1]
    net = StackedMLP(k, norm).to(x.device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9)
    t = clock(x.device)
    for step in idx:
        logits = net(x[step])  # (K, B, 10)
        # summed over seeds: each seed's gradient is that of its own mean loss
        loss = F.cross_entropy(logits.flatten(0, 1), y[step].flatten(), reduction="sum") / BATCH
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return clock(x.device) - t


def group(x, y, idx, norm: str) -> float:
    from ablate.group.stack import StackedNet
    from ablate.group.step import StackedStep
    from ablate.models.mlp import MLP
    from ablate.techniques import norm as norms
    from ablate.techniques.reg import Reg

    k = idx.shape[1]
    make = norms.batch() if norm == "batch" else norms.none()
    nets = [MLP(1, 10, (28, 28), depth=3, width=100, activation="sigmoid", norm=make)
            for _ in range(k)]  # fmt: skip
    net = StackedNet(nets).to(x.device)
    sgd = lambda params: torch.optim.SGD(params, lr=0.1, momentum=0.9)  # noqa: E731
    step_fn = StackedStep(net, Reg(), sgd, None, total_steps=len(idx))
    alive = torch.ones(k, dtype=torch.bool, device=x.device)
    t = clock(x.device)
    for step in idx:
        step_fn(x[step], y[step], alive)
    return clock(x.device) - t


WAYS = {"loop": loop, "vmap": vmapped, "bmm": stacked, "group": group}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ks", type=int, nargs="+", default=[1, 2, 4, 8, 16])
    p.add_argument("--steps", type=int, default=200)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--norm", choices=["none", "batch"], default="none")
    p.add_argument("--device", default="cpu", help="cpu, or cuda (a GPU)")
    args = parse_args(p, quick={"ks": [1, 2], "steps": 10, "repeats": 1})
    device = torch.device(args.device)
    torch.manual_seed(0)
    # speed does not depend on the pixels; the data lives where the nets train, as data.on_device
    x, y = torch.randn(N, 784, device=device), torch.randint(0, 10, (N,), device=device)
    ways = {k: v for k, v in WAYS.items() if not (k == "vmap" and args.norm == "batch")}
    rates: dict[tuple[str, int], list[float]] = {}
    for _ in range(args.repeats):
        for k in args.ks:
            idx = seed_orders(k, args.steps + 5).to(device)
            for name, way in ways.items():
                way(x, y, idx[:5], args.norm)  # warm-up
                seconds = way(x, y, idx[5:], args.norm)
                rates.setdefault((name, k), []).append(args.steps * k / seconds)
    base = statistics.mean(rates[("loop", args.ks[0])]) if args.ks[0] == 1 else None
    for (name, k), values in rates.items():
        rate = statistics.mean(values)
        figure(f"vectorized_seeds/{args.norm}/{name}/k{k}", rate, "seed-steps/s")
        if base and (name, k) != ("loop", 1):
            figure(f"vectorized_seeds/{args.norm}/{name}/k{k}_vs_loop_k1", rate / base, "x")


if __name__ == "__main__":
    main()
