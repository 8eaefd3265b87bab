"""scripts/scoreboard.py: a re-run preset's rows replace its old ones; the other presets' stay."""

from __future__ import annotations

import importlib.util
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
        "3",
        "1.0",
        "`abc1234`",
    ]


def test_merge_replaces_a_presets_rows_in_place_and_keeps_the_others():
    old = [row("a", "first"), row("b", "smaller ||g - g'||"), row("b", "second b"), row("c", "c")]
    table = scoreboard.md_table(scoreboard.HEADER, old)
    assert scoreboard.merge(table, []) == old  # a round trip, escaped pipes included
    new_b = [row("b", "only b now", "**no effect**")]
    merged = scoreboard.merge(table, [*new_b, row("d", "new preset")])
    assert merged == [old[0], *new_b, old[3], row("d", "new preset")]
