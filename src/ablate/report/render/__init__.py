"""Rendering: results.csv and table entries (tables), summary.md (markdown, with claims_section
and study_section), the PNGs (plots, forest, cost; figures holds what they share).

The top layer: reads judge/ and load/; nothing below imports it.
"""

from ablate.report.render.claims_section import (
    fmt_difference,
    fmt_needed,
    fmt_p,
    fmt_signs,
    fmt_used,
    fmt_verdict,
    section_claims,
)
from ablate.report.render.cost import short_commit
from ablate.report.render.markdown import render_summary
from ablate.report.render.plots import write_plots
from ablate.report.render.tables import (
    OUTCOME_COLUMNS,
    RUN_COLUMNS,
    fmt_stat,
    md_table,
    write_csv,
)

__all__ = [
    "OUTCOME_COLUMNS", "RUN_COLUMNS", "fmt_difference", "fmt_needed", "fmt_p", "fmt_signs", "fmt_stat", "fmt_used",
    "fmt_verdict", "md_table", "render_summary", "section_claims", "short_commit", "write_csv", "write_plots",
]  # fmt: skip
