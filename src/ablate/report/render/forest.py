"""forest.png: one row per claim, its signed difference with interval, ±margin and 0; a claim with
nothing to compare (e.g. no finished runs on a side) gets a row that says so."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from ablate.report.judge.claims import judge_all
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.sweep import Sweep

FOREST = "forest.png"
COLORS = {
    "supported": "tab:green",
    "contradicted": "tab:red",
    "no effect": "tab:blue",
    "inconclusive": "tab:gray",
    "not tested": "tab:brown",
}


def _scale(verdicts: list[Verdict]) -> tuple[list[float], str, float]:
    """One x unit for all rows: the metric's when claims share metric and margin, else margins."""
    units = {(v.claim["metric"], v.margin) for v in verdicts}
    if len(units) == 1:
        metric, margin = units.pop()
        return [1.0] * len(verdicts), f"difference in {metric} (positive = as claimed)", margin
    return [1 / v.margin for v in verdicts], "difference / the claim's margin", 1.0


def plot_forest(verdicts: list[Verdict], path: Path) -> bool:
    """The forest plot of the claims; False (no file) if none has a difference."""
    drawn = lambda v: v.comparison is not None and math.isfinite(v.lo) and math.isfinite(v.hi)  # noqa: E731
    if not any(map(drawn, verdicts)):
        return False
    rows = list(verdicts)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale, xlabel, band = _scale([v for v in rows if drawn(v)])
    factors = iter(scale)
    fig, ax = plt.subplots(figsize=(9, 1.6 + 0.7 * len(rows)))
    y = np.arange(len(rows))[::-1]
    ax.axvspan(-band, band, color="tab:blue", alpha=0.12, label="±margin (no effect)")
    ax.axvline(0, color="black", lw=1)
    lim = band * 1.5
    for yi, v in zip(y, rows, strict=True):
        color = COLORS.get(v.verdict, "tab:gray")
        ax.annotate(
            v.label, (1.01, yi), xycoords=("axes fraction", "data"), va="center", fontsize=8,
            color=color,
        )  # fmt: skip
        if not drawn(v):
            why = (
                textwrap.shorten(f"not compared: {v.reason.rstrip('.')}", 70)
                if v.comparison is None
                else "no size: every seed had a failed or censored arm (signs only)"
            )
            ax.annotate(why, (0.5, yi), xycoords=("axes fraction", "data"), ha="center",
                        va="center", fontsize=8, color="tab:gray", style="italic",
                        bbox={"facecolor": "white", "edgecolor": "none"})  # fmt: skip
            continue
        f = next(factors)
        lim = max(lim, abs(v.lo * f), abs(v.hi * f))
        ax.plot([v.lo * f, v.hi * f], [yi, yi], color=color, lw=4, solid_capstyle="butt")
        ax.plot([v.comparison.mean * f], [yi], "o", color=color)
    labels = [textwrap.shorten(v.claim.get("text") or "(claim)", 48) for v in rows]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_ylim(-0.8, len(rows) - 0.2)
    ax.annotate(
        "as claimed →", (1.0, 1.01), xycoords="axes fraction", ha="right", va="bottom", fontsize=8
    )
    ax.annotate(
        "← the other way", (0.0, 1.01), xycoords="axes fraction", ha="left", va="bottom", fontsize=8
    )
    ax.set_xlim(-1.1 * lim, 1.1 * lim)
    ax.set_xlabel(xlabel)
    ax.set_title(
        "Claims: mean difference and 95% t-interval; the verdict is the exact test's", pad=16
    )
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize="small", loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def write_forest(out: Path, sweep: Sweep, verdicts: list[Verdict] | None = None) -> bool:
    """forest.png of the claims' verdicts (the report's: a study's at its last look; else judged
    here at a single look); False if no claim has a difference."""
    return plot_forest(judge_all(sweep) if verdicts is None else verdicts, out / FOREST)
