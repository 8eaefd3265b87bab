"""What a study runs: the preset's factors, seeds and sweep folder, and the multiruns of a round."""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import OmegaConf

from ablate.config import CONF_DIR
from ablate.overrides import bare, override_key, override_value
from ablate.preflight import compose_problem
from ablate.report.load import open_problems
from ablate.validate import typed_problems

Cell = tuple[str, ...]


class StudyError(Exception):
    """The study cannot go on; `code` is the exit status."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


@dataclass
class Design:
    """What the preset, with the extra overrides, sweeps and where its runs go."""

    experiment: str  # the `experiment=<name>` override
    extras: list[str]  # further overrides, e.g. hydra/launcher=joblib
    sweep_dir: Path
    factors: dict[str, list[str]]  # swept keys but seed -> levels, as Hydra spells them
    params: set[str]  # the keys of hydra.sweeper.params (others are swept on the command line)
    seeds: list[int]  # the preset's seeds: round 1
    # the preset's declared `study:` budget (max_seeds, add, max_hours), {} when it has none
    budget: dict[str, Any] = field(default_factory=dict)
    claims: int = 0  # how many claims its report judges (the Holm family at most)


def blocks(cells: Sequence[Cell]) -> list[list[list[str]]]:
    """Cells merged into grids (per factor a list of values) whose union is exactly `cells`."""
    grids = [[[v] for v in c] for c in dict.fromkeys(cells)]
    merged = True
    while merged:  # two grids that differ in one factor only are one grid
        merged = False
        for i, j in itertools.combinations(range(len(grids)), 2):
            a, b = grids[i], grids[j]
            diff = [k for k in range(len(a)) if set(a[k]) != set(b[k])]
            if len(diff) == 1:
                a[diff[0]] += [v for v in b[diff[0]] if v not in a[diff[0]]]
                del grids[j]
                merged = True
                break
    return grids


def _arg(key: str, values: Sequence[Any], params: set[str]) -> str:
    """`key=a,b`; one value: `key=a` for a sweeper param, else `key=choice(a)` (still swept)."""
    if len(values) == 1 and key not in params:
        return f"{key}=choice({values[0]})"  # keeps the key swept: part of the run-folder name
    return f"{key}={','.join(map(str, values))}"


def round_commands(design: Design, missing: dict[Cell, list[int]]) -> list[list[str]]:
    """`ablate.train` arguments of multiruns that run exactly the missing (cell, seed) runs."""
    by_seeds: dict[tuple[int, ...], list[Cell]] = {}
    for cell, seeds in missing.items():
        by_seeds.setdefault(tuple(seeds), []).append(cell)
    own = {*design.factors, "seed"}
    keep = [e for e in design.extras if override_key(e) not in own]
    commands = []
    for seeds, cells in by_seeds.items():
        for grid in blocks(cells):
            args = [_arg(k, vs, design.params) for k, vs in zip(design.factors, grid, strict=True)]
            commands.append(
                ["-m", design.experiment, *keep, *args, _arg("seed", seeds, design.params)]
            )
    return commands


def _levels(key: str, spec: Any) -> list[str]:
    (override,) = OverridesParser.create().parse_overrides([f"{key}={spec}"])
    if not override.is_sweep_override():
        return [override.get_value_element_as_str()]
    try:
        return list(override.sweep_string_iterator())
    except Exception as e:  # noqa: BLE001 - glob() needs the config loader
        raise StudyError(f"cannot list the values of {key}={spec} ({e})") from None


def read_design(experiment: str, extras: list[str]) -> Design:
    """Compose the preset with the overrides: its factors, seeds and fixed sweep directory."""
    try:
        parsed = OverridesParser.create().parse_overrides(extras)
    except Exception as e:  # noqa: BLE001 - Hydra's own message says what is wrong
        raise StudyError(f"bad override: {e}") from None
    swept: dict[str, list[str]] = {}  # swept on the command line
    fixed: dict[str, list[str]] = {}  # one value on the command line
    composed = [experiment]
    for ov, text in zip(parsed, extras, strict=True):
        key = ov.key_or_group
        if ov.is_sweep_override():
            swept[key] = _levels(key, override_value(text))
            composed.append(f"{ov.get_key_element()}={swept[key][0]}")
        else:
            composed.append(text)
            if ov.get_key_element() == key:  # not +key / ~key
                fixed[key] = [ov.get_value_element_as_str()]
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            cfg = compose("train", overrides=composed, return_hydra_config=True)
        except Exception as e:  # noqa: BLE001 - Hydra's refusal, as ablate.train words it
            raise StudyError(compose_problem(e, composed)) from None
    if not str(cfg.hydra.sweeper._target_).endswith("BasicSweeper"):
        raise StudyError("a study needs Hydra's basic (grid) sweeper")
    if "${now:" in str(OmegaConf.to_container(cfg.hydra.sweep, resolve=False).get("dir")):
        raise StudyError("the preset has no fixed hydra.sweep.dir: rounds must share one folder")
    swept_params = cfg.hydra.sweeper.params
    params = OmegaConf.to_container(swept_params, resolve=True) if swept_params else {}
    levels = {bare(k): _levels(k, v) for k, v in params.items()}
    # The command line wins over sweeper params (BasicSweeper): a fixed value leaves one level.
    levels.update({k: v for k, v in fixed.items() if k in levels})
    levels.update(swept)
    seeds = levels.pop("seed", None)
    if seeds is None or not all(s.lstrip("-").isdigit() for s in seeds):
        raise StudyError(f"a study needs integer seeds swept by the preset, got seed={seeds}")
    factors = {k: v for k, v in levels.items() if not k.startswith("hydra")}
    sweep_dir = Path(str(cfg.hydra.sweep.dir)).expanduser().resolve()
    # each value of the first job checked as ablate.train checks it (no model built: ~0.01 s), so
    # that a bad one is refused before study.json is written; other swept values: by round 1
    cfg.hydra.runtime.output_dir = str(sweep_dir)
    HydraConfig.instance().set_config(cfg)
    if problems := typed_problems(cfg, dict(cfg.hydra.runtime.choices))[0]:
        raise StudyError("\n".join(problems))
    budget = OmegaConf.to_container(cfg.study, resolve=True) if cfg.get("study") else {}
    claims = len(OmegaConf.select(cfg, "report.claims", default=None) or [])
    declared = OmegaConf.select(cfg, "report.open", default=None)
    if declared:  # the open choices must be swept: a typo here would judge the wrong setup
        mode = OmegaConf.select(cfg, "report.panel", default="exploratory")
        given = OmegaConf.to_container(declared) if OmegaConf.is_config(declared) else declared
        if problems := open_problems(given, mode, factors):
            raise StudyError(problems[0])
    return Design(
        experiment,
        extras,
        sweep_dir,
        factors,
        set(params),
        [int(s) for s in seeds],
        budget,
        claims,
    )
