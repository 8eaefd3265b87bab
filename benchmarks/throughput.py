"""Training throughput of `python -m ablate.train` against a plain PyTorch loop, and start-up time.

Same model (the composed default config), batch size, data (decoded uint8 MNIST, standardized per
batch) and optimizer (SGD + Nesterov, one-cycle) in both; validation is excluded from both timings.
Prints images/s for each, their ratio, and the seconds from process start to the first training step.

    python benchmarks/throughput.py [--steps 300] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")


def default_data_root() -> str:
    shared = REPO.parent / "shared" / "data"
    return os.environ.get("DATA_DIR", str(shared if shared.exists() else REPO / "data"))


def pipeline(args, tmp: Path, tag: str) -> dict:
    """One real CLI run; its Throughput callback reports images/s and start-up seconds."""
    run = tmp / f"run-{tag}"
    cmd = [
        sys.executable,
        "-m",
        "ablate.train",
        f"data.root={args.data_root}",
        f"data.cache_dir={args.cache_dir}",
        "data.download=false",
        "trainer=cpu",
        f"trainer.max_steps={args.steps}",
        f"data.batch_size={args.batch_size}",
        f"callbacks.throughput.skip={args.skip}",
        "data.eval_train_max=0",
        f"log_dir={tmp}",
        f"hydra.run.dir={run}",
    ]
    subprocess.run(cmd, cwd=REPO, check=True, capture_output=True, text=True)
    return json.loads((run / "summary.json").read_text())["metrics"]


def plain_loop(args) -> float:
    """The same training steps written as a bare PyTorch loop; returns images/s."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from hydra import compose, initialize_config_dir

    from ablate.config import CONF_DIR
    from ablate.data import cache
    from ablate.data.sources.mnist import MNIST
    from ablate.models import build_model

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"data.batch_size={args.batch_size}"])
    torch.manual_seed(0)
    data = cache.load("mnist", MNIST.read, args.data_root, args.cache_dir, download=False)
    x = torch.from_numpy(data.train.x[:54000]).permute(0, 3, 1, 2).contiguous()
    y = torch.from_numpy(data.train.y[:54000])
    mean, std = float(np.mean(data.train.x) / 255), float(np.std(data.train.x / 255.0))
    model = build_model(
        cfg.model, cfg.norm, cfg.reg, cfg.init, in_channels=1, num_classes=10, image_size=(28, 28)
    ).train()
    opt = torch.optim.SGD(model.parameters(), lr=cfg.optim.lr, momentum=0.9, nesterov=True)
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=cfg.optim.lr, total_steps=args.steps, pct_start=0.25
    )
    perm = torch.randperm(len(y))
    bs, t0 = args.batch_size, None
    for step in range(args.steps):
        if step == args.skip:
            t0 = time.perf_counter()
        idx = perm[(step * bs) % len(y) : (step * bs) % len(y) + bs]
        xb = (x[idx].float().div_(255) - mean) / std
        loss = F.cross_entropy(model(xb), y[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return (args.steps - args.skip) * bs / (time.perf_counter() - t0)


def import_floor() -> float:
    """Seconds for `import lightning, hydra, torch` alone: the floor for any start-up."""
    t = time.perf_counter()
    subprocess.run([sys.executable, "-c", "import lightning, hydra, torch"], check=True)
    return time.perf_counter() - t


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the timing")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument("--cache-dir", default=str(REPO / "data" / "cache"))
    args = p.parse_args()
    import torch

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"{args.steps} steps ({args.skip} warm-up), MNIST from {args.data_root}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for r in range(args.repeats):  # alternate, so drift in machine speed hits both alike
            plain = plain_loop(args)
            m = pipeline(args, Path(tmp), str(r))
            rows.append((plain, m["perf/train_images_per_s"], m["perf/startup_s"]))
            print(
                f"repeat {r}: plain loop {plain:8.0f} img/s | ablate {rows[-1][1]:8.0f} img/s | "
                f"ratio {rows[-1][1] / plain:.3f} | start-up to first step {rows[-1][2]:.2f} s"
            )
    plain = sum(r[0] for r in rows) / len(rows)
    ours = sum(r[1] for r in rows) / len(rows)
    print(
        f"mean: plain loop {plain:.0f} img/s, ablate {ours:.0f} img/s, ratio {ours / plain:.3f} (target >= 0.9)"
    )
    print(
        f"start-up to first training step (warm cache): {min(r[2] for r in rows):.2f} s "
        f"(floor, `import lightning, hydra, torch`: {import_floor():.2f} s)"
    )


if __name__ == "__main__":
    main()
