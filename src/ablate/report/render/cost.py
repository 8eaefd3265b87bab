"""What a technique costs beside what it buys, and which code the runs came from.

Cost: each cell's training throughput (images/s, validation excluded) and wall time per run next to
its test accuracy, and `cost.png`, accuracy against wall time, one point per cell (the spirit of
MosaicML Composer's time-to-train vs accuracy). Provenance: the commit(s) and package versions the
runs recorded in summary.json, so a number can be reproduced by checking out the commit it names.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np

from ablate.report.judge.stats import mean_ci, sample
from ablate.report.load.runs import Run
from ablate.report.load.sweep import Sweep
from ablate.report.render.figures import pyplot, save_figure
from ablate.report.render.tables import cell_label, fmt_stat, md_table
from ablate.run.record import Status

COST = "cost.png"
THROUGHPUT = "perf/train_images_per_s"
VERSIONS_SHOWN = ("python", "torch", "lightning", "torchvision", "hydra-core", "albumentations")


def _wall(runs: list[Run]) -> list[float]:
    return [r.wall_time_s for r in runs if r.completed and np.isfinite(r.wall_time_s)]


def section_cost(sweep: Sweep) -> str:
    """Per cell: test/acc, training images/s and wall time per run (completed runs)."""
    rows = []
    for cell, runs in sweep.cells().items():
        wall, speed = _wall(runs), sample([r for r in runs if r.completed], THROUGHPUT)
        if not wall:
            continue
        rows.append(
            [
                *cell,
                fmt_stat(mean_ci(sample(runs, "test/acc"))),
                f"{np.mean(speed):,.0f}" if speed else "—",
                f"{np.mean(wall):.1f} ({min(wall):.1f}–{max(wall):.1f})",
                f"{sum(wall) / 60:.1f}",
            ]
        )
    if not rows:
        return ""
    header = [
        *sweep.factors,
        "test/acc",
        "train images/s",
        "wall s per run (min–max)",
        "cell total, min",
    ]
    note = (
        "What each cell costs beside what it buys: training throughput (images/s over the "
        "training steps, validation excluded; mean over runs), wall time per run (start to "
        "summary, evaluation included) and the cell's total (all its runs, one after another). "
        f"[{COST}]({COST}) draws accuracy against wall time."
    )
    return "## Cost beside quality\n\n" + note + "\n\n" + md_table(header, rows) + "\n"


def plot_cost(sweep: Sweep, path: Path) -> bool:
    """Mean test/acc (95% CI) against mean wall time per run (min–max), one point per cell."""
    points = []
    for cell, runs in sweep.cells().items():
        wall, acc = _wall(runs), mean_ci(sample(runs, "test/acc"))
        if wall and acc.n:
            points.append((cell, np.array(wall), acc))
    if not points:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.8))
    markers = "osD^vP*X"
    first = {v: i for i, v in enumerate(sweep.levels[sweep.factors[0]])} if sweep.factors else {}
    second = (
        {v: i for i, v in enumerate(sweep.levels[sweep.factors[1]])}
        if len(sweep.factors) > 1
        else {}
    )
    for cell, wall, acc in points:
        x = float(wall.mean())
        colour = f"C{first.get(cell[0], 0) % 10}" if cell else "C0"
        marker = markers[second.get(cell[1], 0) % len(markers)] if len(cell) > 1 else "o"
        ax.errorbar(
            x,
            acc.mean,
            yerr=0.0 if np.isnan(acc.half) else acc.half,
            # clipped: the mean of equal times can round past their max (0.1 x 3 -> 0.1000...02)
            xerr=[[max(x - wall.min(), 0.0)], [max(wall.max() - x, 0.0)]],
            fmt=marker,
            color=colour,
            capsize=4,
        )
        # the legend shows the marker alone: the error bars' caps made the shapes hard to tell apart
        ax.plot([], [], marker, color=colour, markersize=7, label=cell_label(sweep.factors, cell))
    ax.set(
        xlabel="wall time per run (s; bar: min–max over seeds)",
        ylabel="test/acc (fraction correct; bar: 95% CI)",
        title="accuracy against cost, one point per cell",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, path)
    return True


def section_provenance(sweep: Sweep) -> str:
    """The commit(s) and package versions the runs came from; flags a sweep of mixed code."""
    runs = [r for r in sweep.runs if r.status != Status.CORRUPT]
    commits = Counter(r.git_commit or "unknown" for r in runs)
    if not commits:
        return ""
    versions = Counter(
        ", ".join(f"{k} {r.versions[k]}" for k in VERSIONS_SHOWN if k in r.versions)
        for r in runs
        if r.versions
    )
    shown = "; ".join(
        f"`{short_commit(c)}`" + (f" ({_runs(n)})" if len(commits) > 1 else "")
        for c, n in commits.most_common()
    )
    if len(commits) == 1:
        (commit,) = commits
        text = f"Code: commit {shown}" + (
            " (with uncommitted changes: not reproducible from the commit alone)"
            if commit.endswith("-dirty")
            else ""
        )
    else:
        text = f"**Mixed code: the runs come from {len(commits)} commits** ({shown}); numbers may not compare"
    if versions:
        text += "; " + " | ".join(
            f"{v}" + (f" ({n} runs)" if len(versions) > 1 else "")
            for v, n in versions.most_common()
        )
    machines = Counter(r.machine for r in runs if r.machine)
    if machines:
        text += "; machine: " + " | ".join(
            m + (f" ({_runs(n)})" if len(machines) > 1 else "") for m, n in machines.most_common()
        )
    return text + "." + hardware_note(runs)


def hardware_note(runs: list[Run]) -> str:
    """The CPU models, torch CPU capabilities and GPUs the runs came from; a mix is flagged, since
    results are bitwise the same only on the same hardware and software."""
    kinds = Counter(
        (r.cpu_model or "unknown CPU", r.cpu_capability or "unknown", ", ".join(r.gpu_models))
        for r in runs
        if r.cpu_model or r.cpu_capability
    )
    if not kinds:
        return ""  # summaries written before the CPU was recorded
    shown = " | ".join(
        f"{cpu}, torch CPU capability {cap}" + (f", GPU {gpu}" if gpu else "")
        + (f" ({_runs(n)})" if len(kinds) > 1 else "")
        for (cpu, cap, gpu), n in kinds.most_common()
    )  # fmt: skip
    if len(kinds) == 1:
        return f" Hardware: {shown}: the digits are reproducible on this hardware and software."
    return (
        f" **Mixed hardware: the runs come from {len(kinds)} kinds of machine** ({shown}): "
        "results are bitwise the same only on the same hardware and software, so cells trained on "
        "different machines differ by more than their seeds; on another machine expect the same "
        "verdicts, not the same digits."
    )


def short_commit(commit: str, width: int = 12) -> str:
    """The commit's first `width` hex digits, keeping its '-dirty' mark."""
    return commit[:width] + ("-dirty" if commit.endswith("-dirty") else "")


def _runs(n: int) -> str:
    return f"{n} run{'s' * (n != 1)}"
