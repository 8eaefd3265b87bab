"""Judging: statistics (stats), the t-tests, Holm and the four outcomes (verdicts), alpha spending
over sequential looks (sequential), a preset's claims -> verdicts (claims), and a sweep judged at
its study's last look (sweep).

Reads the loading layer only; never imports render/.
"""

from ablate.report.judge.claims import (
    higher_is_better,
    interaction,
    judge,
    judge_all,
    same_value,
)
from ablate.report.judge.sequential import boundaries, describe, look_alpha, spent
from ablate.report.judge.stats import (
    Stat,
    counts,
    mean_ci,
    reached_target,
    sample,
    steps_or_budget,
    t975,
    t_quantile,
)
from ablate.report.judge.sweep import judge_sweep
from ablate.report.judge.verdicts import ALPHA, Comparison, Verdict

__all__ = [
    "ALPHA", "Comparison", "Stat", "Verdict", "boundaries", "counts", "describe",
    "higher_is_better", "interaction", "judge", "judge_all", "judge_sweep", "look_alpha",
    "mean_ci", "reached_target", "same_value", "sample", "spent", "steps_or_budget", "t975",
    "t_quantile",
]  # fmt: skip
