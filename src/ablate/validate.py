"""Checks of the composed config before anything is read or written: one line per problem, exit 2.

In order, each step only once the ones before it found nothing:
1. values left `???` and interpolations that do not resolve;
2. the typed schema (ablate.schema): types, ranges, choices, unknown keys; output paths;
3. what holds only across keys (norm.groups dividing the widths, head_norm, tta_flip on digits);
4. what the constructors refuse (ablate.construct: norm, optimizer, scheduler, datamodule, model,
   trainer, built cheaply), and what the data's known counts and this machine cannot hold
   (ablate.limits: batch and subset sizes, devices, workers, memory); then dataset files that
   are not there. An image folder's counts are checked once it is read, before training.
The command line is checked before Hydra starts (ablate.preflight); each run checks again.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hydra.utils import get_class, instantiate
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from ablate.config import CONF_DIR
from ablate.data.decode import DatasetNotFoundError
from ablate.overrides import value_text
from ablate.run.extras import missing_extras
from ablate.schema.config import schema_problems

EXIT_BAD_CONFIG = 2


class ConfigError(ValueError):
    """A bad config value; the message is the one line shown to the user."""


def fail(problems: list[str]) -> None:
    """Print each problem on its own line and exit with code 2 (nothing has been written yet)."""
    for p in problems:
        print(f"error: {p}", file=sys.stderr)
    raise SystemExit(EXIT_BAD_CONFIG)


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def omegaconf_problem(e: OmegaConfBaseException) -> str:
    """An OmegaConf error's first line (the rest repeats the key and the node's type)."""
    return one_line(str(e).splitlines()[0] if str(e) else type(e).__name__)


def choices_of(cfg: DictConfig, choices: Mapping[str, str | None] | None) -> dict:
    """The option chosen per group: as given, else from the config's hydra node (when composed so)."""
    if choices is not None:
        return dict(choices)
    found = OmegaConf.select(cfg, "hydra.runtime.choices", default=None)
    return dict(found) if found is not None else {}


def missing_keys(cfg: DictConfig) -> list[str]:
    """Dotted keys whose value is `???` (without resolving interpolations; hydra.* left out)."""
    found = []

    def walk(node: Any, prefix: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, f"{prefix}{k}.")
        elif node == "???":
            found.append(prefix[:-1])

    walk({k: v for k, v in OmegaConf.to_container(cfg, resolve=False).items() if k != "hydra"}, "")
    return found


def resolved(cfg: DictConfig) -> dict:
    """The config as plain values, interpolations resolved (hydra.* left out)."""
    out = {}
    for key in cfg:
        if key != "hydra":
            value = cfg[key]
            container = isinstance(value, DictConfig | ListConfig)
            out[key] = OmegaConf.to_container(value, resolve=True) if container else value
    return out


def typed_problems(cfg: DictConfig, choices: Mapping | None = None) -> tuple[list[str], dict]:
    """Steps 1 and 2 (without paths): the problems, and the resolved config they were found in."""
    if missing := missing_keys(cfg):
        return [
            f"{k} is required but not set: add {k}=... to the command line" for k in missing
        ], {}
    try:
        conf = resolved(cfg)
    except OmegaConfBaseException as e:
        where = getattr(e, "full_key", None) or "the config"
        return [f"{where} cannot be resolved: {omegaconf_problem(e)}"], {}
    return schema_problems(conf, choices_of(cfg, choices)), conf


def _normalizes_vectors(cfg: DictConfig) -> bool:
    """Ask the norm whether it can normalize (N, C) feature vectors (construction reports a norm
    that cannot be built)."""
    try:
        norm = instantiate(cfg.norm)
    except Exception:  # noqa: BLE001 - reported by ablate.construct
        return True
    return getattr(norm, "vectors", True)


def _divisors(widths: list[int]) -> str:
    """The group counts that divide every width, as `1, 2, 4 or 8` (the first six)."""
    common = math.gcd(*[w for w in widths if isinstance(w, int)])
    found = [str(d) for d in range(1, common + 1) if common % d == 0][:6]
    return ", ".join(found[:-1]) + f" or {found[-1]}" if len(found) > 1 else found[0]


def cross_key_problems(conf: dict, cfg: DictConfig, choices: Mapping | None = None) -> list[str]:
    """Step 3, on a config whose every value is valid on its own."""
    problems = []
    model, norm, data = conf["model"], conf["norm"], conf["data"]
    head_norm = model.get("head_norm") is True and bool(model.get("hidden"))
    groups = norm.get("groups")
    if isinstance(groups, int):
        width = model.get("width", [])
        widths = list(model.get("channels", width if isinstance(width, list) else [width]))
        if head_norm:
            widths.append(model["hidden"])
        if bad := [c for c in widths if isinstance(c, int) and c % groups]:
            problems.append(
                f"norm.groups={groups} does not divide the channel counts {bad} of the model: "
                f"use a divisor of every width in {widths} (norm.groups={_divisors(widths)})"
            )
    if head_norm and not _normalizes_vectors(cfg):
        name = choices_of(cfg, choices).get("norm") or norm["_target_"].rpartition(".")[2]
        problems.append(
            f"model.head_norm=true with norm={name}: a feature vector has no spatial extent to "
            "normalize over; use norm=batch, layer or group, or model.head_norm=false"
        )
    source = get_class(data["_target_"])
    if getattr(source, "name", None) not in (None, data.get("dataset")):  # mislabels reports
        option = (
            data["dataset"]
            if (CONF_DIR / "data" / f"{data['dataset']}.yaml").exists()
            else "<option>"
        )
        problems.append(
            f"data.dataset={data.get('dataset')!r}, but {source.__name__} reads {source.name}: "
            f"choose the dataset with data={option} and leave data.dataset out"
        )
    if model.get("tta_flip") is True and data.get("aug_family") == "digits":
        problems.append(
            "model.tta_flip=true with digits: a mirrored 2, 3, 7 or 9 is not a digit, so "
            "averaging over mirrors hurts; use model.tta_flip=false on MNIST"
        )
    return problems


def sampler_problems(cfg: DictConfig, data: dict) -> list[str]:
    """DDP on the CPU data path: the datamodule shards its own batches, Lightning must not."""
    trainer = OmegaConf.to_container(cfg.trainer, resolve=True) if "trainer" in cfg else {}
    devices = trainer.get("devices", 1)
    many = (isinstance(devices, int) and (devices > 1 or devices == -1)) or (
        isinstance(devices, list) and len(devices) > 1
    )
    if not (many or (trainer.get("num_nodes") or 1) > 1) or data.get("on_device") is True:
        return []
    if trainer.get("use_distributed_sampler", True) is False:
        return []
    return [
        f"trainer.devices={devices} with data.on_device={value_text(data.get('on_device'))}: the datamodule "
        "shards batches over ranks itself; add trainer.use_distributed_sampler=false (trainer=ddp sets it)"
    ]


def value_problems(cfg: DictConfig, choices: Mapping | None = None) -> list[str]:
    """Steps 1-3: every value valid on its own and together (nothing built, no files looked at)."""
    problems, conf = typed_problems(cfg, choices)
    return problems or cross_key_problems(conf, cfg, choices)


def data_problems(cfg: DictConfig) -> list[str]:
    """Missing dataset files (a cheap existence check; nothing is decoded)."""
    try:
        source = get_class(cfg.data._target_)
        source.locate(Path(cfg.data.root).expanduser().resolve(), download=cfg.data.download)
    except DatasetNotFoundError as e:
        return [one_line(e)]
    return []


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
            value = OmegaConf.select(cfg, dotted, default=None)
            if value is None:
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
    cfg: DictConfig,
    choices: Mapping[str, str | None] | None = None,
    run_dir: str | Path | None = None,
    *,
    combination: bool = True,
    trainer: bool = True,
) -> list[str]:
    """Every problem of the config, one line each (empty when it can train).

    combination=False stops after what each value is on its own (steps 1-2, paths, devices and
    workers the machine lacks, dataset files): a sweep refuses such a value in any cell before it
    starts. trainer=False leaves the Trainer unbuilt and the machine unchecked (its hardware is
    where the job runs, e.g. under SLURM).
    """
    from ablate.construct import construction_problems  # builds models: imported when needed
    from ablate.limits import hardware_problems

    problems, conf = typed_problems(cfg, choices)
    if conf and run_dir is not None:
        problems += path_problems(cfg, run_dir)
    if conf:
        problems += missing_extras(cfg)  # logger=mlflow without the mlflow extra installed
    if problems:
        return problems
    if combination:
        problems = cross_key_problems(conf, cfg, choices)
        problems = problems or construction_problems(cfg, choices_of(cfg, choices), trainer=trainer)
        problems = problems or sampler_problems(cfg, conf["data"])  # after the machine's limits
    elif trainer:
        problems = hardware_problems(cfg)
    return problems or data_problems(cfg)
