"""Override strings as typed on the command line (`key=value`, `+key=value`, `~key`), and how a
value reads in one: the one parser every module uses (config, run bookkeeping, report, study)."""

from __future__ import annotations

import math
from typing import Any

PREFIXES = "+~"  # Hydra: `+key=v` adds a key, `~key` deletes one


def bare(override: str) -> str:
    """The override without its +/~ prefix: `+reg.l2=0.1` -> `reg.l2=0.1`."""
    return override.lstrip(PREFIXES)


def override_key(override: str) -> str:
    """The key an override sets, without prefix or value: `+reg.l2=0.1` -> `reg.l2`."""
    return bare(override).split("=", 1)[0]


def override_value(override: str) -> str:
    """The value an override sets, as typed (empty for `~key`): `norm=batch` -> `batch`."""
    return override.partition("=")[2]


def parse_overrides(items: Any) -> dict[str, str]:
    """`key=value` override strings -> {key: value as typed}, without +/~ prefixes and hydra.* keys."""
    out: dict[str, str] = {}
    for item in items if isinstance(items, list) else []:
        if isinstance(item, str) and "=" in item:
            key = override_key(item)
            if not key.startswith("hydra."):
                out[key] = override_value(item)
    return out


def value_text(value: Any) -> str:
    """How a config value reads in an override (true, null, 0.1)."""
    if isinstance(value, bool):
        return str(value).lower()
    return "null" if value is None else str(value)


def is_number(text: str) -> bool:
    """Whether the text reads as a number (`0.1`, `1e-3`, `nan`)."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def same_text(a: str, b: str) -> bool:
    """Whether two override spellings mean the same value: 0.1 is 0.10, false is False (Hydra's
    sweeper spells swept booleans True/False)."""
    if is_number(a) and is_number(b):
        return float(a) == float(b)
    bools = ("true", "false")
    return a == b or (a.lower() in bools and a.lower() == b.lower())


def canonical(text: str) -> str:
    """One spelling per number (`0.10` and `0.1` -> `0.1`); other text as it is."""
    return repr(float(text)) if is_number(text) else text


def as_float(value: Any) -> float:
    """A float from a JSON number or a "nan"/"inf" string; nan for anything else."""
    if isinstance(value, bool) or value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
