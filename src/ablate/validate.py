"""Checks of the composed config before any data is read: one clear line per problem, exit code 2."""

from __future__ import annotations

import contextlib
import inspect
import re
import sys
from collections.abc import Callable
from numbers import Integral, Real
from pathlib import Path

import lightning as L
from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from hydra.utils import get_class
from omegaconf import DictConfig, OmegaConf

from ablate.config import CONF_DIR
from ablate.data.decode import DatasetNotFoundError
from ablate.models.blocks import ACTIVATIONS
from ablate.run.identity import same_overrides_problems
from ablate.techniques.init import GAINS
from ablate.techniques.norm import PLACEMENTS

EXIT_BAD_CONFIG = 2
# Groups whose keys must match the chosen option file exactly (trainer/logger/callbacks are open-ended).
STRICT_GROUPS = ("data", "model", "norm", "reg", "init", "aug", "optim", "scheduler")


class ConfigError(ValueError):
    """A bad config value; the message is the one line shown to the user."""


def fail(problems: list[str]) -> None:
    """Print each problem on its own line and exit with code 2 (nothing has been written yet)."""
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIG)


# ---------------------------------------------------------------- value rules
def _is_int(v) -> bool:
    return isinstance(v, Integral) and not isinstance(v, bool)


def _is_num(v) -> bool:
    return isinstance(v, Real) and not isinstance(v, bool)


def _rule(test: Callable, allowed: str) -> Callable[[str, object], str | None]:
    def check(key: str, v: object) -> str | None:
        ok = False
        with contextlib.suppress(TypeError):  # e.g. "abc" > 0
            ok = bool(test(v))
        return None if ok else f"{key}={v!r} is not allowed: {allowed}"

    return check


positive_int = _rule(lambda v: _is_int(v) and v > 0, "a positive integer")
non_negative_int = _rule(lambda v: _is_int(v) and v >= 0, "an integer >= 0")
non_negative = _rule(lambda v: _is_num(v) and v >= 0, "a number >= 0")
positive = _rule(lambda v: _is_num(v) and v > 0, "a number > 0")
probability = _rule(lambda v: _is_num(v) and 0 <= v < 1, "a number in [0, 1)")
open_fraction = _rule(lambda v: _is_num(v) and 0 < v < 1, "a number in (0, 1)")
optional_positive_int = _rule(
    lambda v: v is None or (_is_int(v) and v > 0), "null or a positive integer"
)
optional_int = _rule(lambda v: v is None or _is_int(v), "null or an integer")


def one_of(choices) -> Callable[[str, object], str | None]:
    return _rule(lambda v: v in choices, f"one of {sorted(choices)}")


RULES: dict[str, Callable[[str, object], str | None]] = {
    "seed": optional_int,
    "data.batch_size": positive_int,
    "data.eval_batch_size": positive_int,
    "data.val_fraction": open_fraction,
    "data.train_subset": optional_positive_int,
    "data.num_workers": non_negative_int,
    "data.channels": one_of({1, 3}),
    "data.eval_train_max": _rule(
        lambda v: v is None or (_is_int(v) and v >= 0), "null or an integer >= 0"
    ),
    "reg.l1": non_negative,
    "reg.l2": non_negative,
    "reg.weight_decay": non_negative,
    "reg.dropout": probability,
    "reg.dropout2d": probability,
    "reg.label_smoothing": probability,
    "norm.placement": one_of(set(PLACEMENTS)),
    "norm.groups": positive_int,
    "norm.shift": non_negative,
    "norm.scale": _rule(
        lambda v: len(v) == 2 and all(_is_num(x) for x in v) and 0 < v[0] <= v[1],
        "a pair [low, high] with 0 < low <= high",
    ),
    "model.activation": one_of(set(ACTIVATIONS) & set(GAINS)),
    "model.hidden": non_negative_int,
    "model.head_norm": one_of({True, False}),
    "model.channels_last": one_of({True, False}),
    "model.compile": one_of({True, False}),
    "model.tta_flip": one_of({True, False}),
    "model.convs": positive_int,
    "data.on_device": _rule(lambda v: v in (None, True, False), "null, true or false"),
    "model.depth": positive_int,
    "model.width": positive_int,
    "model.pool_stages": non_negative_int,
    "optim.lr": positive,
    "max_loss": positive,
    "threads": _rule(lambda v: v == "auto" or (_is_int(v) and v > 0), "auto or a positive integer"),
    "optim.weight_decay": _rule(
        lambda v: v == 0, "0 (decay is reg.weight_decay: decoupled, weights only)"
    ),
    **{
        f"diagnostics.{cb}.{key}": non_negative_int
        for cb in ("activations", "gradients", "landscape")
        for key in ("every_n_steps", "histogram_every_n_steps")
    },
    "diagnostics.landscape.min_factor": positive,
    "diagnostics.landscape.max_factor": positive,
    "diagnostics.landscape.points": positive_int,
    "trainer.max_epochs": _rule(lambda v: _is_int(v) and (v > 0 or v == -1), "a positive integer"),
}


def _get(cfg: DictConfig, key: str):
    return OmegaConf.select(cfg, key, default="__missing__", throw_on_missing=False)


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys whose value is `???` (without resolving interpolations; hydra.* left out)."""
    found = []

    def walk(node, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif node == "???":
            found.append(prefix[:-1])

    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}, "")
    return found


def value_problems(cfg: DictConfig) -> list[str]:
    """Range/type problems and cross-key inconsistencies."""
    problems = [
        f"{key} is required but not set: add {key}=... to the command line"
        for key in missing_keys(cfg)
    ]
    for key, rule in RULES.items():
        v = _get(cfg, key)
        if v != "__missing__" and (msg := rule(key, v)):
            problems.append(msg)
    channels = _get(cfg, "model.channels")
    if channels != "__missing__" and not (channels and all(_is_int(c) and c > 0 for c in channels)):
        problems.append(
            f"model.channels={channels} is not allowed: a non-empty list of positive integers"
        )
    size = _get(cfg, "data.image_size")
    if not (size != "__missing__" and len(size) == 2 and all(_is_int(s) and s > 0 for s in size)):
        problems.append(
            f"data.image_size={size} is not allowed: [height, width], positive integers"
        )
    groups = _get(cfg, "norm.groups")
    if _is_int(groups) and groups > 0:
        widths = list(channels) if channels != "__missing__" else [_get(cfg, "model.width")]
        if _get(cfg, "model.head_norm") is True and _is_int(_get(cfg, "model.hidden")):
            widths.append(_get(cfg, "model.hidden"))
        bad = [c for c in widths if _is_int(c) and c % groups]
        if bad:
            problems.append(
                f"norm.groups={groups} does not divide the channel counts {bad} of the model: "
                f"use a divisor of every width in {widths} (e.g. norm.groups=1, 2, 4 or 8)"
            )
    if _get(cfg, "model.head_norm") is True and str(_get(cfg, "norm._target_")).endswith(
        ".instance"
    ):
        problems.append(
            "model.head_norm=true with norm=instance: a feature vector has no spatial extent to "
            "normalize over; use norm=batch, layer or group, or model.head_norm=false"
        )
    if _get(cfg, "model.tta_flip") is True and _get(cfg, "data.aug_family") == "digits":
        problems.append(
            "model.tta_flip=true with digits: a mirrored 2, 3, 7 or 9 is not a digit, so "
            "averaging over mirrors hurts; use model.tta_flip=false on MNIST"
        )
    return problems


def data_problems(cfg: DictConfig) -> list[str]:
    """Missing dataset files (a cheap existence check; nothing is decoded)."""
    try:
        source = get_class(cfg.data._target_)
        source.locate(Path(cfg.data.root).expanduser().resolve(), download=cfg.data.download)
    except DatasetNotFoundError as e:
        return [" ".join(str(e).split())]
    return []


def trainer_problems(cfg: DictConfig) -> list[str]:
    """trainer.* keys that lightning.Trainer does not take."""
    allowed = set(inspect.signature(L.Trainer.__init__).parameters) - {"self"}
    unknown = sorted(k for k in cfg.trainer if k not in allowed and not k.startswith("_"))
    return [f"trainer.{k} is not a lightning.Trainer argument" for k in unknown]


def key_problems(cfg: DictConfig, choices: dict[str, str]) -> list[str]:
    """Keys added to a group (e.g. `+reg.l3=1`) that its chosen option file does not define."""
    reference = compose(
        config_name="train",
        overrides=[f"{g}={c}" for g, c in choices.items() if g in STRICT_GROUPS and c is not None],
    )
    problems = []
    for group in STRICT_GROUPS:
        if group not in cfg or group not in reference:
            continue
        extra = sorted(set(cfg[group] or {}) - set(reference[group] or {}))
        for k in extra:
            problems.append(
                f"unknown key {group}.{k} for {group}={choices.get(group)}: "
                f"allowed keys are {sorted(reference[group] or {})}"
            )
    return problems


# Keys naming where a run writes: each must stay inside the run directory.
WRITE_PATH_KEYS = ("trainer.default_root_dir", "callbacks.*.dirpath", "logger.*.save_dir")


def path_problems(cfg: DictConfig, run_dir: str | Path) -> list[str]:
    """Output paths that resolve outside the run directory (`..`, absolute paths, symlinks)."""
    root = Path(run_dir).resolve()
    problems = []
    for pattern in WRITE_PATH_KEYS:
        group, _, key = pattern.partition(".*.")
        if key:  # every entry of a group of callbacks/loggers (null entries are switched off)
            nodes = cfg.get(group) or {}
            keys = [f"{group}.{name}.{key}" for name in nodes if nodes[name]]
        else:
            keys = [pattern]
        for dotted in keys:
            value = _get(cfg, dotted)
            if value in ("__missing__", None):
                continue
            path = Path(str(value)).expanduser()
            path = (path if path.is_absolute() else Path.cwd() / path).resolve()
            if not path.is_relative_to(root):
                problems.append(
                    f"{dotted}={value} writes outside the run directory {root}: a run writes "
                    "only there (and into data.cache_dir); to put runs elsewhere, set "
                    "log_dir=..., hydra.run.dir=... or hydra.sweep.dir=..."
                )
    return problems


def config_problems(
    cfg: DictConfig, choices: dict[str, str] | None = None, run_dir: str | Path | None = None
) -> list[str]:
    """Every problem of the config, one line each (empty when it is usable)."""
    problems = value_problems(cfg) + trainer_problems(cfg)
    if run_dir is not None:
        problems += path_problems(cfg, run_dir)
    if choices:
        problems += key_problems(cfg, choices)
    if not problems:  # only look for files once the paths themselves are valid
        problems += data_problems(cfg)
    return problems


def validate(
    cfg: DictConfig, choices: dict[str, str] | None = None, run_dir: str | Path | None = None
) -> None:
    """Exit with code 2 and one line per problem if the config is not usable."""
    if problems := config_problems(cfg, choices, run_dir):
        fail(problems)


# ---------------------------------------------------------------- before Hydra starts
_FLAGS_WITH_CONFIG = ("-cp", "-cn", "-cd", "--config-path", "--config-name", "--config-dir")


def preflight(argv: list[str]) -> None:
    """Catch overrides of keys the config lacks (typos like `reg.l3=1`) with exit code 2.

    Hydra's own message for these exits 1; other errors (e.g. `norm=btach`, which lists the
    choices) are left to Hydra.
    """
    if any(a.split("=")[0] in _FLAGS_WITH_CONFIG for a in argv) or "--help" in argv or "-h" in argv:
        return
    args = [a for a in argv if "=" in a and not a.startswith("-")]
    try:
        parsed = OverridesParser.create().parse_overrides(args)
    except Exception:
        return  # Hydra reports syntax errors itself
    overrides = []
    for ov in parsed:
        if (
            ov.key_or_group == "hydra.run.dir"
            and not ov.is_sweep_override()
            and not {"-m", "--multirun"} & set(argv)
        ):
            run_dir = str(ov.value())
            task = [o.input_line for o in parsed if not o.key_or_group.startswith("hydra")]
            if "${" not in run_dir and (problems := same_overrides_problems(run_dir, task)):
                fail(problems)  # before Hydra rewrites its .hydra/ in there
        if ov.key_or_group.startswith("hydra") or ov.is_delete():
            continue
        value = next(iter(ov.sweep_string_iterator()), None) if ov.is_sweep_override() else None
        overrides.append(f"{ov.get_key_element()}={value}" if value is not None else ov.input_line)
    if not overrides:
        return
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        try:
            compose(config_name="train", overrides=overrides)
            return
        except Exception as e:  # noqa: BLE001 - inspect Hydra's message, re-raise nothing
            match = re.search(r"Could not override '([^']+)'", str(e))
            if not match:
                return
            key = match.group(1)
            rest = [o for o in overrides if not o.lstrip("+").startswith(f"{key}=")]
            try:
                base = compose(config_name="train", overrides=rest)
            except Exception:  # noqa: BLE001
                base = None
    parent, _, leaf = key.rpartition(".")
    node = OmegaConf.select(base, parent) if base is not None and parent else base
    allowed = sorted(node.keys()) if isinstance(node, DictConfig) else []
    where = f"under {parent}" if parent else "at the top level"
    fail(
        [
            f"unknown key {key} (no '{leaf}' {where}): allowed keys are {allowed}; "
            f"to add a new key on purpose use +{key}=..."
        ]
    )
