"""Sweep throughput: runs completed per hour for a fixed small sweep, basic launcher against joblib.

The sweep is `norm=none,batch seed=0,1,...` (`--cells` cells) of short MNIST runs on the CPU
(`--steps` steps on a `--subset`-image training subset, by default one epoch; csv logger, no
progress bar; validation, test, train re-scoring and checkpoints as by default), launched as one
whole `python -m ablate.train -m ...` process per launcher: basic (the runs one after another in one
process, all cores each) and joblib with each `--n-jobs` (that many runs at once, the cores split
between them by `threads=auto`). The launchers alternate over `--repeats`, so drift in machine
speed hits them alike. Prints, per launcher, the sweep's wall time (median over repeats), runs
completed (summary.json with status `completed`), runs/hour, seconds per run and the speedup over
basic; then where a run's time goes, from the runs' summary.json: start-up to the first training
step (for a process's first run this includes starting Python and the imports), the training
steps, and the rest (validation, test, train re-scoring, checkpoints), against the time the sweep
process spends outside any run.

    python benchmarks/sweep_throughput.py [--quick] [--cells 4] [--steps 50] [--subset 6400] [--repeats 2] \
        [--n-jobs 2 4] [--keep]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from importlib import metadata
from pathlib import Path

from ablate.config import REPO_ROOT
from ablate.testing.bench import QUICK_CLI, data_overrides, figure, import_floor, parse_args


def jobs(launcher: str) -> int:
    """Runs at once under this launcher: 1 for basic, N for joblib-N."""
    return 1 if launcher == "basic" else int(launcher.removeprefix("joblib-"))


def sweep_overrides(args, launcher: str, sweep_dir: Path, log_dir: Path) -> list[str]:
    """The CLI arguments of one sweep: the fixed cells, their run settings, the launcher."""
    seeds = ",".join(str(s) for s in range(args.cells // 2))
    launch = []
    if launcher != "basic":
        launch = ["hydra/launcher=joblib", f"hydra.launcher.n_jobs={jobs(launcher)}"]
    return [
        "-m", "norm=none,batch", f"seed={seeds}", *launch,
        *data_overrides(args, subset=False), f"data.train_subset={args.subset}", f"data.batch_size={args.batch_size}",
        "trainer=cpu", f"trainer.max_steps={args.steps}", "trainer.enable_model_summary=false",
        "logger=csv", "callbacks.progress_bar=null",
        f"log_dir={log_dir}", f"hydra.sweep.dir={sweep_dir}", *quick(args), *args.override,
    ]  # fmt: skip


def quick(args) -> list[str]:
    """Under --quick: evaluate on 2 batches, time from the second step."""
    return [*QUICK_CLI, "callbacks.throughput.skip=1"] if args.quick else []


def run_sweep(args, launcher: str, sweep_dir: Path, log_dir: Path) -> dict:
    """One whole sweep process: wall and CPU seconds, and the summary.json of each run."""
    cmd = [
        sys.executable,
        "-m",
        "ablate.train",
        *sweep_overrides(args, launcher, sweep_dir, log_dir),
    ]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    cpu0 = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    cpu1 = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(
            f"{launcher} sweep exited {proc.returncode}:\n{' '.join(cmd)}\n{proc.stderr[-3000:]}"
        )
    runs = [json.loads(p.read_text()) for p in sweep_dir.rglob("summary.json")]
    cpu = (cpu1.ru_utime - cpu0.ru_utime) + (cpu1.ru_stime - cpu0.ru_stime)
    return {"wall": wall, "cpu": cpu, "runs": runs}


def split(runs: list[dict], processes: int, batch_size: int) -> dict[str, float]:
    """Mean seconds per run: start-up (a process's first run / later runs), training, the rest.

    A process's first runs are taken to be the `processes` runs with the longest start-up (theirs
    includes starting Python and importing torch/Lightning). Training time is steps x batch over the
    run's training images/s (its warm-up steps counted at that speed too); the rest is the run's
    wall time (summary.json, from data loading on) minus start-up and training, from later runs only.
    """
    done = [r for r in runs if r["status"] == "completed"]
    by_startup = sorted(done, key=lambda r: -r["metrics"]["perf/startup_s"])
    first, later = by_startup[:processes], by_startup[processes:]
    train = lambda r: r["steps"] * batch_size / r["metrics"]["perf/train_images_per_s"]  # noqa: E731
    mean = lambda xs: statistics.fmean(xs) if xs else float("nan")  # noqa: E731
    return {
        "run": mean([r["wall_time_s"] for r in done]),
        "first": mean([r["metrics"]["perf/startup_s"] for r in first]),
        "later": mean([r["metrics"]["perf/startup_s"] for r in later]),
        "train": mean([train(r) for r in done]),
        "rest": mean([r["wall_time_s"] - r["metrics"]["perf/startup_s"] - train(r) for r in later]),
        "sum_run": sum(r["wall_time_s"] for r in done),
        "threads": done[0]["threads"] if done else 0,
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--cells", type=int, default=4, help="runs in the sweep (even: 2 norms x seeds)")
    p.add_argument("--steps", type=int, default=50, help="training steps per run")
    p.add_argument("--subset", type=int, default=6400, help="training images per run")
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--repeats", type=int, default=2)
    cores = os.cpu_count() or 1
    p.add_argument(
        "--n-jobs",
        type=int,
        nargs="+",
        help="joblib workers to measure (default: 2 and min(cores, cells))",
    )
    p.add_argument("--override", nargs="*", default=[], help="extra overrides for every run")
    p.add_argument("--keep", action="store_true", help="keep the sweeps' logs (path printed)")
    args = parse_args(
        p,
        # quick: the basic launcher only (each joblib worker is one more Python start, ~5 s of CPU)
        quick={"cells": 2, "steps": 4, "subset": 128, "batch_size": 32, "repeats": 1, "n_jobs": []},
    )
    if args.cells < 2 or args.cells % 2:
        p.error("--cells must be even and >= 2 (norm=none,batch x cells/2 seeds)")
    n_jobs = args.n_jobs if args.n_jobs is not None else sorted({2, min(cores, args.cells)})
    launchers = ["basic", *(f"joblib-{n}" for n in n_jobs)]

    print(
        f"{cores} CPUs, Python {platform.python_version()}, torch {metadata.version('torch')}, "
        f"lightning {metadata.version('lightning')}, load average {os.getloadavg()[0]:.2f}"
    )
    print(
        f"sweep: norm=none,batch x seed=0..{args.cells // 2 - 1} = {args.cells} runs of "
        f"{args.steps} steps, batch {args.batch_size}, {args.subset} MNIST training images, "
        f"{args.repeats} repeats"
    )
    tmp = Path(tempfile.mkdtemp(prefix="sweep_throughput-"))
    results: dict[str, list[dict]] = {name: [] for name in launchers}
    try:
        for r in range(args.repeats):  # alternate, so drift in machine speed hits all alike
            for name in launchers:
                res = run_sweep(args, name, tmp / f"{name}-r{r}", tmp / "logs")
                results[name].append(res)
                n = sum(x["status"] == "completed" for x in res["runs"])
                print(
                    f"  repeat {r} {name:10} {res['wall']:7.1f} s wall, {res['cpu']:7.1f} s CPU, "
                    f"{n} runs completed"
                )
    finally:
        if args.keep:
            print(f"logs kept in {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)

    floor = float("nan") if args.quick else import_floor()  # quick: one Python start fewer
    print()
    print(
        f"{'launcher':10} {'threads':>7} {'runs':>5} {'wall s':>7} {'CPU s':>7} {'runs/hour':>9} "
        f"{'s/run':>6} {'speedup':>7}"
    )
    base = None
    for name in launchers:
        res = results[name]
        wall = statistics.median(x["wall"] for x in res)
        cpu = statistics.median(x["cpu"] for x in res)
        done = min(sum(x["status"] == "completed" for x in s["runs"]) for s in res)
        per_hour = done / wall * 3600
        base = base or per_hour
        threads = split(res[0]["runs"], 1, args.batch_size)["threads"]
        print(
            f"{name:10} {threads:7d} {done:5d} {wall:7.1f} {cpu:7.1f} {per_hour:9.0f} "
            f"{wall / max(1, done):6.1f} {per_hour / base:6.2f}x"
        )
        figure(f"sweep_throughput/{name}/runs_per_hour", per_hour, "runs/h")
        if name != "basic":
            figure(f"sweep_throughput/{name}/speedup_vs_basic", per_hour / base, "x")

    print()
    print("where a run's time goes (mean s per run, over all repeats; from summary.json):")
    print(
        f"{'launcher':10} {'run':>6} {'start-up 1st':>12} {'start-up later':>14} {'training':>8} "
        f"{'rest':>6} {'outside runs':>12}"
    )
    for name in launchers:
        slots = min(jobs(name), args.cells)
        rows = [split(s["runs"], slots, args.batch_size) for s in results[name]]
        m = {k: statistics.fmean(row[k] for row in rows) for k in rows[0]}
        outside = statistics.fmean(
            s["wall"] - row["sum_run"] / slots for s, row in zip(results[name], rows, strict=True)
        )
        print(
            f"{name:10} {m['run']:6.1f} {m['first']:12.1f} {m['later']:14.1f} {m['train']:8.1f} "
            f"{m['rest']:6.1f} {outside:12.1f}"
        )
        for key, what in (("first", "startup_first_run"), ("later", "startup_later_runs"),
                          ("train", "training_per_run"), ("rest", "rest_per_run")):  # fmt: skip
            if m[key] == m[key]:  # nan where a sweep has no later run
                figure(f"sweep_throughput/{name}/{what}", m[key], "s")
    print(
        "  run: summary.json wall_time_s (data loading to the end of test); start-up: to the first\n"
        "  training step, for a process's first run from process start (imports included), later runs\n"
        "  from their own start; training: steps x batch / train images/s; rest: validation, test,\n"
        "  train re-scoring, checkpoints (later runs); outside runs: sweep wall time minus the runs'\n"
        "  time per parallel slot (Python start, imports, Hydra, workers, waiting on the slowest run)."
    )
    if not args.quick:
        print(f"  floor of any new process, `import lightning, hydra, torch`: {floor:.1f} s")
        figure("sweep_throughput/import_floor", floor, "s")


if __name__ == "__main__":
    main()
