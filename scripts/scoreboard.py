"""The scoreboard: every claim of some study sweeps with its verdict, difference, seeds and cost.

    .venv/bin/python scripts/scoreboard.py logs/experiments/bn_mlp_quick ... [--write]

Prints one markdown table: preset, claim, source (the preset header's "Source:"), verdict,
difference [CI] as the report judges it (a study's sweep at its last look; a preset with open
choices: its primary setup), in how many of the open choices' setups the claim holds, seeds used, the
minutes its runs took together, the machine and the commit they came from. --write puts it
between the scoreboard markers of docs/results/README.md (its one home): the given presets' rows
replace their earlier rows (in place; a new preset's go last), other presets' rows stay as they are,
so one preset re-run updates the table without its neighbours' sweeps (--fresh: only the given).
"""

from __future__ import annotations

import argparse
import math
import re
import sys
from collections import Counter
from pathlib import Path

from ablate.config import CONF_DIR
from ablate.report.judge import Verdict
from ablate.report.judge.sweep import judge_report
from ablate.report.render import fmt_difference, fmt_needed, fmt_used, md_table, short_commit
from ablate.run.record import Status

REPO = Path(__file__).resolve().parents[1]

BEGIN, END = "<!-- scoreboard:begin -->", "<!-- scoreboard:end -->"
SCOREBOARD = REPO / "docs" / "results" / "README.md"  # the one copy; README.md links it
HEADER = [
    "preset", "claim", "source", "verdict", "difference [CI]", "holds in (setups)", "seeds",
    "run min", "machine", "commit",
]  # fmt: skip


def source(preset: str) -> str:
    """The "Source:" of the preset's header (the full preset's, for a _quick variant)."""
    path = CONF_DIR / "experiment" / f"{preset.removesuffix('_quick')}.yaml"
    if not path.exists():
        return "—"
    header = " ".join(
        line.lstrip("# ").strip() for line in path.read_text().splitlines() if line.startswith("#")
    )
    found = re.search(r"Source:\s*(?:e\.g\.\s*)?(.+?\d{4})", header)
    return found.group(1) if found else "—"


def _why(v: Verdict) -> str:
    """What an undecided verdict lacks: the seeds it needs, or why nothing could be compared."""
    if fmt_needed(v) != "—":
        return f" (~{fmt_needed(v)} seeds needed)"
    return f" ({v.reason.rstrip('.')})" if v.comparison is None and v.reason else ""


def rows(sweep_dir: Path, machine: str | None = None) -> list[list[str]]:
    """One row per claim of the sweep; `machine` names it where its runs do not record theirs."""
    sweep, _, verdicts, panel = judge_report(sweep_dir)
    minutes = sum(r.wall_time_s for r in sweep.runs if math.isfinite(r.wall_time_s)) / 60
    runs = [r for r in sweep.runs if r.status != Status.CORRUPT]
    commits = Counter(short_commit(r.git_commit or "unknown", 7) for r in runs)
    commit = ", ".join(f"`{c}`" for c in commits) + (" (mixed)" if len(commits) > 1 else "")
    machines = Counter(r.machine for r in runs if r.machine)
    where = "; ".join(machines) or machine or "—"
    names = {r.choices.get("experiment") for r in sweep.runs} - {None}
    name = str(names.pop()) if len(names) == 1 else sweep.root.name
    return [
        [
            f"`{name}`",
            str(v.claim.get("text", "")),
            source(name),
            f"**{v.label}**" + _why(v),
            fmt_difference(v),
            panel.count(i) if panel else "— (no grid run)",
            fmt_used(v),
            f"{minutes:.1f}",
            where,
            commit,
        ]
        for i, v in enumerate(verdicts)
    ]


def merge(old_table: str, new_rows: list[list[str]]) -> list[list[str]]:
    """The rows of `old_table` with every preset of `new_rows` replaced by its new rows."""
    new_by_preset: dict[str, list[list[str]]] = {}
    for row in new_rows:
        new_by_preset.setdefault(row[0], []).append(row)
    out: list[list[str]] = []
    placed: set[str] = set()
    for line in old_table.splitlines():
        if not line.startswith("| `"):
            continue  # the header, its rule, anything else
        cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        preset = cells[0]
        if (
            len(cells) == len(HEADER) - 1
        ):  # a row from before the setups column: judged without a grid
            cells.insert(HEADER.index("holds in (setups)"), "— (no grid run)")
        if preset not in new_by_preset:
            out.append(cells)
        elif preset not in placed:  # where the preset's rows were: all its new rows
            out += new_by_preset[preset]
            placed.add(preset)
    return out + [r for p, rows_ in new_by_preset.items() if p not in placed for r in rows_]


def main() -> None:
    """Print the scoreboard; with --write, put it into docs/results/README.md."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="study sweep directories")
    parser.add_argument(
        "--write", action="store_true", help="update the scoreboard in docs/results/README.md"
    )
    parser.add_argument(
        "--machine", help="the machine of sweeps whose runs do not record it (older summary.json)"
    )
    parser.add_argument(
        "--fresh", action="store_true", help="with --write: only the given presets' rows"
    )
    args = parser.parse_args()
    new_rows = [row for sweep in args.sweeps for row in rows(sweep, args.machine)]
    if not args.write:
        print(md_table(HEADER, new_rows))
        return
    text = SCOREBOARD.read_text()
    if BEGIN not in text or END not in text:
        sys.exit(
            f"scoreboard: error: {SCOREBOARD} has no {BEGIN} ... {END} markers to write between"
        )
    head, _, rest = text.partition(BEGIN)
    old, _, tail = rest.partition(END)
    table = md_table(HEADER, new_rows if args.fresh else merge(old, new_rows))
    SCOREBOARD.write_text(f"{head}{BEGIN}\n{table}\n{END}{tail}")
    print(table)


if __name__ == "__main__":
    main()
