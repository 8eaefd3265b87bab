"""Ablation report of a sweep: `python -m ablate.report SWEEP_DIR` writes SWEEP_DIR/report/.

Pipeline: load every run's summary.json (and the sweep plan in multirun.yaml) -> group runs into
cells (values of the swept keys other than seed) -> statistics -> tables, plots, claim verdicts ->
results.csv, summary.md and PNG plots. Works on partial sweeps: missing, failed, diverged, still
running and unreadable runs are reported, never fatal.

Modules: runs (one summary.json -> Run), plan (multirun.yaml -> Plan), stats (t-quantiles,
mean ± CI, steps_to_target, samples), sweep (runs -> factors, levels, cells), claims (verdicts),
tables (table entries, results.csv), markdown (summary.md), plots (PNGs), cli (build_report, main).
"""

from ablate.report.claims import Verdict, judge
from ablate.report.cli import build_report, main
from ablate.report.markdown import (
    MAX_LISTED,
    STATUS_ORDER,
    fmt_verdict,
    missing_combos,
    pivot,
    render_summary,
    section_cells,
    section_claims,
    section_marginals,
    section_pivots,
    section_plots,
    section_status,
    section_what,
    status_lists,
)
from ablate.report.plan import Plan, load_plan, sweep_values
from ablate.report.plots import (
    CURVES,
    mean_curve,
    plot_bars,
    plot_curves,
    plot_landscape,
    write_plots,
)
from ablate.report.runs import (
    REPORT_DIRNAME,
    STEPS,
    TARGET_METRIC,
    Run,
    fallback_overrides,
    find_summaries,
    load_run,
    parse_overrides,
)
from ablate.report.stats import Stat, mean_ci, sample, step_budget, steps_to_target, t975
from ablate.report.sweep import (
    DEFAULT_VALUE,
    ReportError,
    Sweep,
    factor_value,
    load_sweep,
    order_levels,
    report_block,
    swept_factors,
)
from ablate.report.tables import (
    CSV_METRICS,
    STAT_METRICS,
    csv_row,
    fmt_metric,
    fmt_stat,
    fmt_steps,
    md_table,
    write_csv,
)

__all__ = [
    "REPORT_DIRNAME",
    "STEPS",
    "TARGET_METRIC",
    "parse_overrides",
    "Run",
    "find_summaries",
    "fallback_overrides",
    "load_run",
    "Plan",
    "sweep_values",
    "load_plan",
    "t975",
    "Stat",
    "mean_ci",
    "steps_to_target",
    "step_budget",
    "sample",
    "DEFAULT_VALUE",
    "ReportError",
    "Sweep",
    "swept_factors",
    "factor_value",
    "order_levels",
    "report_block",
    "load_sweep",
    "Verdict",
    "judge",
    "CSV_METRICS",
    "STAT_METRICS",
    "fmt_stat",
    "fmt_steps",
    "fmt_metric",
    "md_table",
    "csv_row",
    "write_csv",
    "STATUS_ORDER",
    "MAX_LISTED",
    "section_what",
    "missing_combos",
    "section_status",
    "status_lists",
    "section_cells",
    "section_marginals",
    "pivot",
    "section_pivots",
    "fmt_verdict",
    "section_claims",
    "section_plots",
    "render_summary",
    "CURVES",
    "mean_curve",
    "plot_curves",
    "plot_bars",
    "plot_landscape",
    "write_plots",
    "build_report",
    "main",
]
