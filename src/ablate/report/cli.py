"""Entry points: build_report() writes SWEEP_DIR/report/; main() is the command line."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ablate.report.claims import judge
from ablate.report.markdown import render_summary
from ablate.report.plots import write_plots
from ablate.report.runs import REPORT_DIRNAME
from ablate.report.sweep import ReportError, load_sweep
from ablate.report.tables import write_csv


def build_report(sweep_dir: str | Path) -> Path:
    """Write results.csv, summary.md and the plots into <sweep_dir>/report/; returns that folder."""
    sweep = load_sweep(sweep_dir)
    out = sweep.root / REPORT_DIRNAME
    out.mkdir(exist_ok=True)
    write_csv(out / "results.csv", sweep)
    verdicts = [judge(c, sweep) for c in sweep.claims]
    plots = write_plots(out, sweep)
    (out / "summary.md").write_text(render_summary(sweep, verdicts, plots), encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ablate.report SWEEP_DIR`: 0 on success, 2 if there is nothing to report."""
    parser = argparse.ArgumentParser(
        prog="python -m ablate.report",
        description="Summarize a Hydra sweep of ablate.train runs into SWEEP_DIR/report/.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds one dir per run)")
    args = parser.parse_args(argv)
    # Warnings (e.g. a skipped, unreadable summary.json) go to stderr in the style of the errors.
    logging.basicConfig(level=logging.WARNING, format="ablate.report: %(levelname)s: %(message)s")
    try:
        out = build_report(args.sweep_dir)
    except ReportError as e:
        print(f"ablate.report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {out} (summary.md, results.csv, plots)")
    return 0
