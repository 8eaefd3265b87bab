"""A study's plan: what `python -m ablate.study` recorded in the sweep directory's study.json.

Each round's multirun rewrites multirun.yaml with that round's cells and seeds only, so the report
takes a study's plan (the runs meant to exist) from study.json instead: every round's cells at that
round's seeds. study.json also says at which sequential look the claims were last judged.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.report.load.plan import Plan
from ablate.report.load.sweep import Sweep, order_levels

STUDY_FILE = "study.json"  # written by ablate.study into the sweep directory


@dataclass
class StudyPlan(Plan):
    """A study's plan: a union of per-round grids, so the planned runs are listed, not a product."""

    runs: list[dict[str, str]] = field(default_factory=list)

    def expected_runs(self) -> int | None:
        """Every run some round planned."""
        return len(self.runs)

    def combos(self) -> list[dict[str, str]]:
        """The planned runs, keyed like `values` (factors, then seed)."""
        return self.runs


def load_study(root: Path) -> dict[str, Any] | None:
    """<root>/study.json, or None if there is none (or it cannot be read)."""
    try:
        study = json.loads((root / STUDY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return study if isinstance(study, dict) and isinstance(study.get("rounds"), list) else None


def study_plan(study: dict[str, Any]) -> StudyPlan:
    """The runs the study's rounds planned: each round's cells at that round's seeds."""
    factors: dict[str, list[str]] = {k: list(v) for k, v in study.get("factors", {}).items()}
    seeds: list[str] = []
    runs: dict[tuple[str, ...], dict[str, str]] = {}
    for rnd in study["rounds"]:
        round_seeds = [str(s) for s in rnd.get("seeds", [])]
        seeds += [s for s in round_seeds if s not in seeds]
        for cell in rnd.get("cells", []):
            for seed in round_seeds:
                run = {**{k: str(cell[k]) for k in factors}, "seed": seed}
                runs.setdefault(tuple(run.values()), run)
    return StudyPlan({**factors, "seed": seeds}, {}, list(runs.values()))


def use_study_plan(sweep: Sweep, plan: StudyPlan) -> None:
    """Put the study's plan in place of the last round's multirun.yaml (levels in the study's order)."""
    sweep.plan = plan
    keys = list(plan.values)
    sweep.factors.sort(key=lambda f: keys.index(f) if f in keys else len(keys))
    sweep.levels = {f: order_levels(sweep.levels[f], plan.values.get(f, [])) for f in sweep.factors}


def study_looks(study: dict[str, Any]) -> tuple[tuple[int, int], tuple[float, ...] | None]:
    """((k, K), information fractions) of the study's last judged look."""
    judged = [r for r in study["rounds"] if "verdicts" in r] or study["rounds"]
    k, K = int(judged[-1]["look"]), int(study.get("looks", len(study["rounds"])))
    fractions = study.get("fractions")
    return (k, K), tuple(float(f) for f in fractions) if fractions else None
