"""One table of what only a GPU can measure (issue 26), every row timed in this run, on this GPU.

1. `speedrun_cifar10` through ablate against airbench94 from its published package (airbench 0.1.8,
   a benchmark-only dependency): training wall seconds and test accuracy, the same GPU, one after the
   other. airbench reads CIFAR-10 from `cifar10/{train,test}.pt`, written here from the same JPEG
   copy ablate trains on (so both score on the same images; official CIFAR-10 differs slightly).
2. The Ioffe & Szegedy MLP (bn_mlp_quick, norm=batch, seed 0, 2,000 steps) through ablate at
   steps_per_call=1 and auto: optimizer steps per second of the run.
3. The vectorized K-seed trainer (K = 1..32): not built yet; the row says so.
4. The first look of one full preset: bn_mlp (2 cells x 3 seeds x 50,000 steps), the 6 runs at once
   with the joblib launcher: wall seconds and each claim's verdict line from its report.

    scripts/gpu_check.sh [--dry-run]    (installs the carried wheels first; see scripts/gpu_bundle.sh)
    python scripts/gpu_check.py --data-root DIR [--dry-run] [--out DIR]

`--dry-run`: on CPU at toy sizes, to check the script end to end; it measures nothing.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FORKED = False  # --dry-run: Python commands forked (see run)
# A row's command gets at most this many seconds (the whole check must fit a 10-minute device call).
LIMITS = {"speedrun": 150, "airbench": 90, "mlp": 120, "vectorized": 40, "first_look": 180}
TOY = ["trainer=cpu", "trainer.precision=32-true", "data.train_subset=256",
       "++trainer.limit_val_batches=1", "++trainer.limit_test_batches=1"]  # fmt: skip


def run(cmd: list[str], limit: float, cwd: Path = REPO) -> tuple[float, str | None, str]:
    """(wall seconds, problem or None, output tail) of `cmd`, stopped after `limit` seconds. In a dry
    run a Python command is forked from a process that imported torch and Lightning once
    (ablate.run.forked): its start-up is not what a dry run checks."""
    t = time.perf_counter()
    try:
        if FORKED and cmd[0] == sys.executable:
            from ablate.run import forked

            proc = forked.run(cmd[1:], cwd, timeout=limit)
        else:
            proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=limit)
    except subprocess.TimeoutExpired:
        return time.perf_counter() - t, f"stopped at its {limit:.0f} s limit", ""
    out = proc.stdout + proc.stderr
    problem = None if proc.returncode == 0 else f"exit {proc.returncode}: {out.strip()[-300:]}"
    return time.perf_counter() - t, problem, out[-3000:]


def train(args: argparse.Namespace, tmp: Path, name: str, overrides: list[str], limit: float,
          multirun: bool = False) -> tuple[float, str | None, list[dict]]:  # fmt: skip
    """An `ablate.train` command: (process seconds, problem, its runs' summary.json records)."""
    toy = TOY if args.dry_run else []
    cmd = [sys.executable, "-m", "ablate.train", *(["-m"] if multirun else []), *overrides,
           f"data.root={args.data_root}", f"log_dir={tmp / name}", "callbacks.progress_bar=null",
           *([f"data.cache_dir={args.cache_dir}"] if args.cache_dir else []), *toy]  # fmt: skip
    seconds, problem, _ = run(cmd, limit)
    records = [json.loads(p.read_text()) for p in sorted((tmp / name).rglob("summary.json"))]
    return seconds, problem, records


def speedrun(args: argparse.Namespace, tmp: Path) -> list[str]:
    toy = ["model.channels=[8,16,16]", "trainer.max_epochs=1", "data.batch_size=64",
           "data.eval_batch_size=64", "data.val_fraction=0.1"] if args.dry_run else []  # fmt: skip
    seconds, problem, records = train(args, tmp, "speedrun", ["experiment=speedrun_cifar10", *toy],
                                      LIMITS["speedrun"])  # fmt: skip
    if problem or not records:
        return [row("speedrun_cifar10 (ablate)", problem or "no summary.json")]
    r = records[0]
    return [row("speedrun_cifar10 (ablate)", f"{r['wall_time_s']:.1f} s in the run, {seconds:.1f} s "
                f"process; test/acc {r['metrics'].get('test/acc', float('nan')):.4f}")]  # fmt: skip


def airbench(args: argparse.Namespace, tmp: Path) -> list[str]:
    import torch

    data = tmp / "airbench"
    n = cifar_pt(args.data_root, data / "cifar10")
    if args.dry_run or not torch.cuda.is_available():
        return [row("airbench94 (airbench 0.1.8)", f"not run: it needs CUDA (its data written: "
                    f"{n[0]} train and {n[1]} test images)")]  # fmt: skip
    code = ("import time, airbench, torch; airbench.warmup94(verbose=False); torch.cuda.synchronize();"
            " t=time.perf_counter(); acc=airbench.train94(verbose=False); torch.cuda.synchronize();"
            " print('AIRBENCH', time.perf_counter()-t, float(acc))")  # fmt: skip
    seconds, problem, out = run([sys.executable, "-c", code], LIMITS["airbench"], cwd=data)
    line = next((x for x in out.splitlines() if x.startswith("AIRBENCH")), None)
    if problem or line is None:
        return [row("airbench94 (airbench 0.1.8)", problem or "no result line")]
    _, train_s, acc = line.split()
    return [row("airbench94 (airbench 0.1.8)", f"{float(train_s):.1f} s training after its warm-up, "
                f"{seconds:.1f} s process; test acc {float(acc):.4f}")]  # fmt: skip


def cifar_pt(root: Path, out: Path) -> tuple[int, int]:
    """airbench's cifar10/{train,test}.pt from the JPEG CIFAR-10 copy, decoded as ablate decodes it."""
    import torch

    from ablate.data import cache
    from ablate.data.sources import source

    data = cache.load("cifar10", source("cifar10").read, root, out.parent / "cache")
    out.mkdir(parents=True, exist_ok=True)
    for name, split in (("train", data.train), ("test", data.test)):
        torch.save({"images": torch.from_numpy(split.x), "labels": torch.from_numpy(split.y),
                    "classes": list(data.classes)}, out / f"{name}.pt")  # fmt: skip
    return len(data.train.y), len(data.test.y)


def mlp(args: argparse.Namespace, tmp: Path) -> list[str]:
    steps = 40 if args.dry_run else 2000
    rows = []
    for per_call in ("1", "auto"):
        overrides = ["experiment=bn_mlp_quick", "norm=batch", f"steps_per_call={per_call}",
                     f"trainer.max_steps={steps}", "trainer.val_check_interval=20" if args.dry_run
                     else "trainer.val_check_interval=100"]  # fmt: skip
        _, problem, records = train(args, tmp, f"mlp_{per_call}", overrides, LIMITS["mlp"] / 2)
        label = f"Ioffe MLP, steps_per_call={per_call}"
        if problem or not records:
            rows.append(row(label, problem or "no summary.json"))
            continue
        r = records[0]
        rows.append(row(label, f"{r['steps'] / r['wall_time_s']:.0f} steps/s over the whole run "
                        f"(S={r.get('steps_per_call')}, {r['wall_time_s']:.1f} s)"))  # fmt: skip
    return rows


def first_look(args: argparse.Namespace, tmp: Path) -> list[str]:
    toy = ["trainer.max_steps=40", "trainer.val_check_interval=20"] if args.dry_run else []
    launcher = [] if args.dry_run else ["hydra/launcher=joblib", "hydra.launcher.n_jobs=6"]
    seconds, problem, records = train(args, tmp, "first_look", ["experiment=bn_mlp", *launcher, *toy],
                                      LIMITS["first_look"], multirun=True)  # fmt: skip
    label = "bn_mlp first look (6 runs at once)"
    if problem:
        return [row(label, problem)]
    from ablate.run.record import Status

    done = sum(r["status"] == Status.COMPLETED for r in records)
    rows = [row(label, f"{seconds:.1f} s, {done}/{len(records)} runs completed")]
    sweep = next((tmp / "first_look").rglob("multirun.yaml"), None)
    if sweep is None:
        return rows
    _, problem, _ = run([sys.executable, "-m", "ablate.report", str(sweep.parent)], 60)
    summary = sweep.parent / "report" / "summary.md"
    if problem or not summary.exists():
        return rows + [row("  report", problem or "no summary.md")]
    claims = [
        x[2:].split(" — ")[0] for x in summary.read_text().splitlines() if x.startswith("- **")
    ]
    return rows + [row("  claim", c) for c in claims]


def vectorized(args: argparse.Namespace, tmp: Path) -> list[str]:
    """Seed-steps/s of K stacked Ioffe MLPs (benchmarks/vectorized_seeds.py) on the GPU, K = 1..32."""
    from ablate.testing.bench import parse_figures

    ks = ["1", "2"] if args.dry_run else ["1", "4", "16", "32"]
    rows = []
    for norm in ("none", "batch"):
        cmd = [sys.executable, "benchmarks/vectorized_seeds.py", "--norm", norm, "--device",
               "cpu" if args.dry_run else "cuda", "--ks", *ks, "--steps", "10" if args.dry_run
               else "100", "--repeats", "1"]  # fmt: skip
        _, problem, out = run(cmd, LIMITS["vectorized"] / 2)
        label = f"K stacked Ioffe MLPs, norm={norm} (seed-steps/s at K = {', '.join(ks)})"
        rate = {f.name.split("/", 2)[2]: f.value for f in parse_figures(out)}
        if problem or not rate:
            rows.append(row(label, problem or "no figures"))
            continue
        speeds = "; ".join(f"{w} " + ", ".join(f"{rate[f'{w}/k{k}']:.0f}" for k in ks)
                           for w in ("loop", "bmm", "group"))  # fmt: skip
        gain = rate[f"group/k{ks[-1]}"] / rate["loop/k1"]
        rows.append(row(label, f"{speeds}; the group trainer's step at K = {ks[-1]}: {gain:.1f}x "
                        "one seed at a time"))  # fmt: skip
    rows.append(row("the group trainer on a GPU, and stacked conv nets (CIFAR-10 presets)",
                    "not built: a group trains on one CPU device (src/ablate/group)"))  # fmt: skip
    return rows


PARTS = {"speedrun": speedrun, "airbench": airbench, "mlp": mlp, "vectorized": vectorized,
         "first_look": first_look}  # fmt: skip


def row(what: str, result: str) -> str:
    return f"| {what} | {result.replace('|', '/')} |"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--dry-run", action="store_true", help="CPU, toy sizes: checks the script only")
    p.add_argument("--cache-dir", type=Path, help="decoded-dataset cache (default: the config's)")
    p.add_argument("--out", type=Path, help="also write the table here (a file)")
    p.add_argument("--parts", default=",".join(PARTS), help=f"which rows, of {','.join(PARTS)}")
    args = p.parse_args()
    global FORKED
    FORKED = args.dry_run
    import torch

    gpu = torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU"
    lines = [f"GPU check ({'dry run, nothing measured' if args.dry_run else gpu}; torch "
             f"{torch.__version__})", "", "| what | result |", "| --- | --- |"]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.parts.split(","):
            lines += PARTS[name](args, Path(tmp))
            print(lines[-1], flush=True)
    table = "\n".join(lines)
    print(table)
    if args.out:
        args.out.write_text(table + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
