"""PNG plots: claims forest, learning curves per cell, test/acc bars per factor, landscape (Agg)."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from typing import Any

import numpy as np

from ablate.report.judge.stats import mean_ci, sample
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.sweep import Sweep
from ablate.report.render.cost import COST, plot_cost
from ablate.report.render.figures import mean_curve, pyplot, save_figure
from ablate.report.render.forest import FOREST, write_forest
from ablate.report.render.tables import cell_label
from ablate.report.render.test_time import TEST_TIME, plot_test_time
from ablate.run.record import TARGET_METRIC

CURVES = (("val/acc", "curves_val_acc.png"), ("train/loss", "curves_train_loss.png"))


UNITS = {"acc": "fraction correct", "loss": "cross-entropy, nats"}
STYLES = ("-", "--", ":", "-.")


def _units(key: str) -> str:
    unit = next((u for k, u in UNITS.items() if key.endswith(k)), None)
    return f"{key} ({unit})" if unit else key


def _styles(sweep: Sweep) -> tuple[dict[str, int], dict[str, str], str]:
    """Colour index per value of the first factor, line style per value of the second, and how to read them."""
    first = sweep.factors[0] if sweep.factors else None
    second = sweep.factors[1] if len(sweep.factors) > 1 else None
    colour = {v: i for i, v in enumerate(sweep.levels[first])} if first else {}
    style = (
        {v: STYLES[i % len(STYLES)] for i, v in enumerate(sweep.levels[second])} if second else {}
    )
    legend = f"colour: {first}" + (f", line style: {second}" if second else "") if first else ""
    return colour, style, legend


def _batch_size(sweep: Sweep) -> int | None:
    """The one batch size of every run, or None when it differs (then no images axis)."""
    sizes = {r.lookup("data.batch_size") for r in sweep.runs}
    return sizes.pop() if len(sizes) == 1 and isinstance(next(iter(sizes)), int) else None


def _run_batch(run: Any) -> int:
    """A run's training batch size, 0 when it is not a number (that run's line is left out)."""
    size = str(run.lookup("data.batch_size"))  # an override is kept as typed: "32"
    return int(size) if size.isdigit() else 0


def plot_curves(sweep: Sweep, key: str, path: Path, title: str | None = None) -> bool:
    """`key` against step per cell (against images seen where the batch size differs between runs):
    each seed a thin line, their mean bold; False without data.

    Thin per-seed lines, not a mean +- std band: a band of accuracies reaches past 1.0 and hides
    how the seeds actually spread. With two factors the first is the colour, the second the style.
    """
    batch = _batch_size(sweep)
    by_images = len({_run_batch(r) for r in sweep.runs} - {0}) > 1  # batch sizes differ
    lines = []
    for cell, runs in sweep.cells().items():
        series = []
        for r in runs:
            if not r.completed or (by_images and not _run_batch(r)):
                continue
            steps, values = r.series(key)
            if steps.size:  # at equal images seen, not equal steps, when batch sizes differ
                series.append((steps * _run_batch(r) / 1000 if by_images else steps, values))
        if series:
            lines.append((cell, series))
    if not lines:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    colours, styles, legend = _styles(sweep)
    cmap = plt.get_cmap("tab10" if len(colours) <= 10 else "tab20")
    for i, (cell, series) in enumerate(lines):
        colour = cmap(colours.get(cell[0], i) % cmap.N) if cell else cmap(i % cmap.N)
        style = styles.get(cell[1], "-") if len(cell) > 1 else "-"
        for steps, values in series:
            ax.plot(steps, values, color=colour, ls=style, lw=0.7, alpha=0.35)
        grid, mean, _ = mean_curve(series)
        label = f"{cell_label(sweep.factors, cell)} (n={len(series)})"
        ax.plot(grid, mean, color=colour, ls=style, lw=2.2, label=label)
    if key == TARGET_METRIC and sweep.target is not None:
        ax.axhline(sweep.target, color="gray", ls="--", lw=1, label=f"target {sweep.target}")
    if key.endswith("acc"):
        low = min(float(np.nanmin(v)) for _, series in lines for _, v in series)
        ax.set_ylim(max(0.0, low - 0.02), 1.0)  # accuracy is a fraction: nothing drawn past 1
    what = f"each seed thin, mean bold{'; ' + legend if legend else ''}"
    x = "training images seen (thousands)" if by_images else "training step (optimizer steps)"
    ax.set(
        xlabel=x,
        ylabel=_units(key),
        title=f"{title or f'{key} per cell'}\n({what})",
    )
    if batch is not None:
        top = ax.secondary_xaxis(
            "top", functions=(lambda s: s * batch / 1000, lambda k: k * 1000 / batch)
        )
        top.set_xlabel(f"training images seen (thousands; batch {batch})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize="small", loc="best")
    save_figure(fig, path)
    return True


def plot_bars(sweep: Sweep, factor: str, path: Path) -> bool:
    """Mean test/acc with 95% CI error bars per value of a factor; False without data."""
    stats = [
        (v, mean_ci(sample([r for r in sweep.runs if r.factors[factor] == v], "test/acc")))
        for v in sweep.levels[factor]
    ]
    stats = [(v, s) for v, s in stats if s.n]
    if not stats:
        return False
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(max(5.5, 1.2 * len(stats) + 2), 4.5))
    means = np.array([s.mean for _, s in stats])
    halves = np.nan_to_num(np.array([s.half for _, s in stats]))
    x = np.arange(len(stats))
    ax.bar(x, means, yerr=halves, capsize=6, color="tab:blue", alpha=0.8)
    for xi, mean, half, (_, s) in zip(x, means, halves, stats, strict=True):
        ax.annotate(
            f"n={s.n}", (xi, mean + half), xytext=(0, 3), textcoords="offset points", ha="center"
        )
    lo, hi = float(np.min(means - halves)), float(np.max(means + halves))
    pad = max(0.5 * (hi - lo), 0.005)  # zoom in: accuracies differ in the 2nd-3rd decimal
    ax.set_ylim(max(0.0, lo - pad), hi + pad)
    ax.set_xticks(x, [v for v, _ in stats])
    ax.set(
        xlabel=factor,
        ylabel="test/acc",
        title=f"test/acc by {factor}\n(mean and 95% CI over completed runs)",
    )
    ax.grid(axis="y", alpha=0.3)
    save_figure(fig, path)
    return True


LANDSCAPE_ROWS = (
    ("loss_min", "loss_max", "loss along the gradient\n(min..max over step sizes)"),
    ("grad_diff_min", "grad_diff_max", "||g - g'|| (gradient\npredictiveness, lower = better)"),
    ("beta_smoothness", None, "effective beta-smoothness\n(max ||g - g'|| / ||eta g||)"),
)


def _landscape_series(run: Any, key: str) -> tuple[np.ndarray, np.ndarray]:
    points = {
        float(p["step"]): float(p[key])
        for p in (run.diagnostics or {}).get("landscape", [])
        if isinstance(p, dict) and np.isfinite(float(p.get(key, np.nan)))
    }
    steps = np.array(sorted(points), dtype=float)
    return steps, np.array([points[s] for s in steps], dtype=float)


def plot_landscape(sweep: Sweep, path: Path) -> bool:
    """Santurkar et al. 2018, Fig. 4: per cell (side by side), the loss band, the gradient-
    predictiveness band and beta-smoothness against step, means over seeds; False without probes."""
    cells = []
    for cell, runs in sweep.cells().items():
        probed = [r for r in runs if r.completed and _landscape_series(r, "loss_min")[0].size]
        if probed:
            cells.append((f"{cell_label(sweep.factors, cell)} (n={len(probed)})", probed))
    if not cells:
        return False
    plt = pyplot()
    fig, axes = plt.subplots(
        len(LANDSCAPE_ROWS), len(cells), figsize=(4.5 * len(cells) + 1, 9),
        sharex="col", sharey="row", squeeze=False,
    )  # fmt: skip
    for col, (label, runs) in enumerate(cells):
        for row, (low, high, ylabel) in enumerate(LANDSCAPE_ROWS):
            ax = axes[row][col]
            grid, lo, _ = mean_curve([_landscape_series(r, low) for r in runs])
            if high is None:
                ax.plot(grid, lo, color="tab:red")
                ax.set_yscale("log")
            else:
                _, hi, _ = mean_curve([_landscape_series(r, high) for r in runs])
                ax.fill_between(grid, lo, hi, color="tab:blue", alpha=0.35)
                ax.plot(grid, hi, color="tab:blue", lw=0.8)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel(ylabel)
            if row == 0:  # a grid's cell labels are long: wrapped, or they run into each other
                ax.set_title("\n".join(textwrap.wrap(label, 40)), fontsize=9)
            if row == len(LANDSCAPE_ROWS) - 1:
                ax.set_xlabel("training step")
    fig.suptitle("Loss landscape probes (Santurkar et al. 2018, Fig. 4): means over seeds")
    save_figure(fig, path)
    return True


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name)


def write_plots(out: Path, sweep: Sweep, verdicts: list[Verdict] | None = None) -> list[str]:
    """Every plot there is data for (the forest plot of `verdicts`); returns the file names written."""
    old_plots = [*out.glob("curves_*.png"), *out.glob("bar_*.png"), *out.glob("landscape.png"),
                 *out.glob(TEST_TIME)]  # fmt: skip
    for old in [*old_plots, *out.glob(FOREST), *out.glob(COST)]:
        old.unlink()  # a plot that has no data any more must not linger from an earlier report
    written = [FOREST] if write_forest(out, sweep, verdicts) else []
    written += [name for key, name in CURVES if plot_curves(sweep, key, out / name)]
    if plot_landscape(sweep, out / "landscape.png"):
        written.append("landscape.png")
    if plot_test_time(sweep, out / TEST_TIME):
        written.append(TEST_TIME)
    if plot_cost(sweep, out / COST):
        written.append(COST)
    for factor in sweep.factors:
        name = f"bar_{_slug(factor)}.png"
        if plot_bars(sweep, factor, out / name):
            written.append(name)
    return written
