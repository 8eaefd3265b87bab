"""Memory over a long run: resident memory (RSS) of `python -m ablate.train` after each epoch.

Trains the default config on a small MNIST subset for many epochs (logger=csv, default callbacks:
checkpoints, TensorBoard-free) and prints perf/rss_mb per epoch from the run's metrics.csv, the
growth from the second epoch to the last, and the disk use of the run directory.

    python benchmarks/memory.py [--quick] [--epochs 20] [--subset 2000] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import tempfile
from pathlib import Path

from ablate.testing.bench import QUICK_CLI, data_overrides, figure, parse_args, run_cli


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--subset", type=int, default=2000)
    args = parse_args(parser, quick={"epochs": 3, "subset": 128})
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        quick = QUICK_CLI if args.quick else []
        run_cli(
            [
                *data_overrides(args, subset=False), f"data.train_subset={args.subset}",
                f"trainer.max_epochs={args.epochs}", "logger=csv", "trainer=cpu",
                "callbacks.progress_bar=null", f"hydra.run.dir={run}", f"log_dir={tmp}", *quick,
            ]
        )  # fmt: skip
        rows = list(csv.DictReader((run / "metrics.csv").open()))
        rss = [(int(r["epoch"]), float(r["perf/rss_mb"])) for r in rows if r.get("perf/rss_mb")]
        disk = sum(f.stat().st_size for f in run.rglob("*") if f.is_file()) / 2**20
        ckpts = sorted(p.name for p in (run / "checkpoints").iterdir())
    for epoch, mb in rss:
        print(f"epoch {epoch:3d}: RSS {mb:7.1f} MiB")
    (_, first), (_, last) = rss[1], rss[-1]  # epoch 0 still allocates the first time
    print(f"\n{len(rss)} epochs, {args.subset} images each: RSS {first:.1f} MiB after epoch 1, "
          f"{last:.1f} MiB after the last ({last - first:+.1f} MiB, "
          f"{(last - first) / max(1, len(rss) - 2):+.2f} MiB/epoch)")  # fmt: skip
    print(f"run directory: {disk:.1f} MiB on disk; checkpoints: {', '.join(ckpts)}")
    figure("memory/rss_after_epoch_1", first, "MiB")
    figure("memory/rss_after_last_epoch", last, "MiB")
    figure("memory/rss_growth_per_epoch", (last - first) / max(1, len(rss) - 2), "MiB")
    figure("memory/run_directory", disk, "MiB")


if __name__ == "__main__":
    main()
