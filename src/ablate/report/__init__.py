"""Ablation report of a sweep: `python -m ablate.report SWEEP_DIR` writes SWEEP_DIR/report/.

Pipeline: load every run's summary.json (and the sweep plan in multirun.yaml, or a study's plan in
study.json) -> group runs into cells (values of the swept keys other than seed) -> statistics and
claim verdicts -> results.csv, summary.md and PNG plots. Works on partial sweeps: missing, failed,
diverged, interrupted, still running and unreadable runs are reported, never fatal.

Three layers, each importing only the ones below it:

- load/: runs (one summary.json, through ablate.run.record -> Run), plan (multirun.yaml -> Plan),
  sweep (runs -> factors, levels, cells, the step budget), study (study.json -> StudyPlan, looks);
- judge/: stats (mean ± CI, how steps_to_target is judged, samples), verdicts (paired/Welch
  comparisons, outcomes, Holm, seeds needed), sequential (alpha spending over looks), claims (a
  preset's claims -> verdicts), sweep (judge_sweep: a study's claims at its last look);
- render/: tables (results.csv, table entries), markdown, claims_section and study_section
  (summary.md), plots, forest and cost (PNGs; figures: what they share).

cli (build_report, main) sits on top. Other packages (ablate.study, scripts/) use the names below
and those the layer packages export.
"""

from ablate.report.cli import build_report, main
from ablate.report.judge import Verdict, judge, judge_all, judge_sweep
from ablate.report.load import ReportError, Sweep, load_sweep

__all__ = [
    "ReportError",
    "Sweep",
    "Verdict",
    "build_report",
    "judge",
    "judge_all",
    "judge_sweep",
    "load_sweep",
    "main",
]
