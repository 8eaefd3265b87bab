"""Memory over a long run: resident memory (RSS) of `python -m ablate.train` after each epoch.

Trains the default config on a small MNIST subset for many epochs (logger=csv, default callbacks:
checkpoints, TensorBoard-free) and prints perf/rss_mb per epoch from the run's metrics.csv, the
growth from the second epoch to the last, and the disk use of the run directory.

    python benchmarks/memory.py [--epochs 20] [--subset 2000] [--data-root ../shared/data]
"""

from __future__ import annotations

import argparse
import csv
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import REPO, default_data_root  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--subset", type=int, default=2000)
    parser.add_argument("--data-root", default=default_data_root())
    parser.add_argument("--cache-dir", default=str(REPO / "data" / "cache"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(tmp) / "run"
        cmd = [
            sys.executable, "-m", "ablate.train", f"data.root={args.data_root}",
            f"data.cache_dir={args.cache_dir}", f"data.train_subset={args.subset}",
            f"trainer.max_epochs={args.epochs}", "logger=csv", "trainer=cpu",
            "callbacks.progress_bar=null", f"hydra.run.dir={run}",
        ]  # fmt: skip
        proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
        if proc.returncode != 0:
            sys.exit(f"run failed:\n{proc.stderr[-3000:]}")
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


if __name__ == "__main__":
    main()
