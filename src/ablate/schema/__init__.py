"""The typed schema of the composed config (pydantic v2), and its problems as one line each.

One model per option of a strict group, picked by the node's `_target_` (a `_target_` the schema
does not know gets an open model: its constructor checks it, see ablate.construct). Strict
groups forbid keys their option does not take; `trainer` takes any lightning.Trainer argument.
A problem reads `reg.dropout=1.5 is not allowed: a number in [0, 1)`.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ablate.run.identity import RESUME_MODES
from ablate.schema import groups as g
from ablate.schema.fields import (
    Bool,
    Open,
    Schema,
    Text,
    allowed,
    by_target,
    model_for,
    one_of,
)
from ablate.schema.trainer import TRAINER_ARGS, Diagnostic, Trainer

STRICT_GROUPS = ("data", "model", "norm", "reg", "init", "aug", "optim", "scheduler")
# Each group: its model, or {_target_: model} for groups whose options differ by what they build.
GROUPS: dict[str, type[BaseModel] | dict[str, type[BaseModel]]] = {
    "data": g.Data,
    "model": {
        "ablate.models.cnn.CNN": g.CNN,
        "ablate.models.plain_deep.PlainDeep": g.PlainDeep,
        "ablate.models.mlp.MLP": g.MLP,
    },
    "norm": {
        f"ablate.techniques.norm.{name}": model
        for name, model in [
            ("none", g.NoNorm),
            ("batch", g.BatchNorm),
            ("layer", g.LayerNorm),
            ("batch_noisy", g.NoisyBatchNorm),
            ("group", g.GroupNorm),
            ("instance", g.LayerNorm),
        ]
    },  # fmt: skip
    "reg": g.Reg,
    "init": {
        f"ablate.techniques.init.{name}": model
        for name, model in [
            ("he", g.He),
            ("xavier", g.Xavier),
            ("lecun", g.Lecun),
            ("orthogonal", g.Orthogonal),
            ("constant", g.Constant),
            ("default", g.Init),
        ]
    },  # fmt: skip
    "aug": g.Aug,
    "optim": {"torch.optim.SGD": g.SGD, "torch.optim.Adam": g.Adam, "torch.optim.AdamW": g.Adam},
    "scheduler": {
        f"ablate.techniques.scheduler.{name}": model
        for name, model in [("cosine", g.Cosine), ("onecycle", g.OneCycle), ("step", g.Step)]
    },
    "trainer": Trainer,
}


def _group(name: str) -> Any:
    spec = GROUPS[name]
    if not isinstance(spec, dict):
        return spec
    return by_target(spec, g.NoScheduler if name == "scheduler" else Open)


class TrainConfig(Schema):
    """The composed config (conf/train.yaml): typed top-level keys and groups; other keys open."""

    model_config = ConfigDict(extra="allow")
    seed: Annotated[None | Annotated[int, Field(ge=0)], allowed("null or an integer >= 0")] = 0
    deterministic: Bool = True
    threads: Annotated[
        Literal["auto"] | Annotated[int, Field(gt=0)], allowed("auto or a positive integer")
    ] = "auto"
    max_loss: Annotated[  # inf: only NaN counts as diverged
        float, Field(gt=0, allow_inf_nan=True), allowed("a number > 0 (or inf)")
    ] = 1000.0
    log_dir: Text = "logs"
    resume: one_of(*RESUME_MODES) = "auto"
    data: _group("data")
    model: _group("model")
    norm: _group("norm")
    reg: _group("reg")
    init: _group("init")
    aug: _group("aug")
    optim: _group("optim")
    scheduler: _group("scheduler")
    trainer: _group("trainer")
    diagnostics: dict[str, Diagnostic | None] | None = None
    study: g.Study | None = None  # read by ablate.study only


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


def _keys(model: type[BaseModel]) -> list[str]:
    return sorted(f.alias or name for name, f in model.model_fields.items())


def _unknown_key(key: str, conf: Mapping, choices: Mapping[str, str | None]) -> str:
    group, _, leaf = key.partition(".")
    if group == "trainer":
        close = difflib.get_close_matches(leaf, TRAINER_ARGS, n=1)
        hint = f" (did you mean trainer.{close[0]}?)" if close else ""
        return f"unknown key {key}: not a lightning.Trainer argument{hint}"
    spec = GROUPS.get(group)
    model = model_for(spec, conf.get(group)) if isinstance(spec, dict) else spec
    keys = _keys(model) if model is not None else []
    option = f" for {group}={choices[group]}" if choices.get(group) else ""
    return f"unknown key {key}{option}: allowed keys are {keys}"


def describe(error: Mapping, conf: Mapping, choices: Mapping[str, str | None]) -> str:
    """One pydantic error as one line naming the key, the value and what is allowed."""
    key, value = _locate(conf, error["loc"])
    if error["type"] == "extra_forbidden":
        return _unknown_key(key, conf, choices)
    if error["type"] == "missing" or value is _MISSING:
        return f"{key} is required but not set: add {key}=... to the command line"
    text = (
        error["msg"]
        if error["type"] == "not_allowed"
        else error["msg"][:1].lower() + error["msg"][1:]
    )
    return f"{key}={show(value)} is not allowed: {text}"


def schema_problems(conf: Mapping, choices: Mapping[str, str | None] | None = None) -> list[str]:
    """Every key of the resolved config (a plain dict) that the schema refuses, one line each."""
    try:
        TrainConfig.model_validate(conf)
    except ValidationError as e:
        lines = [describe(err, conf, choices or {}) for err in e.errors()]
        return list(dict.fromkeys(lines))  # in order, each once
    return []
