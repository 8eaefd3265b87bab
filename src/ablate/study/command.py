"""The study's command line: its flags checked, and its seed budget resolved from flags and preset."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from ablate.study.rounds import ADD, MAX_SEEDS


def resolve_budget(declared: dict[str, Any], max_seeds: int | None = None, add: int | None = None,
                   max_hours: float | None = None, default_max_hours: float | None = None,
                   ) -> tuple[int, int, float | None]:  # fmt: skip
    """(max_seeds, add, max_hours): the flags given, else the preset's `study:`, else 10, 2 and
    default_max_hours (none unless given)."""
    plan: dict[str, Any] = {"max_seeds": MAX_SEEDS, "add": ADD, "max_hours": default_max_hours}
    flags = {"max_seeds": max_seeds, "add": add, "max_hours": max_hours}
    for given in (declared, flags):  # null or absent: the level below decides
        plan.update({k: v for k, v in given.items() if v is not None})
    return plan["max_seeds"], plan["add"], plan["max_hours"]


FLAGS = {"max_seeds": "seeds per cell", "add": "seeds per round", "max_hours": "hours",
         "default_max_hours": "hours"}  # fmt: skip


def flag_problems(args: argparse.Namespace, overrides: Sequence[str]) -> list[str]:
    """--max-seeds and --add must be positive integers, the hour caps positive numbers, and what is
    passed on to ablate.train overrides, not its flags (each round is a `-m` sweep already)."""
    problems = []
    for key, unit in FLAGS.items():
        value = getattr(args, key)
        if value is not None and not value > 0:  # NaN too
            kind = "a positive integer" if isinstance(value, int) else "a number > 0"
            problems.append(f"--{key.replace('_', '-')} {value}: must be {kind} ({unit})")
    for flag in (o for o in overrides if o.startswith("-")):
        problems.append(f"{flag}: a study passes overrides to ablate.train, not flags (each round "
                        "is a -m sweep already); drop it")  # fmt: skip
    return problems
