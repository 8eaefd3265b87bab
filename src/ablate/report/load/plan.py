"""The sweep plan: what multirun.yaml says the sweep meant to run."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ablate.overrides import bare, override_key, override_value


@dataclass
class Plan:
    """What the sweep meant to run, from multirun.yaml: each swept key and its values."""

    values: dict[str, list[str]]
    unknown: dict[str, str]  # key -> why its values cannot be listed

    @property
    def keys(self) -> list[str]:
        return [*self.values, *self.unknown]

    def expected_runs(self) -> int | None:
        """How many runs the sweep launches; None when a key cannot be expanded."""
        return None if self.unknown else math.prod(len(v) for v in self.values.values())

    def combos(self) -> list[dict[str, str]]:
        """Every planned combination of swept values (empty if not expandable)."""
        if self.unknown:
            return []
        keys = list(self.values)
        return [dict(zip(keys, c, strict=True)) for c in itertools.product(*self.values.values())]


def _read(spec: str) -> tuple[str, list[str] | None, bool] | None:
    """(key, values, is_sweep) of an override, parsed once: a sweep's values (None if they can't be
    listed) or a plain override's one value; None for anything else (e.g. deleting a key)."""
    try:
        (override,) = OverridesParser.create().parse_overrides([spec])
    except Exception:  # noqa: BLE001 - not Hydra syntax: fall back to a plain comma split
        value = override_value(spec)
        if "," not in value:
            return None
        return override_key(spec), None if "(" in value else value.split(","), True
    key = bare(override.get_key_element())
    if not override.is_sweep_override():
        plain = override.value() is not None
        return (key, [override.get_value_element_as_str()], False) if plain else None
    try:  # the same strings Hydra's basic sweeper gives each job (range() expands too)
        return key, list(override.sweep_string_iterator()), True
    except Exception:  # noqa: BLE001 - glob() needs the config loader: values unknown
        return key, None, True


def sweep_values(spec: str) -> tuple[str, list[str] | None] | None:
    """(key, values) of a sweep override, (key, None) if they can't be listed, None if no sweep."""
    read = _read(spec)
    return (read[0], read[1]) if read is not None and read[2] else None


def plan_from_specs(specs: list[str]) -> Plan:
    """The plan of sweeper params followed by command-line overrides: later specs win, and a plain
    `key=value` narrows a swept key to that one value, as Hydra's basic sweeper does."""
    plan = Plan({}, {})
    for spec in specs:
        read = _read(spec)
        if read is None or read[0].startswith("hydra."):
            continue
        key, values, sweep = read
        if not sweep and key not in plan.keys:  # a plain override of a key nobody sweeps
            continue
        plan.values.pop(key, None)
        plan.unknown.pop(key, None)
        if values is None:
            plan.unknown[key] = spec
        else:
            plan.values[key] = values
    return plan


def load_plan(root: Path) -> Plan | None:
    """The sweep plan from <root>/multirun.yaml; None if there is none."""
    path = root / "multirun.yaml"
    if not path.is_file():
        return None
    try:
        cfg = OmegaConf.load(path)
        task = OmegaConf.select(cfg, "hydra.overrides.task", default=None)
        params = OmegaConf.select(cfg, "hydra.sweeper.params", default=None)
        params = OmegaConf.to_container(params) if params is not None else {}
        specs = [f"{k}={v}" for k, v in params.items()]
        specs += [str(s) for s in (OmegaConf.to_container(task) if task is not None else [])]
    except Exception as e:  # noqa: BLE001 - a broken plan must not stop the report
        return Plan({}, {"multirun.yaml": f"unreadable ({type(e).__name__})"})
    return plan_from_specs(specs)
