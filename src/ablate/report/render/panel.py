"""The open choices in summary.md and in two PNGs: the panel (claims x setups) as small multiples,
and the primary setup's learning curves per arm (the paper's figure, redrawn)."""

from __future__ import annotations

import math
import re
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np

from ablate.overrides import value_text
from ablate.report.judge.panel import Panel
from ablate.report.judge.spec import side_runs
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.sweep import Sweep
from ablate.report.render.claims_section import fmt_difference
from ablate.report.render.figures import pyplot, save_figure
from ablate.report.render.forest import COLORS
from ablate.report.render.plots import plot_curves
from ablate.report.render.tables import md_table

PANEL, PRIMARY_CURVES = "panel.png", "curves_primary_val_acc.png"
PANEL_COLORS = {**COLORS, "not built": "tab:purple"}


def _cell(v: Verdict) -> str:
    """A panel cell: the verdict, and the difference with its interval when there is one."""
    if v.verdict == "not built":
        return f"**not built**: {textwrap.shorten(v.reason, 80)}"
    diff = fmt_difference(v)
    return f"**{v.verdict}**" + (f" {diff}" if diff != "—" else "")


def section_panel(sweep: Sweep, panel: Panel | None, plots: list[str]) -> str:
    """ "Across the open choices": the grid, how it is judged, the table and one scope line per claim."""
    if sweep.problems:
        return "## Across the open choices\n\n" + "".join(f"- {p}\n" for p in sweep.problems)
    if panel is None:
        return ""
    grid = "; ".join(
        f"`{k}` ∈ {{{', '.join(sweep.levels[k])}}} (primary {value_text(panel.setups[0][k])})"
        for k in panel.setups[0]
    )
    status = (
        "**confirmatory** (declared by the preset)"
        if panel.mode == "confirmatory"
        else "**exploratory**: the headline verdicts above are the primary setup's; the other "
        "columns are not corrected across setups and decide nothing on their own"
    )
    text = (
        "## Across the open choices\n\n"
        f"What the paper leaves open, swept: {grid}; {len(panel.setups)} setups. "
        f"The panel is {status} ({panel.method}).\n\n"
    )
    if PANEL in plots:
        text += f"![{PANEL}]({PANEL})\n\n"
    texts = [row[0].claim.get("text") or "(claim)" for row in panel.cells]
    columns = [f"({i + 1}) {textwrap.shorten(t, 40)}" for i, t in enumerate(texts)]
    rows = [[f"**{lb}**" if j == 0 else lb, *(_cell(r[j]) for r in panel.cells)]
            for j, lb in enumerate(panel.labels)]  # fmt: skip
    text += md_table(["setup", *columns], rows) + "\n\n"
    for i, t in enumerate(texts):
        text += f"- ({i + 1}) “{t}”: {panel.scope(i)}.\n"
    if PRIMARY_CURVES in plots:
        text += f"\n![{PRIMARY_CURVES}]({PRIMARY_CURVES})\n"
    return text


def _short(label: str) -> str:
    """A setup's label for a tick: each key by its last part (optim.momentum -> momentum), wrapped."""
    parts = [re.sub(r"^[\w.]*\.(\w+=)", r"\1", part) for part in label.split(", ")]
    return textwrap.fill(", ".join(parts), 30)


def plot_panel(panel: Panel, path: Path) -> bool:
    """One small plot per claim: each setup's difference and 95% interval, coloured by verdict."""
    if not panel.cells:
        return False
    plt = pyplot()
    n = len(panel.cells)
    cols = min(n, 3)
    rows = math.ceil(n / cols)
    height = 1.2 + 0.45 * len(panel.setups)
    legend_in = 0.45  # inches below the plots for the colour key
    size = (4.6 * cols, height * rows + legend_in)
    fig, axes = plt.subplots(rows, cols, figsize=size, squeeze=False)
    y = np.arange(len(panel.setups))[::-1]
    for i, ax in enumerate(axes.flat):
        if i >= n:
            ax.axis("off")
            continue
        row = panel.cells[i]
        margin = row[0].margin if math.isfinite(row[0].margin) else 0.0
        ax.axvspan(-margin, margin, color="tab:blue", alpha=0.12)
        ax.axvline(0, color="black", lw=1)
        for yi, v in zip(y, row, strict=True):
            color = PANEL_COLORS.get(v.verdict, "tab:gray")
            c = v.comparison
            if v.verdict == "not built" or c is None or not math.isfinite(v.lo):
                what = (
                    v.verdict
                    if c is None or v.verdict == "not built"
                    else f"{v.verdict}: signs only"
                )
                ax.annotate(what, (0.5, yi), xycoords=("axes fraction", "data"),
                            ha="center", va="center", fontsize=7, color=color, style="italic")  # fmt: skip
                continue
            ax.plot([v.lo, v.hi], [yi, yi], color=color, lw=4, solid_capstyle="butt")
            ax.plot([c.mean], [yi], "o", color=color, ms=4)
        ax.set_yticks(y, [_short(lb) for lb in panel.labels], fontsize=7)
        ax.set_ylim(-0.7, len(panel.setups) - 0.3)
        text = row[0].claim.get("text") or "(claim)"
        held = panel.count(i)
        ax.set_title(
            f"{textwrap.fill(textwrap.shorten(text, 80), 42)}\nholds in {held}", fontsize=8
        )
        ax.set_xlabel(f"{row[0].claim.get('metric')}, + = as claimed", fontsize=7)
        ax.tick_params(axis="x", labelsize=7)
        ax.grid(axis="x", alpha=0.3)
    handles = [plt.Line2D([], [], color=c, lw=4, label=k) for k, c in PANEL_COLORS.items()]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=7, frameon=False)
    fig.suptitle(f"Every claim at every setup ({panel.mode}; shaded: ±margin)", fontsize=9)
    save_figure(fig, path, rect=(0, legend_in / size[1], 1, 1))
    return True


def plot_primary_curves(sweep: Sweep, panel: Panel, path: Path) -> bool:
    """val/acc per arm at the primary setup (the factors other than the open ones as cells)."""
    runs = side_runs(sweep.runs, panel.setups[0])
    factors = [f for f in sweep.factors if f not in panel.setups[0]]
    primary = replace(sweep, runs=runs, factors=factors)
    setup = ", ".join(f"{k}={v}" for k, v in panel.setups[0].items())
    title = textwrap.fill(f"val/acc at the primary setup ({setup})", 80)
    return plot_curves(primary, "val/acc", path, title=title)


def write_panel_plots(out: Path, sweep: Sweep, panel: Panel | None) -> list[str]:
    """panel.png and the primary setup's curves, when the sweep declares open choices."""
    for old in (out / PANEL, out / PRIMARY_CURVES):
        old.unlink(missing_ok=True)
    if panel is None:
        return []
    written = [PANEL] if plot_panel(panel, out / PANEL) else []
    if plot_primary_curves(sweep, panel, out / PRIMARY_CURVES):
        written.append(PRIMARY_CURVES)
    return written
