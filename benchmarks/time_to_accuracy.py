"""Time to accuracy of a speedrun preset: wall time of `python -m ablate.train experiment=<preset>`.

Each seed is one fresh process, timed from before Python starts to its exit, so the time includes
interpreter start-up, imports, decoding (a warm cache), training, validation, testing the best
checkpoint and writing the summary. The run's fixed schedule is what a speedrun tunes; the target
(`report.target` of the preset, e.g. test/acc >= 0.99) is reached when the tested accuracy meets it.
Prints one line per seed, then the medians and how many seeds reached the target.

    python benchmarks/time_to_accuracy.py [--quick] [--preset speedrun_mnist] [--seeds 0 1 2] [--override k=v ...]
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

import torch
from hydra.utils import instantiate
from omegaconf import OmegaConf

from ablate.config import REPO_ROOT
from ablate.testing.bench import QUICK_CLI, compose_cfg, data_overrides, figure, parse_args

# --quick: a few steps on a small subset (the target is not expected to be reached)
QUICK = ["trainer.max_epochs=1", "trainer.max_steps=5", "data.batch_size=32", *QUICK_CLI]


def warm_cache(cfg) -> None:
    """Decode the dataset into its cache now, so no timed run pays the one-time decode."""
    aug = OmegaConf.to_container(cfg.aug, resolve=True)
    instantiate(cfg.data, aug=aug, seed=0, _recursive_=False).prepare_data()


def one_run(args, seed: int, tmp: Path) -> dict:
    """One timed run of the preset; its summary.json plus the process wall time."""
    run_dir = tmp / f"seed{seed}"
    cmd = [
        sys.executable, "-m", "ablate.train", f"experiment={args.preset}", f"seed={seed}",
        f"log_dir={tmp}", f"hydra.run.dir={run_dir}", *args.run_overrides,
    ]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True)
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
    p.add_argument("--keep", action="store_true", help="keep the runs' directories")
    args = parse_args(p, quick={"seeds": [0]})
    args.run_overrides = [*data_overrides(args), *(QUICK if args.quick else []), *args.override]
    cfg = compose_cfg([f"experiment={args.preset}", *args.run_overrides])
    target_cfg = cfg.get("report", {}).get("target") or {}
    metric = args.metric or target_cfg.get("metric")
    target = args.target if args.target is not None else target_cfg.get("value")
    if metric is None or target is None:
        raise SystemExit(f"experiment={args.preset} has no report.target: pass --metric/--target")

    print(
        f"{os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
        f"GPU: {torch.cuda.get_device_name() if torch.cuda.is_available() else 'none'}, "
        f"torch {torch.__version__}, lightning {metadata.version('lightning')}, "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    print(f"experiment={args.preset} {' '.join(args.override)}: target {metric} >= {target}")
    warm_cache(cfg)
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
    name = f"time_to_accuracy/{args.preset}"
    figure(f"{name}/process_wall", statistics.median(r[1] for r in rows), "s")
    figure(f"{name}/in_run_wall", statistics.median(r[2] for r in rows), "s")
    figure(f"{name}/{metric.replace('/', '_')}", statistics.median(r[3] for r in rows), "fraction")
    figure(f"{name}/seeds_reaching_target", reached / len(rows), "fraction")


if __name__ == "__main__":
    main()
