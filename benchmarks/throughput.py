"""Training throughput of `python -m ablate.train` against a plain PyTorch loop, and start-up time.

Same model (the composed default config), batch size, data (decoded uint8 MNIST sliced from memory,
standardized per batch) and optimizer (SGD + Nesterov, one-cycle) in both; validation is excluded
from both timings. Prints images/s for each, their ratio, and the seconds from process start to the
first training step.

    python benchmarks/throughput.py [--quick] [--steps 300] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

import torch

from ablate.testing.bench import (
    QUICK_CLI,
    batches,
    compose_cfg,
    data_overrides,
    datamodule,
    figure,
    import_floor,
    parse_args,
    plain_steps,
    run_cli,
)


def pipeline(args, tmp: Path, tag: str) -> dict:
    """One real CLI run; its Throughput callback reports images/s and start-up seconds."""
    run = tmp / f"run-{tag}"
    quick = QUICK_CLI if args.quick else []
    run_cli(
        [
            *data_overrides(args), "trainer=cpu", f"trainer.max_steps={args.steps}",
            f"data.batch_size={args.batch_size}", f"callbacks.throughput.skip={args.skip}",
            "data.eval_train_max=0", f"log_dir={tmp}", f"hydra.run.dir={run}", *quick,
        ]
    )  # fmt: skip
    return json.loads((run / "summary.json").read_text())["metrics"]


def plain_loop(args) -> float:
    """The same training steps written as a bare PyTorch loop over in-memory batches; images/s."""
    cpu = torch.device("cpu")
    cfg = compose_cfg([*data_overrides(args), f"data.batch_size={args.batch_size}",
                       "data.on_device=true", "trainer=cpu"])  # fmt: skip
    return plain_steps(cfg, batches(datamodule(cfg, cpu), cpu), cpu, args.steps, args.skip,
                       "32-true")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--skip", type=int, default=20, help="warm-up steps left out of the timing")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    args = parse_args(p, quick={"steps": 10, "skip": 3, "repeats": 1, "batch_size": 32})
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch_size}, "
        f"{args.steps} steps ({args.skip} warm-up)"
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
    print(f"mean: plain loop {plain:.0f} img/s, ablate {ours:.0f} img/s (target ratio >= 0.9)")
    figure("throughput/plain_images_per_s", plain, "img/s")
    figure("throughput/ablate_images_per_s", ours, "img/s")
    figure("throughput/ratio_vs_plain", ours / plain, "x")
    figure("throughput/startup_to_first_step", min(r[2] for r in rows), "s")  # warm dataset cache
    if not args.quick:  # one Python start fewer
        figure("throughput/import_floor", import_floor(), "s")  # `import lightning, hydra, torch`


if __name__ == "__main__":
    main()
