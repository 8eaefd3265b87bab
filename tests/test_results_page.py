"""scripts/readme_results.py: the per-preset section of docs/results/README.md, from the reports."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "readme_results.py"
spec = importlib.util.spec_from_file_location("readme_results", SCRIPT)
readme_results = importlib.util.module_from_spec(spec)
spec.loader.exec_module(readme_results)

SUMMARY = """# toy

## Status

**6 runs planned, 6 found: 6 completed.**

## Claims

- **supported**: “BN beats none” — `test/acc`, norm=batch: 0.95 vs norm=none: 0.90.

## Marginal effects

| norm | test/acc |
| --- | --- |
| none | 0.90 |
| batch | 0.95 |

## Cost
"""


def test_it_writes_between_the_markers_of_the_results_page(tmp_path: Path, monkeypatch):
    results = tmp_path / "docs" / "results"
    (results / "toy_quick").mkdir(parents=True)
    (results / "toy_quick" / "summary.md").write_text(SUMMARY)
    (results / "timings.txt").write_text(
        "toy_quick: exit 0, 99 s wall (2 cores)\n"
        "toy_quick: exit 124 (stopped by the lease, 4 of 6 runs finished), 41 s wall (16 cores)\n"
    )
    page = results / "README.md"
    before, after = "# Results\n\n## Per preset\n\n<!-- results:begin -->", "<!-- results:end -->\n"
    page.write_text(f"{before}\nold block\n{after}")
    monkeypatch.setattr(readme_results, "RESULTS", results)
    monkeypatch.setattr(readme_results, "TARGET", page)
    readme_results.main()
    text = page.read_text()
    assert text.startswith(before) and text.endswith(after) and "old block" not in text
    assert "#### `toy_quick` (41 s wall (16 cores); 6 runs planned, 6 found: 6 completed.)" in text
    assert "| batch | 0.95 |" in text and "- **supported**: “BN beats none”" in text
    assert (
        "Full report: [toy_quick/summary.md](toy_quick/summary.md)" in text
    )  # relative to the page
