"""The command line checked before Hydra starts, so that a refused run leaves nothing behind.

`check_command_line(argv)` composes the config the way the run will (conf/train.yaml and the
overrides, hydra.* included) and runs every check of ablate.validate on it; any problem is one
`error:` line and exit code 2, before Hydra creates the run directory. A sweep (-m) is refused
when a value of it is wrong on its own (a type, a range, an unknown key or option, an output path,
missing files): each swept value is checked with the other keys at their first value. A
combination that cannot train (e.g. norm.groups=3 with a width of 32) fails only its own cell
when the sweep reaches it, as before: recorded in its summary.json, the sweep goes on.
"""

from __future__ import annotations

import contextlib
import difflib
import inspect
import re
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.hydra_config import HydraConfig
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.errors import MissingConfigException, OverrideParseException
from omegaconf import DictConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.composed import keep
from ablate.config import CONF_DIR
from ablate.overrides import override_key
from ablate.run.identity import same_overrides_problems
from ablate.schema.config import GROUPS, NODES, allowed_keys, model_of
from ablate.validate import config_problems, fail, omegaconf_problem, one_line

MULTIRUN = ("-m", "--multirun")
# What Hydra runs: one of these modes (hydra/_internal/utils.py; it raises a ValueError for two)
MODES = {"--run": ("-r",), "--multirun": ("-m",), "--cfg": ("-c",), "--info": ("-i",),
         "--shell-completion": ("-sc",)}  # fmt: skip
REMOTE_LAUNCHERS = ("submitit_slurm",)  # jobs run on other machines: their Trainer is built there


def check_command_line(argv: list[str]) -> None:
    """Exit with code 2 and one `error:` line per problem if the command line cannot train."""
    if problems := command_line_problems(argv):
        fail(problems)


def command_line_problems(argv: list[str]) -> list[str]:
    """The problems of the run (or of each swept value) that argv asks for; [] when it can train.

    Anything else Hydra is asked for (--help, --cfg, --info, another config...) is left to Hydra.
    """
    if len(modes := _modes(argv)) > 1:
        given = " and ".join(modes)
        return [f"{given}: Hydra runs one mode at a time (one of {', '.join(MODES)}); keep one"]
    if any(a.startswith("-") and a not in MULTIRUN for a in argv):
        return []
    args = [a for a in argv if a not in MULTIRUN]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except OverrideParseException:
        return [_parse_problem(args)]
    multirun = any(a in MULTIRUN for a in argv)
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        if not multirun:
            if problems := _explicit_run_dir_problems(parsed):
                return problems
            return _cell_problems(args, multirun=False)
        return _sweep_problems(parsed)


def _modes(argv: list[str]) -> list[str]:
    """The mode flags in argv, each once, as given (`--cfg=job` counts as --cfg)."""
    given = [a.split("=")[0] for a in argv if a.startswith("-")]
    found = {}
    for flag in given:
        mode = next((m for m, short in MODES.items() if flag == m or flag in short), None)
        if mode is not None:
            found.setdefault(mode, flag)
    return list(found.values())


def _parse_problem(args: list[str]) -> str:
    for a in args:
        try:
            OverridesParser.create().parse_overrides([a])
        except OverrideParseException as e:
            reason = one_line(str(e).split("\nSee ")[0])
            return (
                f"{a} cannot be parsed: {reason} (override grammar: "
                "https://hydra.cc/docs/advanced/override_grammar/basic)"
            )
    return "the command line cannot be parsed"


def _explicit_run_dir_problems(parsed: list) -> list[str]:
    """A hydra.run.dir holding a run of other overrides is refused before Hydra writes its .hydra/."""
    for ov in parsed:
        if ov.key_or_group == "hydra.run.dir" and not ov.is_sweep_override():
            run_dir = str(ov.value())
            task = [o.input_line for o in parsed if not o.key_or_group.startswith("hydra")]
            if "${" not in run_dir:
                return same_overrides_problems(run_dir, task)
    return []


def _sweep_problems(parsed: list) -> list[str]:
    """Each swept value (command line, and a basic sweeper's hydra.sweeper.params) on its own."""
    fixed = [o.input_line for o in parsed if not o.is_sweep_override()]
    try:
        base = compose(config_name="train", overrides=fixed, return_hydra_config=True)
    except Exception as e:  # noqa: BLE001 - Hydra's own message, made one line
        return [compose_problem(e, fixed)]
    if problem := _launcher_problem(base):
        return [problem]
    sweeper = OmegaConf.select(base, "hydra.sweeper", default=None) or {}
    params: list = []
    if str(sweeper.get("_target_", "")).endswith("BasicSweeper"):
        lines = [f"{k}={v}" for k, v in (sweeper.get("params") or {}).items()]
        params = OverridesParser.create().parse_overrides(lines)
    # a job's overrides as the sweep composes them: the hydra.* ones, then the job's own
    fixed_hydra = [o for o in parsed if o.is_hydra_override() and not o.is_sweep_override()]
    hydra = [o.input_line for o in fixed_hydra]
    if str(OmegaConf.select(base, "hydra.mode", default=None)) != "MULTIRUN":
        hydra.append("hydra.mode=MULTIRUN")  # what Hydra's -m adds (hydra._internal.utils._run_app)
    values = _job_values([*params, *(o for o in parsed if o not in fixed_hydra)])
    first = {k: v[0] for k, v in values.items()}
    cells = [[*hydra, *first.values()]]
    for key, options in values.items():
        cells += [[*hydra, *{**first, key: v}.values()] for v in options[1:]]
    problems: list[str] = []
    for cell in cells:
        problems += [p for p in _cell_problems(cell, multirun=True) if p not in problems]
    return problems


def _job_values(overrides: list) -> dict[str, list[str]]:
    """key -> its overrides, as Hydra's BasicSweeper makes its jobs: one entry per key, where the
    key first appears (the sweeper's params, then the command line), holding its last value."""
    values: dict[str, list[str]] = {}
    for ov in overrides:
        key = ov.get_key_element()
        try:
            values[key] = (
                [f"{key}={v}" for v in ov.sweep_string_iterator()]
                if ov.is_sweep_override()
                else [f"{key}={ov.get_value_element_as_str()}"]
            )
        except Exception:  # noqa: BLE001 - e.g. interval(): another sweeper's distribution, glob
            values.pop(key, None)
    return {k: v for k, v in values.items() if v}


def _launcher_problem(base: DictConfig) -> str | None:
    """hydra.launcher.n_jobs of the grouped launcher: units at once, 1 or more, or -1 (one per core)."""
    launcher = OmegaConf.select(base, "hydra.launcher", default=None) or {}
    if not str(launcher.get("_target_", "")).endswith("GroupedLauncher"):
        return None
    n = launcher.get("n_jobs", 1)
    if isinstance(n, int) and not isinstance(n, bool) and (n >= 1 or n == -1):
        return None
    return (f"hydra.launcher.n_jobs={n} is not allowed: the groups and solo runs to train at once, "
            "an integer of 1 or more (-1: one per core), e.g. hydra.launcher.n_jobs=2")  # fmt: skip


def _cell_problems(overrides: list[str], *, multirun: bool) -> list[str]:
    """The problems of one run composed from the overrides, in the run directory Hydra will use."""
    try:
        cfg = compose(config_name="train", overrides=overrides, return_hydra_config=True)
    except Exception as e:  # noqa: BLE001 - Hydra's own message, made one line
        return [compose_problem(e, overrides)]
    if multirun:
        keep(
            overrides, cfg
        )  # the sweep's job of these overrides: Hydra takes it, not composing it again
    # What ${hydra:runtime.output_dir} will be (set by Hydra when it starts the job).
    out, unresolved = None, ""
    try:
        out = cfg.hydra.sweep.dir + "/" + cfg.hydra.sweep.subdir if multirun else cfg.hydra.run.dir
    except OmegaConfBaseException as e:  # e.g. an override holding a bad ${...}: named below
        unresolved = f"the run directory cannot be resolved: {omegaconf_problem(e)}"
    cfg.hydra.runtime.output_dir = str(Path(out or "."))
    HydraConfig.instance().set_config(cfg)
    choices = dict(cfg.hydra.runtime.choices)
    remote = str(choices.get("hydra/launcher")).startswith(REMOTE_LAUNCHERS)
    problems = config_problems(cfg, choices, out, combination=not multirun, trainer=not remote)
    return problems or ([unresolved] if out is None else [])


def compose_problem(e: Exception, overrides: list[str]) -> str:
    """Hydra's refusal to compose, as one line naming the override and what is allowed."""
    text = str(e)
    if isinstance(e, MissingConfigException) and (m := re.search(r"find '([^']+)/([^']+)'", text)):
        group, option = m.groups()
        options = re.findall(r"^\t(\S+)$", text.split("Config search path")[0], re.MULTILINE)
        return (
            f"{group}={option} is not allowed: one of {options} "
            f"(Hydra: Could not find '{group}/{option}')"
        )
    m = re.search(r"Could not override '([^']+)'", text)
    if m and "not in struct" in str(e.__cause__):
        return _unknown_key(m.group(1), overrides)
    return one_line(text.split("Config search path")[0])


def _unknown_key(key: str, overrides: list[str]) -> str:
    """`reg.l3=1`: a key the config lacks (Hydra wants `+` to add one)."""
    parent, _, leaf = key.rpartition(".")
    group = key.partition(".")[0]
    if group == "trainer" and parent == "trainer":
        import lightning as L  # here, not at the top: a refusal should not wait ~4 s for Lightning

        trainer_args = sorted(set(inspect.signature(L.Trainer.__init__).parameters) - {"self"})
        if leaf in trainer_args:  # a Trainer argument the trainer option does not set
            given = next((o for o in overrides if override_key(o) == key), f"{key}=...")
            return f"{key} is not in the trainer config yet: add it with +{given}"
        close = difflib.get_close_matches(leaf, trainer_args, n=1)
        hint = f" (did you mean trainer.{close[0]}?)" if close else ""
        return f"unknown key {key}: not a lightning.Trainer argument{hint}"
    rest = [o for o in overrides if override_key(o) != key]
    try:
        base: DictConfig | None = compose(
            config_name="train", overrides=rest, return_hydra_config=True
        )
    except Exception:  # noqa: BLE001
        base = None
    node = OmegaConf.select(base, parent) if base is not None and parent else base
    keys = sorted(k for k in node if k != "hydra") if isinstance(node, DictConfig) else []
    if group in [*GROUPS, *NODES] and parent == group:
        with contextlib.suppress(Exception):  # a target that cannot be imported: named elsewhere
            model = NODES.get(group) or model_of(group, group, OmegaConf.to_container(node))
            keys = allowed_keys(model)
        choice = OmegaConf.select(base, f"hydra.runtime.choices.{group}") if base else None
        option = f" for {group}={choice}" if choice else ""
        if leaf in keys:  # the option's record takes it; its yaml does not set it
            given = next((o for o in overrides if override_key(o) == key), f"{key}=...")
            return f"{key} is not set by {group}={choice} yet: add it with +{given.lstrip('+~')}"
        return f"unknown key {key}{option}: allowed keys are {keys}"
    where = f"under {parent}" if parent else "at the top level"
    return (
        f"unknown key {key} (no '{leaf}' {where}): allowed keys are {keys}; "
        f"to add a new key on purpose use +{key}=..."
    )
