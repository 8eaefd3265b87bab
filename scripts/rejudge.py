"""Judge the landed quick studies again with today's verdict rule, from their results.csv.

    .venv/bin/python scripts/rejudge.py            (prints a markdown table: old and new verdicts)

The runs are the November ones (docs/results/<preset>/ or, for presets re-run since, docs/results/history/2026-11/<preset>/); only the statistics are new.
Claims on metrics results.csv does not hold (the landscape probes) are listed as not judgeable.
"""

from __future__ import annotations

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
from ablate.report.render import OUTCOME_COLUMNS, RUN_COLUMNS, fmt_difference

REPO = Path(__file__).resolve().parents[1]

NOVEMBER = (  # the quick studies run in November 2026 under the old rule
    "aug_data_size_quick", "bn_lr_quick", "bn_noisy_quick", "gn_batch_size_quick",
    "init_depth_quick", "landscape_quick", "norm_compare_quick", "reg_gap_quick",
)  # fmt: skip


def folder(preset: str) -> Path:
    """Where the November report of a preset is: docs/results/history/2026-11/ once re-run."""
    moved = REPO / "docs" / "results" / "history" / "2026-11" / preset
    return moved if moved.exists() else REPO / "docs" / "results" / preset


NOT_FACTORS = {*RUN_COLUMNS, *OUTCOME_COLUMNS}


def load(preset: str) -> Sweep:
    """The landed runs of a preset as a Sweep, with the claims its config declares."""
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose(config_name="train", overrides=[f"experiment={preset}"])
    block = OmegaConf.to_container(cfg.report) if "report" in cfg else {}
    rows = list(csv.DictReader((folder(preset) / "results.csv").open()))
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
    return Sweep(REPO, runs, factors, levels, None, target, claims, step_budget(runs))


def old_verdicts(preset: str) -> dict[str, str]:
    """claim text -> the verdict the landed summary.md printed."""
    text = (folder(preset) / "summary.md").read_text()
    return {m[1]: m[0] for m in re.findall(r"^- \*\*([^*]+)\*\*: “([^”]+)”", text, re.M)}


def _old(old: dict[str, str], text: str) -> str:
    """The old verdict of a claim (old reports cut a claim's text at its first comma)."""
    return next((v for k, v in old.items() if text.startswith(k)), "-")


def main() -> None:
    print("| preset | claim | old verdict | new verdict | difference [CI] | wins | seeds needed |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for preset in NOVEMBER:
        sweep, old = load(preset), old_verdicts(preset)
        judgeable = [
            c
            for c in sweep.claims
            if c["metric"] == STEPS or any(c["metric"] in r.metrics for r in sweep.runs)
        ]
        for c in sweep.claims:
            if c not in judgeable:
                print(
                    f"| {preset} | {c['text']} | {_old(old, c['text'])} | not in results.csv | | | |"
                )
        for v in judge_all(sweep, judgeable):
            cmp = v.comparison
            wins = f"{cmp.wins}/{cmp.n}" if cmp is not None and cmp.pairing == "paired" else ""
            needed = (
                ""
                if v.decided or math.isnan(v.needed)
                else (">1000" if math.isinf(v.needed) else f"{v.needed:.0f}")
            )
            print(
                f"| {preset} | {v.claim['text']} | {_old(old, v.claim['text'])} | **{v.label}** "
                f"| {fmt_difference(v)} | {wins} | {needed} |"
            )


if __name__ == "__main__":
    main()
