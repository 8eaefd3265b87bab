"""A sweep and its claims' verdicts: a study's at its last sequential look, else a single look."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ablate.report.judge.claims import judge_all
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.study import load_study, study_looks, study_plan, use_study_plan
from ablate.report.load.sweep import Sweep, load_sweep


def judge_sweep(
    sweep_dir: str | Path,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> tuple[Sweep, dict[str, Any] | None, list[Verdict]]:
    """The sweep, its study.json (or None) and its claims' verdicts (a study's: at its last look)."""
    sweep = load_sweep(sweep_dir)
    study = load_study(sweep.root)
    if study is not None:
        use_study_plan(sweep, study_plan(study))
        (k, K), planned = study_looks(study)
        looks = looks or (k, K)
        if fractions is None and planned and len(planned) == looks[1]:
            fractions = planned
    return sweep, study, judge_all(sweep, looks=looks, spending=spending, fractions=fractions)
