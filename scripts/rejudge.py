"""Judge every landed study again with today's verdict engine, from its stored results.csv.

    .venv/bin/python scripts/rejudge.py              (prints a markdown table: old and new verdicts)
    .venv/bin/python scripts/rejudge.py --write      (also writes docs/results/rejudged.md)
    .venv/bin/python scripts/rejudge.py --november   (the November studies, as the old rule did)

The runs are the landed ones (docs/results/<preset>/results.csv); only the statistics are new.
A study is judged at the look its report was judged at ("look k of K" in its summary.md), with
the seeds of every look as information fractions; which claims an earlier look had decided is not
stored, so nothing is carried. Claims on metrics results.csv does not hold (the landscape probes)
are listed as not judgeable.
"""

from __future__ import annotations

import argparse
import csv
import math
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.overrides import as_float
from ablate.report.judge import judge_all
from ablate.report.load import STEPS, Run, Sweep, order_levels, step_budget
from ablate.report.render import (
    OUTCOME_COLUMNS,
    RUN_COLUMNS,
    fmt_difference,
    fmt_needed,
    fmt_p,
    fmt_signs,
    fmt_used,
)

REPO = Path(__file__).resolve().parents[1]

NOVEMBER = (  # the quick studies run in November 2026 under the old rule
    "aug_data_size_quick", "bn_lr_quick", "bn_noisy_quick", "gn_batch_size_quick",
    "init_depth_quick", "landscape_quick", "norm_compare_quick", "reg_gap_quick",
)  # fmt: skip


RESULTS = REPO / "docs" / "results"
NOVEMBER_DIR = RESULTS / "history" / "2026-11"


def folder(preset: str, november: bool = False) -> Path:
    """Where a preset's report is (the November one: docs/results/history/2026-11/ once re-run)."""
    moved = NOVEMBER_DIR / preset
    return moved if november and moved.exists() else RESULTS / preset


def landed() -> list[str]:
    """The presets with a report in docs/results/ (not its history)."""
    return sorted(p.parent.name for p in RESULTS.glob("*/results.csv"))


def look_of(preset: str, november: bool = False) -> tuple[int, int] | None:
    """(k, K) of the look the landed report was judged at; None for a single look."""
    found = re.search(
        r"at look (\d+) of (\d+)", (folder(preset, november) / "summary.md").read_text()
    )
    return (int(found[1]), int(found[2])) if found else None


NOT_FACTORS = {*RUN_COLUMNS, *OUTCOME_COLUMNS}


def load(preset: str, november: bool = False) -> Sweep:
    """The landed runs of a preset as a Sweep, with the claims its config declares."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}"])
    block = OmegaConf.to_container(cfg.report) if "report" in cfg else {}
    rows = list(csv.DictReader((folder(preset, november) / "results.csv").open()))
    metrics = [k for k in rows[0] if "/" in k or k == STEPS]
    factors = [k for k in rows[0] if k not in NOT_FACTORS and k not in metrics]
    runs = []
    for row in rows:
        run = Run(
            row["run"], row["status"], seed=row["seed"], overrides={f: row[f] for f in factors}
        )
        run.metrics = {m: as_float(row[m]) for m in metrics if m != STEPS}
        run.steps, run.factors = as_float(row["steps"]), {f: row[f] for f in factors}
        steps = as_float(row.get(STEPS))  # empty: no target; "not reached": never reached
        run.steps_to_target = steps if math.isfinite(steps) else None
        runs.append(run)
    levels = {f: order_levels({r.factors[f] for r in runs}, []) for f in factors}
    target = block.get("target_acc")
    claims = [c for c in block.get("claims") or [] if isinstance(c, dict)]
    interval = as_float(OmegaConf.select(cfg, "trainer.val_check_interval"))
    interval = (
        interval if math.isfinite(interval) and interval > 1 else math.nan
    )  # steps, not a fraction
    return Sweep(REPO, runs, factors, levels, None, target, claims, step_budget(runs), interval)


def old_verdicts(preset: str, november: bool = False) -> dict[str, str]:
    """claim text -> the verdict the landed summary.md printed."""
    text = (folder(preset, november) / "summary.md").read_text()
    return {m[1]: m[0] for m in re.findall(r"^- \*\*([^*]+)\*\*: “([^”]+)”", text, re.M)}


def _old(old: dict[str, str], text: str) -> str:
    """The old verdict of a claim (old reports cut a claim's text at its first comma)."""
    return next((v for k, v in old.items() if text.startswith(k)), "-")


def verdicts(preset: str, november: bool = False) -> tuple[list, list[dict]]:
    """The preset's re-judged verdicts, and its claims results.csv cannot judge."""
    sweep, looks = load(preset, november), look_of(preset, november)
    judgeable = [
        c for c in sweep.claims
        if c["metric"] == STEPS or any(c["metric"] in r.metrics for r in sweep.runs)
    ]  # fmt: skip
    seeds = sorted({int(r.seed) for r in sweep.runs if str(r.seed).isdigit()})
    fractions = None
    if looks is not None:  # the study's planned seeds per look: 3, then +2, up to its cap
        fractions = tuple(float(min(len(seeds), 3 + 2 * j)) for j in range(looks[1]))
        fractions = fractions if len(set(fractions)) == looks[1] else None
    rest = [c for c in sweep.claims if c not in judgeable]
    return judge_all(sweep, judgeable, looks=looks, fractions=fractions), rest


def table(presets: list[str], november: bool = False) -> str:
    """One row per claim: old verdict, new verdict and the numbers behind it."""
    out = [
        "| preset | claim | old verdict | new verdict | difference [95% CI] | for/against/tied "
        "| exact p vs level | seeds needed |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for preset in presets:
        old = old_verdicts(preset, november)
        judged, rest = verdicts(preset, november)
        for c in rest:
            out.append(
                f"| {preset} | {c['text']} | {_old(old, c['text'])} | not in results.csv | | | | |"
            )
        for v in judged:
            needed = "" if v.final else fmt_needed(v)
            out.append(
                f"| {preset} | {v.claim['text']} | {_old(old, v.claim['text'])} | **{v.label}** "
                f"| {fmt_difference(v)} | {fmt_signs(v.comparison)} | {fmt_p(v)} | {needed} |"
            )
    return "\n".join(out)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true", help="write docs/results/rejudged.md")
    p.add_argument("--november", action="store_true", help="the November studies")
    p.add_argument("--scoreboard", action="store_true",
                   help="rewrite the verdict, difference and seeds of docs/results/README.md's scoreboard")  # fmt: skip
    args = p.parse_args()
    text = table(list(NOVEMBER) if args.november else landed(), args.november)
    print(text)
    if args.write:
        (RESULTS / "rejudged.md").write_text(HEADER + text + "\n")
    if args.scoreboard:
        rewrite_scoreboard(RESULTS / "README.md")


def rewrite_scoreboard(path: Path) -> None:
    """The scoreboard's verdict, difference and seeds columns from today's engine (other columns kept)."""
    text = path.read_text()
    judged: dict[tuple[str, str], list[str]] = {}
    for preset in landed():
        found, rest = verdicts(preset)
        for v in found:
            why = (
                ""
                if v.final
                else f" (~{fmt_needed(v)} seeds needed)"
                if fmt_needed(v) != "—"
                else ""
            )
            judged[(preset, v.claim["text"])] = [
                f"**{v.label}**{why}",
                fmt_difference(v),
                fmt_used(v),
            ]
        for c in rest:
            judged[(preset, c["text"])] = [
                "not re-judged (its metric is not in results.csv)",
                "",
                "",
            ]
    lines = []
    for line in text.splitlines():
        cells = (
            [c.strip() for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if line.startswith("| `")
            else []
        )
        key = (cells[0].strip("`"), cells[1].replace("\\|", "|")) if cells else None
        if key in judged:
            cells[3:6] = judged[key]
            line = "| " + " | ".join(cells) + " |"
        lines.append(line)
    path.write_text("\n".join(lines) + "\n")


HEADER = """# Landed studies judged again with the exact-test engine (issue 25)

Each landed study's stored runs (docs/results/<preset>/results.csv), judged by today's engine: the
seed as the unit, failures and never-reached targets as the worst outcomes, the exact sign-flip
test deciding, group-sequential Holm, equivalence in a family of its own. "old verdict" is what
the landed report said (paired t-test, budget-filled steps). Regenerate with
`.venv/bin/python scripts/rejudge.py --write`.

"""


if __name__ == "__main__":
    main()
