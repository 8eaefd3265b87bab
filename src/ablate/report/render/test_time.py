"""The test-time scores of eval=mc_dropout and eval=noisy drawn per cell: accuracy against the number
of dropout masks averaged (Srivastava et al. 2014, Fig. 11, redrawn) and against the pixel noise."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ablate.report.judge.stats import mean_ci
from ablate.report.load.sweep import Sweep
from ablate.report.render.figures import pyplot, save_figure
from ablate.report.render.tables import cell_label

TEST_TIME = "test_time.png"
# (metric pattern, x-axis label, panel title, the clean score's x or None for a reference line)
PANELS = (
    (re.compile(r"^test/acc_mc(\d+)$"), "dropout masks averaged, k (log scale)",
     "Monte-Carlo dropout; dashed: weight scaling (test/acc)", None),
    (re.compile(r"^test/acc_noise([0-9.]+)$"), "pixel noise std (pixels in [0, 1])",
     "Accuracy under Gaussian pixel noise (0: the clean test split)", 0.0),
)  # fmt: skip


def _points(runs: list, pattern: re.Pattern[str]) -> dict[float, list[float]]:
    """{x: the completed runs' values} of the metrics that match `pattern` (x from the name)."""
    found: dict[float, list[float]] = {}
    for run in runs:
        for name, value in run.metrics.items():
            if (m := pattern.match(name)) and run.completed and np.isfinite(value):
                found.setdefault(float(m.group(1)), []).append(float(value))
    return found


def plot_test_time(sweep: Sweep, path: Path) -> bool:
    """One panel per kind of test-time score the runs have, a line per cell (mean and 95% t-interval
    over seeds); False when no run has any."""
    cells = sweep.cells()
    panels = [p for p in PANELS if any(_points(rs, p[0]) for rs in cells.values())]
    if not panels:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4.5), squeeze=False)
    for ax, (pattern, xlabel, title, clean_x) in zip(axes[0], panels, strict=True):
        for i, (cell, runs) in enumerate(cells.items()):
            points = _points(runs, pattern)
            clean = [r.metric("test/acc") for r in runs if r.completed]
            clean = [v for v in clean if np.isfinite(v)]
            if clean_x is not None and clean:
                points[clean_x] = clean
            if not points:
                continue
            xs = sorted(points)
            stats = [mean_ci(points[x]) for x in xs]
            means = np.array([s.mean for s in stats])
            err = np.array([[s.mean - s.lo for s in stats], [s.hi - s.mean for s in stats]])
            colour = f"C{i % 10}"
            ax.errorbar(xs, means, yerr=np.nan_to_num(err), color=colour, marker="o", ms=4,
                        capsize=3, label=f"{cell_label(sweep.factors, cell)} (n={len(runs)})")  # fmt: skip
            if clean_x is None and clean:
                ax.axhline(float(np.mean(clean)), color=colour, ls="--", lw=1)
        if clean_x is None:
            ax.set_xscale("log")
        ax.set_xlabel(xlabel)
        ax.set_ylabel("test accuracy (fraction correct)")
        ax.set_title(title, fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    save_figure(fig, path)
    return True
