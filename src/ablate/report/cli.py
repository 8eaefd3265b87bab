"""Entry points: build_report() writes SWEEP_DIR/report/; main() is the command line.

A sweep run in rounds by `python -m ablate.study` holds a study.json beside multirun.yaml: its
claims are judged at the study's last sequential look (load.study, judge.sweep), and summary.md
gets a "Sequential study" section (render.study_section).
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

from ablate.report.judge.sweep import judge_report
from ablate.report.load.runs import REPORT_DIRNAME
from ablate.report.load.sweep import ReportError
from ablate.report.render.markdown import render_summary
from ablate.report.render.panel import write_panel_plots
from ablate.report.render.plots import write_plots
from ablate.report.render.tables import write_csv
from ablate.run.args import ArgumentParser


def build_report(
    sweep_dir: str | Path,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> Path:
    """Write results.csv, summary.md and the plots into <sweep_dir>/report/; returns that folder."""
    sweep, study, verdicts, panel = judge_report(sweep_dir, looks, spending, fractions)
    out = sweep.root / REPORT_DIRNAME
    out.mkdir(exist_ok=True)
    write_csv(out / "results.csv", sweep)
    plots = write_plots(out, sweep, verdicts)  # the forest plot shows the claims table's verdicts
    plots += write_panel_plots(out, sweep, panel)
    text = render_summary(sweep, verdicts, plots, study, panel)
    (out / "summary.md").write_text(text, encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ablate.report SWEEP_DIR [--looks k K]`: 0 on success, 2 if nothing to report."""
    parser = ArgumentParser(
        prog="python -m ablate.report",
        description="Summarize a Hydra sweep of ablate.train runs into SWEEP_DIR/report/.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds one dir per run)")
    parser.add_argument(
        "--looks",
        nargs=2,
        type=int,
        metavar=("k", "K"),
        help="judge the claims at sequential look k of K planned (Pocock alpha spending); "
        "default: a study's last look (study.json), else a single look at 0.05",
    )
    args = parser.parse_args(argv)
    if args.looks and not 1 <= args.looks[0] <= args.looks[1]:
        parser.error(f"--looks {args.looks[0]} {args.looks[1]}: need 1 <= k <= K")
    # Warnings (e.g. a skipped, unreadable summary.json) go to stderr in the style of the errors.
    logging.basicConfig(level=logging.WARNING, format="ablate.report: %(levelname)s: %(message)s")
    try:
        out = build_report(args.sweep_dir, tuple(args.looks) if args.looks else None)
    except ReportError as e:
        print(f"ablate.report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {out} (summary.md, results.csv, plots)")
    return 0
