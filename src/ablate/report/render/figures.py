"""What every PNG of the report shares: a headless pyplot, saving, and the mean of learning curves."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np


def pyplot() -> Any:
    """matplotlib.pyplot on the Agg backend (imported on first use: reports without plots skip it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path, rect: tuple[float, ...] = (0, 0, 1, 1)) -> None:
    """Lay out inside `rect` (figure fractions), write the PNG and free the figure."""
    fig.tight_layout(rect=rect)
    fig.savefig(path, dpi=110)
    fig.clf()
    pyplot().close(fig)


def mean_curve(series: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, ...]:
    """(grid, mean, std) over runs whose steps differ: each is interpolated onto the union grid
    inside its own step range; std is the sample std (0 where one run covers the step)."""
    grid = np.unique(np.concatenate([s for s, _ in series]))
    stack = np.full((len(series), grid.size), np.nan)
    for i, (steps, values) in enumerate(series):
        inside = (grid >= steps[0]) & (grid <= steps[-1])
        stack[i, inside] = np.interp(grid[inside], steps, values)
    count = np.sum(~np.isnan(stack), axis=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        mean = np.nanmean(stack, axis=0)
        var = np.nansum((stack - mean) ** 2, axis=0) / np.maximum(count - 1, 1)
    return grid, mean, np.where(count > 1, np.sqrt(var), 0.0)
