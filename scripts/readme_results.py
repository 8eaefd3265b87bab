"""Rewrite the per-preset section of docs/results/README.md (between the results markers) from
docs/results/*/summary.md.

python scripts/readme_results.py        (after `make studies`; docs/results/README.md is edited in place)
"""

from __future__ import annotations

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "docs" / "results"
TARGET = RESULTS / "README.md"  # the results page; the manual (README.md) only links it
BEGIN, END = "<!-- results:begin -->", "<!-- results:end -->"


def section(text: str, title: str) -> str:
    """The body of a `## title` section of a summary.md (up to the next `## `)."""
    match = re.search(rf"^## {re.escape(title)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    return match.group(1) if match else ""


def first_table(text: str) -> str:
    lines, table = text.splitlines(), []
    for line in lines:
        if line.startswith("|"):
            table.append(line)
        elif table:
            break
    return "\n".join(table)


def block(name: str, timings: dict[str, str]) -> str:
    """The block of one preset: status, main table, claim verdicts, link."""
    text = (RESULTS / name / "summary.md").read_text()
    status = section(text, "Status").strip().splitlines()[0].strip("*")
    table = first_table(section(text, "Pivot tables")) or first_table(
        section(text, "Marginal effects")
    )
    claims = [line for line in section(text, "Claims").splitlines() if line.startswith("- **")]
    when = f"{timings[name]}; " if name in timings else ""
    parts = [f"#### `{name}` ({when}{status})", table, "\n".join(claims)]
    parts.append(f"Full report: [{name}/summary.md]({name}/summary.md)")
    return "\n\n".join(p for p in parts if p)


def main() -> None:
    timings = {}
    for line in (RESULTS / "timings.txt").read_text().splitlines():
        name, _, rest = line.partition(": ")
        # "exit 0, 341 s wall (2 cores)" or "exit 124 (why, ...), 512 s wall ..." -> "... s wall ..."
        timings[name] = re.sub(r"^exit \d+( \([^)]*\))?, ", "", rest)
    names = sorted(p.parent.name for p in RESULTS.glob("*/summary.md"))
    body = "\n\n".join(block(n, timings) for n in names)
    page = TARGET.read_text()
    start, end = page.index(BEGIN) + len(BEGIN), page.index(END)
    TARGET.write_text(page[:start] + "\n" + body + "\n" + page[end:])


if __name__ == "__main__":
    main()
