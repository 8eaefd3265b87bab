"""Time to accuracy of a speedrun preset: wall time of `python -m ablate.train experiment=<preset>`.

Each seed is one fresh process, timed from before Python starts to its exit, so the time includes
interpreter start-up, imports, decoding (a warm cache), training, validation, testing the best
checkpoint and writing the summary. The run's fixed schedule is what a speedrun tunes; the target
(`report.target` of the preset, e.g. test/acc >= 0.99) is reached when the tested accuracy meets it.
Prints one line per seed, then the medians and how many seeds reached the target.

    python benchmarks/time_to_accuracy.py [--preset speedrun_mnist] [--seeds 0 1 2] [--override k=v ...]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from throughput import REPO, default_data_root  # noqa: E402


def compose_preset(preset: str, overrides: list[str]):
    """The preset's composed config (without running anything)."""
    from hydra import compose, initialize_config_dir

    from ablate.config import CONF_DIR

    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=[f"experiment={preset}", *overrides])


def warm_cache(cfg, root: str, cache_dir: str) -> None:
    """Decode the dataset into its cache now, so no timed run pays the one-time decode."""
    from hydra.utils import get_class

    from ablate.data import cache

    d = cfg.data
    cache.load(d.dataset, get_class(d._target_).read, root, cache_dir, download=False, channels=d.channels,
                  image_size=d.image_size)  # fmt: skip


def one_run(args, seed: int, tmp: Path) -> dict:
    """One timed run of the preset; its summary.json plus the process wall time."""
    run_dir = tmp / f"seed{seed}"
    cmd = [
        sys.executable, "-m", "ablate.train", f"experiment={args.preset}", f"seed={seed}",
        f"data.root={args.data_root}", f"data.cache_dir={args.cache_dir}", "data.download=false",
        f"log_dir={tmp}", f"hydra.run.dir={run_dir}", *args.override,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stderr.write(proc.stderr[-4000:])
        raise SystemExit(f"seed {seed}: the run exited {proc.returncode}")
    summary = json.loads((run_dir / "summary.json").read_text())
    return {"wall": wall, **summary}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="speedrun_mnist")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--metric", help="default: the preset's report.target.metric")
    p.add_argument("--target", type=float, help="default: the preset's report.target.value")
    p.add_argument("--override", nargs="*", default=[], help="extra overrides, e.g. trainer=gpu")
    p.add_argument("--data-root", default=default_data_root())
    p.add_argument(
        "--cache-dir", default=os.environ.get("ABLATE_CACHE_DIR", str(REPO / "data" / "cache"))
    )
    p.add_argument("--keep", action="store_true", help="keep the runs' directories")
    args = p.parse_args()
    cfg = compose_preset(args.preset, args.override)
    target_cfg = cfg.get("report", {}).get("target") or {}
    metric = args.metric or target_cfg.get("metric")
    target = args.target if args.target is not None else target_cfg.get("value")
    if metric is None or target is None:
        raise SystemExit(f"experiment={args.preset} has no report.target: pass --metric/--target")

    import torch

    print(
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}, "
        f"torch {torch.__version__}, lightning {metadata.version('lightning')}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"experiment={args.preset} {' '.join(args.override)}: target {metric} >= {target}")
    warm_cache(cfg, args.data_root, args.cache_dir)
    tmp = Path(tempfile.mkdtemp(prefix="ablate-tta-"))
    rows = []
    try:
        for seed in args.seeds:
            r = one_run(args, seed, tmp)
            value = r["metrics"].get(metric, float("nan"))
            rows.append((seed, r["wall"], r["wall_time_s"], value, r["steps"], r["epochs"]))
            print(
                f"  seed {seed}: {r['wall']:6.1f} s process, {r['wall_time_s']:6.1f} s run "
                f"(data to summary), {metric} {value:.4f} "
                f"{'reached' if value >= target else 'MISSED'}, {r['steps']} steps"
            )
    finally:
        if args.keep:
            print(f"runs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    reached = sum(v >= target for _, _, _, v, _, _ in rows)
    print(
        f"median over {len(rows)} seeds: {statistics.median(r[1] for r in rows):.1f} s process "
        f"wall, {statistics.median(r[2] for r in rows):.1f} s in the run, {metric} "
        f"{statistics.median(r[3] for r in rows):.4f} (mean {statistics.mean(r[3] for r in rows):.4f}); "
        f"target reached by {reached}/{len(rows)} seeds"
    )


if __name__ == "__main__":
    main()
