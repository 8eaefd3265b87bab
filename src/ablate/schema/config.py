"""The typed schema of the composed config (pydantic v2), and its problems as one line each.

A node with a `_target_` takes what its target takes: the parameters of the function or class it
names, less those the recipe passes itself (GROUPS), typed by their `Annotated` hints (the ranges
sit on the technique: ablate.schema.fields) or, for torch and Lightning targets, by
ablate.schema.foreign. A target with **kwargs takes other keys too; others are refused. So
a new option file needs no entry here, and its unknown keys are refused like any other's.
A problem reads `reg.dropout=1.5 is not allowed: a number in [0, 1)`.
"""

from __future__ import annotations

import difflib
import functools
import inspect
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field, is_dataclass
from typing import Annotated, Any, Literal

from hydra.utils import get_object
from pydantic import BaseModel, ConfigDict, Field, ValidationError, create_model

from ablate.models.build import NET_ARGS
from ablate.models.speed import SWITCHES
from ablate.run.identity import RESUME_MODES
from ablate.schema.fields import (
    Bool,
    OptionalPositive,
    OptionalPositiveInt,
    Partial,
    Schema,
    Target,
    Text,
    allowed,
    one_of,
)
from ablate.schema.foreign import OPTIM_TYPES, TRAINER_TYPES


@dataclass(frozen=True)
class Group:
    """What the recipe does with a group's node besides building its `_target_`."""

    passes: tuple[str, ...] = ()  # arguments the recipe passes itself: not config keys
    partial: bool = False  # built with `_partial_: true`, called later with `passes`
    reads: Mapping[str, Any] = field(default_factory=dict)  # keys the recipe reads, not the target
    types: Mapping[str, Any] = field(default_factory=dict)  # types of a foreign target's keys
    optional: bool = False  # an empty node (no `_target_`) builds nothing


GROUPS: dict[str, Group] = {
    "data": Group(passes=("aug", "seed")),
    "model": Group(passes=NET_ARGS, partial=True, reads=SWITCHES),
    "norm": Group(),
    "reg": Group(),
    "init": Group(passes=("weight", "activation"), partial=True),
    "optim": Group(passes=("params",), partial=True, types=OPTIM_TYPES),
    "scheduler": Group(passes=("optimizer", "total_steps"), partial=True, optional=True),
    "trainer": Group(types=TRAINER_TYPES),
    "eval": Group(),
}
ENTRIES = ("callbacks", "logger", "diagnostics")  # named entries, each built from its `_target_`
_ENTRY = Group(optional=True)


class _Open(Schema):
    model_config = ConfigDict(extra="allow")


class Untargeted(Schema):
    """A node of a group that builds something, without the `_target_` saying what."""

    target: Target


class Empty(Schema):
    """An empty node: nothing is built (scheduler=none)."""


@functools.cache
def node_model(target: str, group: str) -> type[BaseModel]:
    """The keys a `_target_` takes in a group: its parameters, typed; raises if it cannot be imported."""
    rule = GROUPS.get(group, _ENTRY)
    obj = get_object(target)
    fn = obj if is_dataclass(obj) or not inspect.isclass(obj) else obj.__init__
    params = [
        p for p in inspect.signature(inspect.unwrap(fn)).parameters.values() if p.name != "self"
    ]
    try:
        hints = typing.get_type_hints(inspect.unwrap(fn), include_extras=True)
    except Exception:  # noqa: BLE001 - hints that do not resolve: the group's types only
        hints = {}
    fields: dict[str, Any] = {"target": (Target, ...)}
    if rule.partial:
        fields["partial"] = (Partial, True)
    for p in params:
        if p.name in rule.passes or p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            continue
        hint = hints.get(p.name)  # an Annotated hint is a declared range (ablate.schema.fields)
        kind = hint if typing.get_origin(hint) is Annotated else rule.types.get(p.name, Any)
        fields[p.name] = (kind, ... if p.default is p.empty else p.default)
    fields |= {k: (t, None) for k, t in rule.reads.items()}
    base = _Open if any(p.kind == p.VAR_KEYWORD for p in params) else Schema
    return create_model(target.rpartition(".")[2], __base__=base, **fields)


class Aug(Schema):
    """One albumentations pipeline (or null) per dataset family; the datamodule builds them."""

    digits: dict[str, Any] | None = None
    fashion: dict[str, Any] | None = None
    natural: dict[str, Any] | None = None


class Study(Schema):
    """A preset's declared seed budget for `python -m ablate.study` (its flags override it).

    Unset keys keep ablate.study's defaults (ablate.study.rounds: MAX_SEEDS, ADD; no time cap).
    """

    max_seeds: Annotated[OptionalPositiveInt, allowed("a positive integer")] = None
    add: Annotated[OptionalPositiveInt, allowed("a positive integer")] = None
    max_hours: OptionalPositive = None


class TrainConfig(Schema):
    """The composed config's top-level keys (conf/train.yaml); its nodes are checked one by one."""

    model_config = ConfigDict(extra="allow")
    seed: Annotated[None | Annotated[int, Field(ge=0)], allowed("null or an integer >= 0")] = 0
    deterministic: Bool = True
    threads: Annotated[
        Literal["auto"] | Annotated[int, Field(gt=0)], allowed("auto or a positive integer")
    ] = "auto"
    steps_per_call: Annotated[
        Literal["auto"] | Annotated[int, Field(gt=0)], allowed("auto or a positive integer")
    ] = 1
    group_seeds: Annotated[int, Field(gt=0), allowed("a positive integer")] = 1
    max_loss: Annotated[  # inf: only NaN counts as diverged
        float, Field(gt=0, allow_inf_nan=True), allowed("a number > 0 (or inf)")
    ] = 1000.0
    log_dir: Text = "logs"
    resume: one_of(*RESUME_MODES) = "auto"


NODES = {"aug": Aug, "study": Study}  # nodes with no `_target_` (study: read by ablate.study only)


# ---------------------------------------------------------------- problems, one line each
_MISSING = object()


def show(value: Any) -> str:
    """A value as it is written in YAML or on the command line (strings quoted)."""
    if value is None or isinstance(value, bool):
        return {None: "null", True: "true", False: "false"}[value]
    if isinstance(value, list | tuple):
        return "[" + ", ".join(show(v) for v in value) + "]"
    return repr(value)


def _locate(conf: Mapping, loc: tuple) -> tuple[str, Any]:
    """The dotted key and the value an error's location points at (union tags skipped)."""
    parts, node = [], conf
    for i, element in enumerate(loc):
        if isinstance(node, Mapping) and element in node:
            parts.append(str(element))
            node = node[element]
        elif isinstance(node, list) and isinstance(element, int) and element < len(node):
            parts[-1] += f"[{element}]"
            node = node[element]
        elif i == len(loc) - 1:  # a key that is not there (missing)
            parts.append(str(element))
            node = _MISSING
    return ".".join(parts), node


def allowed_keys(model: type[BaseModel]) -> list[str]:
    """The keys a node model takes, as they are written in YAML."""
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _unknown_key(key: str, model: type[BaseModel], choices: Mapping[str, str | None]) -> str:
    group, _, leaf = key.partition(".")
    keys = allowed_keys(model)
    if group == "trainer":
        close = difflib.get_close_matches(leaf, keys, n=1)
        hint = f" (did you mean trainer.{close[0]}?)" if close else ""
        return f"unknown key {key}: not a lightning.Trainer argument{hint}"
    option = f" for {group}={choices[group]}" if choices.get(group) else ""
    return f"unknown key {key}{option}: allowed keys are {keys}"


def describe(error: Mapping, conf: Mapping, model: type[BaseModel], choices: Mapping) -> str:
    """One pydantic error as one line naming the key, the value and what is allowed."""
    key, value = _locate(conf, error["loc"])
    if error["type"] == "extra_forbidden":
        return _unknown_key(key, model, choices)
    if error["type"] == "missing" or value is _MISSING:
        return f"{key} is required but not set: add {key}=... to the command line"
    text = error["msg"]
    text = text if error["type"] == "not_allowed" else text[:1].lower() + text[1:]
    return f"{key}={show(value)} is not allowed: {text}"


def model_of(where: str, group: str, node: Any) -> type[BaseModel]:
    """The model a node is checked with; raises ValueError naming a target that cannot be imported."""
    target = node.get("_target_") if isinstance(node, Mapping) else None
    if not isinstance(target, str) or not target:
        return Empty if GROUPS.get(group, _ENTRY).optional else Untargeted
    try:
        return node_model(target, group)
    except Exception as e:  # noqa: BLE001 - whatever importing it raised
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ValueError(f"{where}._target_={target!r} cannot be imported: {reason}") from None


def _nodes(conf: Mapping) -> list[tuple[tuple, str, Any]]:
    """(location, group, node) of every node checked on its own."""
    found = [((g,), g, conf.get(g)) for g in [*GROUPS, *NODES] if g in GROUPS or conf.get(g)]
    for g in ENTRIES:
        entries = conf.get(g) or {}
        found += [((g, k), g, v) for k, v in entries.items() if isinstance(v, Mapping)]
    return found


def _errors(model: type[BaseModel], value: Any, loc: tuple) -> list[dict]:
    try:
        model.model_validate(value)
    except ValidationError as e:
        return [{**err, "loc": loc + tuple(err["loc"])} for err in e.errors()]
    return []


def schema_problems(conf: Mapping, choices: Mapping[str, str | None] | None = None) -> list[str]:
    """Every key of the resolved config (a plain dict) that the schema refuses, one line each."""
    choices = choices or {}
    lines = [describe(e, conf, TrainConfig, choices) for e in _errors(TrainConfig, conf, ())]
    for loc, group, node in _nodes(conf):
        where = ".".join(loc)
        try:
            model = NODES.get(group) or model_of(where, group, node)
        except ValueError as e:
            lines.append(str(e))
            continue
        lines += [describe(e, conf, model, choices) for e in _errors(model, node or {}, loc)]
    return list(dict.fromkeys(lines))  # in order, each once
