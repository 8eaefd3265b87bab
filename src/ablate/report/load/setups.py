"""The choices a paper leaves open, as a preset declares them: the grid and a claim at a setup.

    report:
      open: {init: gaussian, optim.momentum: 0.0}   # swept in hydra.sweeper.params; value = primary
      panel: exploratory                            # or confirmatory (judge/panel.py)

load_sweep restricts every claim to the primary setup (the headline); judge/panel.py judges each
claim at every setup of the grid (the product of the open keys' swept levels).
"""

from __future__ import annotations

import itertools
from typing import Any

from ablate.overrides import same_text, value_text

MODES = ("exploratory", "confirmatory")
Setup = dict[str, str]


def open_problems(open_: Any, mode: Any, levels: dict[str, list[str]]) -> list[str]:
    """Why `report.open`/`report.panel` cannot be judged on a sweep with these factor levels."""
    if not isinstance(open_, dict):
        return [f"report.open={open_!r}: must map each open key to its primary value"]
    problems = []
    for key, primary in open_.items():
        if key not in levels:
            problems.append(f"report.open.{key}: not swept; add it to hydra.sweeper.params")
        elif level_of(primary, levels[key]) is None:
            problems.append(
                f"report.open.{key}={value_text(primary)}: not among its swept levels "
                f"{','.join(levels[key])}; make the primary value one of them"
            )
    if mode not in MODES:
        problems.append(f"report.panel={mode}: must be one of {', '.join(MODES)}")
    return problems


def level_of(value: Any, levels: list[str]) -> str | None:
    """The level spelled as the sweep spells it that equals `value` (0.0 is 0), else None."""
    return next((level for level in levels if same_text(level, value_text(value))), None)


def with_setup(claim: dict[str, Any], setup: Setup) -> dict[str, Any]:
    """The claim restricted to a setup; a key the claim fixes in its own `where` stays the claim's."""
    added = dict(claim.get("setup") or {})
    own = {k: v for k, v in (claim.get("where") or {}).items() if k not in added}
    fixed = {claim.get("factor"), *own}
    setup = {k: v for k, v in setup.items() if k not in fixed}
    return {**claim, "where": {**setup, **own}, "setup": setup}


def without_setup(claim: dict[str, Any]) -> dict[str, Any]:
    """The claim as the preset wrote it (a study extends every setup's cells with it)."""
    added = claim.get("setup") or {}
    where = {k: v for k, v in (claim.get("where") or {}).items() if k not in added}
    return {k: v for k, v in {**claim, "where": where}.items() if k != "setup" and v != {}}


def setups(open_: Setup, levels: dict[str, list[str]]) -> list[Setup]:
    """Every point of the grid, the primary first, then in the sweep's level order."""
    keys = list(open_)
    primary = {k: level_of(open_[k], levels[k]) or value_text(open_[k]) for k in keys}
    grid = [
        dict(zip(keys, vs, strict=True)) for vs in itertools.product(*(levels[k] for k in keys))
    ]
    return [primary, *(s for s in grid if s != primary)]


def label(setup: Setup, primary: Setup) -> str:
    """A setup as the panel names it: the values that differ from the primary."""
    diff = [f"{k}={v}" for k, v in setup.items() if v != primary.get(k)]
    return "primary" if not diff else ", ".join(diff)
