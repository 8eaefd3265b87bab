"""Judging: per-seed outcomes (pairs), exact sign-flip tests (exact), the outcomes and effect sizes
(verdicts), group-sequential Holm (family) with alpha spending over looks (sequential), a preset's
claims -> verdicts (claims), a sweep judged look by look as its study ran (sweep), and statistics
for tables and plots (stats).

Reads the loading layer only; never imports render/.
"""

from ablate.report.judge.claims import judge, judge_all
from ablate.report.judge.exact import pairs_for
from ablate.report.judge.sequential import boundaries, describe, look_alpha, spent
from ablate.report.judge.spec import METRIC_FACTOR, higher_is_better, interaction, same_value
from ablate.report.judge.stats import (
    Stat,
    counts,
    mean_ci,
    reached_target,
    sample,
    t975,
    t_quantile,
)
from ablate.report.judge.sweep import carry, judge_study, judge_sweep
from ablate.report.judge.verdicts import ALPHA, Comparison, Verdict

__all__ = [
    "METRIC_FACTOR",
    "ALPHA", "Comparison", "Stat", "Verdict", "boundaries", "carry", "counts", "describe",
    "higher_is_better", "interaction", "judge", "judge_all", "judge_study", "judge_sweep", "look_alpha",
    "mean_ci", "pairs_for", "reached_target", "same_value", "sample", "spent", "t975",
    "t_quantile",
]  # fmt: skip
