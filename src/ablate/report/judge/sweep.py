"""A sweep and its claims' verdicts: a study's replayed look by look, else a single look; the panel
of its open choices at the same look (judge_report)."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ablate.overrides import canonical, value_text
from ablate.report.judge.claims import judge_all
from ablate.report.judge.panel import Panel, judge_panel
from ablate.report.judge.verdicts import Verdict
from ablate.report.load.runs import Run
from ablate.report.load.study import load_study, study_looks, study_plan, use_study_plan
from ablate.report.load.sweep import Sweep, load_sweep

Key = tuple[tuple[str, ...], str]


def run_key(run: Run, factors: list[str]) -> Key:
    """(the run's value of each study factor, its seed), canonical as the study plans them."""
    return tuple(canonical(value_text(run.lookup(k))) for k in factors), value_text(run.seed)


def carry(earlier: dict[int, Verdict], verdicts: list[Verdict]) -> dict[int, Verdict]:
    """The decisions so far: earlier ones kept, this look's new ones added (decided stays decided)."""
    new = {i: v for i, v in enumerate(verdicts) if v.decided and i not in earlier}
    return {**earlier, **new}


def planned_runs(sweep: Sweep, study: dict[str, Any], rounds: int) -> list[Run]:
    """The sweep's runs that the study's first `rounds` rounds planned."""
    factors = list(study.get("factors", {}))
    planned: set[Key] = set()
    for rnd in study["rounds"][:rounds]:
        seeds = [value_text(s) for s in rnd.get("seeds", [])]
        for cell in rnd.get("cells", []):
            values = tuple(canonical(value_text(cell[k])) for k in factors)
            planned |= {(values, s) for s in seeds}
    return [r for r in sweep.runs if run_key(r, factors) in planned]


def judge_study(
    sweep: Sweep, study: dict[str, Any], spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> list[Verdict]:  # fmt: skip
    """The verdicts at the study's last judged look, replaying every look on the runs it had."""
    (last, K), _ = study_looks(study)
    earlier: dict[int, Verdict] = {}
    verdicts: list[Verdict] = []
    for i, rnd in enumerate(study["rounds"][:last]):
        runs = planned_runs(sweep, study, i + 1)
        look = (int(rnd.get("look", len(earlier) + 1)), K)
        verdicts = judge_all(replace(sweep, runs=runs), looks=look, spending=spending,
                             fractions=fractions, earlier=earlier)  # fmt: skip
        earlier = carry(earlier, verdicts)
    return verdicts


def judge_sweep(
    sweep_dir: str | Path,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> tuple[Sweep, dict[str, Any] | None, list[Verdict]]:
    """The sweep, its study.json (or None) and its claims' verdicts (a study's: look by look)."""
    sweep = load_sweep(sweep_dir)
    study = load_study(sweep.root)
    if study is None:
        return sweep, None, judge_all(sweep, looks=looks, spending=spending, fractions=fractions)
    use_study_plan(sweep, study_plan(study))
    (k, K), planned = study_looks(study)
    if fractions is None and planned and len(planned) == K:
        fractions = planned
    if looks is not None and looks != (k, K):  # an explicit look: judged alone at it
        return sweep, study, judge_all(sweep, looks=looks, spending=spending, fractions=fractions)
    return sweep, study, judge_study(sweep, study, spending, fractions)


def judge_report(
    sweep_dir: str | Path,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> tuple[Sweep, dict[str, Any] | None, list[Verdict], Panel | None]:
    """judge_sweep, and the panel of the open choices on the same runs at the same look."""
    sweep, study, verdicts = judge_sweep(sweep_dir, looks, spending, fractions)
    if study is None or looks is not None:
        return sweep, study, verdicts, judge_panel(sweep, verdicts, looks, spending, fractions)
    (last, K), planned = study_looks(study)
    if fractions is None and planned and len(planned) == K:
        fractions = planned
    judged = replace(sweep, runs=planned_runs(sweep, study, last))
    return sweep, study, verdicts, judge_panel(judged, verdicts, (last, K), spending, fractions)
