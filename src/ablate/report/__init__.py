"""Ablation report of a sweep: `python -m ablate.report SWEEP_DIR` writes SWEEP_DIR/report/.

Pipeline: load every run's summary.json (and the sweep plan in multirun.yaml) -> group runs into
cells (values of the swept keys other than seed) -> statistics -> tables, plots, claim verdicts ->
results.csv, summary.md and PNG plots. Works on partial sweeps: missing, failed, diverged, still
running and unreadable runs are reported, never fatal.

Modules: runs (one summary.json -> Run), plan (multirun.yaml -> Plan), sweep (runs -> factors,
levels, cells), stats (mean ± CI, steps_to_target, samples), verdicts (paired/Welch comparisons,
outcomes, Holm, seeds needed), sequential (alpha spending over looks), claims (a preset's claims ->
verdicts), tables (results.csv), markdown and claims_section (summary.md), plots and forest (PNGs),
cli (build_report, main).
"""

from ablate.report.claims import Verdict, judge, judge_all
from ablate.report.cli import build_report, main
from ablate.report.sweep import ReportError, Sweep, load_sweep

__all__ = [
    "ReportError",
    "Sweep",
    "Verdict",
    "build_report",
    "judge",
    "judge_all",
    "load_sweep",
    "main",
]
