"""scripts/scoreboard.py: a re-run preset's rows replace its old ones; the other presets' stay."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "scoreboard.py"
spec = importlib.util.spec_from_file_location("scoreboard", SCRIPT)
scoreboard = importlib.util.module_from_spec(spec)
spec.loader.exec_module(scoreboard)


def row(preset: str, claim: str, verdict: str = "**supported**") -> list[str]:
    return [
        f"`{preset}`",
        claim,
        "Paper 2018",
        verdict,
        "+0.01 [+0.00, +0.02]",
        "1 of 2",
        "3",
        "1.0",
        "x86_64, 2 CPUs",
        "`abc1234`",
    ]


def test_merge_replaces_a_presets_rows_in_place_and_keeps_the_others():
    old = [row("a", "first"), row("b", "smaller ||g - g'||"), row("b", "second b"), row("c", "c")]
    table = scoreboard.md_table(scoreboard.HEADER, old)
    assert scoreboard.merge(table, []) == old  # a round trip, escaped pipes included
    new_b = [row("b", "only b now", "**no effect**")]
    merged = scoreboard.merge(table, [*new_b, row("d", "new preset")])
    assert merged == [old[0], *new_b, old[3], row("d", "new preset")]


def test_merge_gives_a_row_from_before_the_setups_column_a_dash_there():
    old = row("a", "judged before grids")
    without = [c for i, c in enumerate(old) if i != scoreboard.HEADER.index("holds in (setups)")]
    table = scoreboard.md_table(scoreboard.HEADER[: len(without)], [without])
    (merged,) = scoreboard.merge(table, [])
    assert len(merged) == len(scoreboard.HEADER)
    assert merged[scoreboard.HEADER.index("holds in (setups)")] == "— (no grid run)"
    assert merged[-1] == old[-1] and merged[4] == old[4]


def _run(sweep: Path, norm: str, seed: int, acc: float, **fields) -> None:
    run = sweep / f"norm={norm},seed={seed}"
    run.mkdir(parents=True)
    claim = {"text": "BN beats none", "metric": "test/acc", "factor": "norm",
             "better": "batch", "worse": "none", "higher_is_better": True}  # fmt: skip
    data = {
        "status": "completed", "seed": seed, "overrides": [f"norm={norm}", f"seed={seed}"],
        "swept": ["norm", "seed"], "choices": {"norm": norm, "experiment": "toy"},
        "config": {"seed": seed, "report": {"claims": [claim]}},
        "metrics": {"test/acc": acc}, "wall_time_s": 30.0, **fields,
    }  # fmt: skip
    (run / "summary.json").write_text(json.dumps(data))


def test_a_row_names_the_machine_a_dirty_commit_and_why_nothing_was_compared(tmp_path: Path):
    for seed in range(6):  # 6 seeds: the fewest the exact test decides at 0.05
        _run(tmp_path, "none", seed, 0.90 + seed / 1000, git_commit="1234567890ab-dirty")
    (row,) = scoreboard.rows(tmp_path, machine="16 CPUs, 1 x H200")
    assert row[0] == "`toy`" and row[-1] == "`1234567-dirty`" and row[-2] == "16 CPUs, 1 x H200"
    assert row[3].startswith("**inconclusive** (") and "usable seeds" in row[3]  # no batch runs
    assert row[5] == "— (no grid run)" and row[7] == "3.0"  # no open choices; 6 runs x 30 s
    for seed in range(6):  # runs that record their machine name it, whatever --machine says
        _run(tmp_path, "batch", seed, 0.95 + seed / 1000, machine="x86_64, 2 CPUs")
    (row,) = scoreboard.rows(tmp_path, machine="ignored")
    assert row[-2] == "x86_64, 2 CPUs" and row[3] == "**supported**"


def test_the_scoreboard_lives_once_and_write_touches_only_it(tmp_path: Path, monkeypatch):
    """README.md links the scoreboard; --write replaces the rows between docs/results/README.md's
    markers and leaves the text around them (and the README) as it was."""
    readme = SCRIPT.parents[1] / "README.md"
    assert scoreboard.BEGIN not in readme.read_text()
    assert scoreboard.BEGIN in scoreboard.SCOREBOARD.read_text()
    assert SCRIPT.parents[1] / "docs" / "results" / "README.md" == scoreboard.SCOREBOARD
    sweep = tmp_path / "toy"
    for seed in range(6):
        _run(sweep, "none", seed, 0.90 + seed / 1000, machine="x86_64, 2 CPUs")
        _run(sweep, "batch", seed, 0.95 + seed / 1000, machine="x86_64, 2 CPUs")
    page = tmp_path / "results.md"
    stale = row("toy", "BN beats none", "**inconclusive**")
    before = f"# Results\n\nintro\n\n{scoreboard.BEGIN}\n"
    after = f"\n{scoreboard.END}\n\n## Findings\n"
    page.write_text(before + scoreboard.md_table(scoreboard.HEADER, [stale]) + after)
    monkeypatch.setattr(scoreboard, "SCOREBOARD", page)
    monkeypatch.setattr("sys.argv", ["scoreboard.py", str(sweep), "--write"])
    readme_before = readme.read_bytes()
    scoreboard.main()
    text = page.read_text()
    assert text.startswith(before) and text.endswith(after)
    (written,) = scoreboard.merge(text.partition(scoreboard.BEGIN)[2], [])
    assert written[0] == "`toy`" and written[3] == "**supported**"
    assert readme.read_bytes() == readme_before
