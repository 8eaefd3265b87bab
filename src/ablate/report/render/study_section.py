"""The "Sequential study" section of summary.md: the rounds, the seeds each claim used, why it stopped."""

from __future__ import annotations

from typing import Any

from ablate.report.judge.verdicts import Verdict
from ablate.report.render.claims_section import fmt_used


def section_study(study: dict[str, Any] | None, verdicts: list[Verdict]) -> str:
    """The rounds of the study: seeds added where, claims decided at each look, why it stopped."""
    if study is None:
        return ""
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
        per_claim.append(
            f"| {text} | {v.label} | {fmt_used(v)} | {v.look or decided_at.get(text, '—')} |"
        )
    stopped = study.get("stopped") or "not yet (the study is still running, or was stopped)"
    return (
        "## Sequential study\n\n"
        f"Run in rounds by `python -m ablate.study`: round 1 runs every cell at the preset's seeds; "
        f"each later round adds {add} seed{'s' * (add != 1)} only to the cells that the still-undecided claims "
        f"compare, up to {cap} seeds per cell. Every round is a look, judged with Pocock "
        f"(Lan-DeMets) alpha spending over at most {K} looks, at the planned seeds per look as "
        "information fractions, and group-sequential Holm over the claims; a claim decided at a "
        f"look stays decided. Stopped: {stopped}.\n\n" + "\n".join(rows) + "\n\n"
        "Seeds used per claim (pairs at the last look):\n\n" + "\n".join(per_claim) + "\n"
    )


def _span(seeds: list[Any]) -> str:
    if not seeds:
        return "none"
    nums = [int(s) for s in seeds if str(s).lstrip("-").isdigit()]
    if len(nums) == len(seeds) and nums == list(range(nums[0], nums[0] + len(nums))):
        return f"seeds {nums[0]}–{nums[-1]}" if len(nums) > 1 else f"seed {nums[0]}"
    return "seeds " + ", ".join(map(str, seeds))
