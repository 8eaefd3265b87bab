"""Entry points: build_report() writes SWEEP_DIR/report/; main() is the command line.

A sweep run in rounds by `python -m ablate.study` holds a study.json beside multirun.yaml. Each
round's multirun rewrites multirun.yaml with that round's cells and seeds only, so the report then
takes its plan (the runs meant to exist) from study.json: every round's cells at that round's seeds.
It also judges the claims at the study's last sequential look and adds a "Sequential study" section.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ablate.report.claims import judge_all
from ablate.report.markdown import render_summary
from ablate.report.plan import Plan
from ablate.report.plots import write_plots
from ablate.report.runs import REPORT_DIRNAME
from ablate.report.sweep import ReportError, Sweep, load_sweep, order_levels
from ablate.report.tables import write_csv
from ablate.report.verdicts import Verdict

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


def _use_study_plan(sweep: Sweep, plan: StudyPlan) -> None:
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


def section_study(study: dict[str, Any], verdicts: list[Verdict]) -> str:
    """The rounds of the study: seeds added where, claims decided at each look, why it stopped."""
    K, cap, add = study.get("looks"), study.get("max_seeds"), study.get("add")
    rows = ["| look | seeds per cell | cells run | new runs | decided | undecided |"]
    rows.append("|---|---|---|---|---|---|")
    decided_at: dict[str, int] = {}
    for rnd in study["rounds"]:
        seeds = rnd.get("seeds", [])
        got = rnd.get("verdicts")
        counts = ("—", "—") if got is None else (rnd.get("decided", "—"), rnd.get("undecided", "—"))
        rows.append(
            f"| {rnd['look']} of {K} | {len(seeds)} "
            f"({_span(seeds)}) | {len(rnd.get('cells', []))} | {rnd.get('new_runs', '—')} "
            f"| {counts[0]} | {counts[1]} |"
        )
        for v in got or []:
            if v.get("verdict") != "inconclusive":
                decided_at.setdefault(str(v.get("text")), int(rnd["look"]))
            else:
                decided_at.pop(str(v.get("text")), None)
    per_claim = ["| claim | verdict | seeds used | decided at look |", "|---|---|---|---|"]
    for v in verdicts:
        text = str(v.claim.get("text") or "(claim without text)")
        c = v.comparison
        used = (
            "—" if c is None else str(c.n) if c.pairing == "paired" else "+".join(map(str, c.sizes))
        )
        per_claim.append(f"| {text} | {v.label} | {used} | {decided_at.get(text, '—')} |")
    stopped = study.get("stopped") or "not yet (the study is still running, or was stopped)"
    return (
        "## Sequential study\n\n"
        f"Run in rounds by `python -m ablate.study`: round 1 runs every cell at the preset's seeds; "
        f"each later round adds {add} seed{'s' * (add != 1)} only to the cells that the still-undecided claims "
        f"compare, up to {cap} seeds per cell. Every round is a look, judged with Pocock "
        f"(Lan-DeMets) alpha spending over at most {K} looks, at the planned seeds per look as "
        f"information fractions. Stopped: {stopped}.\n\n" + "\n".join(rows) + "\n\n"
        "Seeds used per claim (pairs at the last look):\n\n" + "\n".join(per_claim) + "\n"
    )


def _span(seeds: list[Any]) -> str:
    if not seeds:
        return "none"
    nums = [int(s) for s in seeds if str(s).lstrip("-").isdigit()]
    if len(nums) == len(seeds) and nums == list(range(nums[0], nums[0] + len(nums))):
        return f"seeds {nums[0]}–{nums[-1]}" if len(nums) > 1 else f"seed {nums[0]}"
    return "seeds " + ", ".join(map(str, seeds))


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
        _use_study_plan(sweep, study_plan(study))
        (k, K), planned = study_looks(study)
        looks = looks or (k, K)
        if fractions is None and planned and len(planned) == looks[1]:
            fractions = planned
    return sweep, study, judge_all(sweep, looks=looks, spending=spending, fractions=fractions)


def build_report(
    sweep_dir: str | Path,
    looks: tuple[int, int] | None = None,
    spending: str = "pocock",
    fractions: tuple[float, ...] | None = None,
) -> Path:
    """Write results.csv, summary.md and the plots into <sweep_dir>/report/; returns that folder."""
    sweep, study, verdicts = judge_sweep(sweep_dir, looks, spending, fractions)
    out = sweep.root / REPORT_DIRNAME
    out.mkdir(exist_ok=True)
    write_csv(out / "results.csv", sweep)
    plots = write_plots(out, sweep, verdicts)  # the forest plot shows the claims table's verdicts
    text = render_summary(sweep, verdicts, plots)
    if study is not None:  # right after the Claims section
        head, sep, tail = text.partition("\n\n## Status")
        text = f"{head}\n\n{section_study(study, verdicts).strip()}{sep}{tail}"
    (out / "summary.md").write_text(text if text.endswith("\n") else text + "\n", encoding="utf-8")
    return out


def main(argv: list[str] | None = None) -> int:
    """`python -m ablate.report SWEEP_DIR [--looks k K]`: 0 on success, 2 if nothing to report."""
    parser = argparse.ArgumentParser(
        prog="python -m ablate.report",
        description="Summarize a Hydra sweep of ablate.train runs into SWEEP_DIR/report/.",
    )
    parser.add_argument("sweep_dir", type=Path, help="the sweep directory (holds one dir per run)")
    parser.add_argument(
        "--looks",
        nargs=2,
        type=int,
        metavar=("k", "K"),
        help="judge the claims at sequential look k of K planned (Pocock alpha spending); "
        "default: a study's last look (study.json), else a single look at 0.05",
    )
    args = parser.parse_args(argv)
    if args.looks and not 1 <= args.looks[0] <= args.looks[1]:
        parser.error(f"--looks {args.looks[0]} {args.looks[1]}: need 1 <= k <= K")
    # Warnings (e.g. a skipped, unreadable summary.json) go to stderr in the style of the errors.
    logging.basicConfig(level=logging.WARNING, format="ablate.report: %(levelname)s: %(message)s")
    try:
        out = build_report(args.sweep_dir, tuple(args.looks) if args.looks else None)
    except ReportError as e:
        print(f"ablate.report: error: {e}", file=sys.stderr)
        return 2
    print(f"report written to {out} (summary.md, results.csv, plots)")
    return 0
