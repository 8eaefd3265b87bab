"""The open-ended nodes: `trainer` (any lightning.Trainer argument, the known ones typed), `diagnostics`."""

from __future__ import annotations

import inspect
from typing import Annotated, Any, Literal

import lightning as L
from pydantic import ConfigDict, Field, create_model

from ablate.schema.fields import (
    NonNegativeInt,
    OptionalBool,
    OptionalNonNegative,
    OptionalNonNegativeInt,
    OptionalPositiveInt,
    Positive,
    PositiveInt,
    Schema,
    Target,
    Text,
    allowed,
)


def _set_by_ablate(how: str) -> Any:
    return Annotated[None, allowed(f"not set here: {how}")]


def _int_or_minus_one(text: str, low: int = 1) -> Any:
    return Annotated[Literal[-1] | Annotated[int, Field(ge=low)], allowed(text)]


_BATCHES = Annotated[
    None | Annotated[int, Field(ge=0)] | Annotated[float, Field(ge=0, le=1)],
    allowed("null, a fraction in [0, 1] or a number of batches"),
]
_SWITCHES = (
    "enable_checkpointing", "enable_progress_bar", "enable_model_summary", "benchmark",
    "inference_mode", "use_distributed_sampler", "detect_anomaly", "barebones", "sync_batchnorm",
    "enable_autolog_hparams",
)  # fmt: skip
TRAINER_TYPES: dict[str, Any] = {
    "target": Target,
    "accelerator": Text,
    "strategy": Text,
    "devices": Annotated[
        Literal[-1] | Annotated[int, Field(gt=0)] | list[Annotated[int, Field(ge=0)]] | Text,
        allowed("a positive integer, -1, a list of device indices or auto"),
    ],
    "num_nodes": PositiveInt,
    "precision": Annotated[
        Text | int, allowed("a precision such as 32-true, bf16-mixed or 16-mixed")
    ],
    "fast_dev_run": Annotated[
        bool | Annotated[int, Field(ge=0)], allowed("true, false or a number of batches")
    ],
    "max_epochs": Annotated[
        None | _int_or_minus_one(""), allowed("a positive integer, -1 (no limit) or null")
    ],
    "min_epochs": OptionalNonNegativeInt,
    "max_steps": _int_or_minus_one("a positive integer or -1 (no limit)"),
    "min_steps": OptionalNonNegativeInt,
    "val_check_interval": Annotated[
        None | Annotated[float, Field(gt=0)], allowed("null or a number > 0")
    ],
    "check_val_every_n_epoch": OptionalPositiveInt,
    "num_sanity_val_steps": Annotated[
        None | _int_or_minus_one("", low=0), allowed("null, -1 (all) or an integer >= 0")
    ],
    "log_every_n_steps": OptionalNonNegativeInt,
    "accumulate_grad_batches": PositiveInt,
    "gradient_clip_val": OptionalNonNegative,
    "gradient_clip_algorithm": Annotated[
        None | Literal["norm", "value"], allowed("null, norm or value")
    ],
    "reload_dataloaders_every_n_epochs": NonNegativeInt,
    "default_root_dir": Annotated[None | Text, allowed("null or a path")],
    **dict.fromkeys(
        ("limit_train_batches", "limit_val_batches", "limit_test_batches", "limit_predict_batches"),
        _BATCHES,
    ),
    **dict.fromkeys(_SWITCHES, OptionalBool),
    "callbacks": _set_by_ablate("callbacks come from callbacks=... and diagnostics=..."),
    "logger": _set_by_ablate("loggers come from logger=... (logger=none: no logger)"),
    "deterministic": _set_by_ablate("use the top-level deterministic=true/false"),
    "plugins": _set_by_ablate("ablate adds its own checkpoint writer"),
}
TRAINER_ARGS = sorted(set(inspect.signature(L.Trainer.__init__).parameters) - {"self"})
# Any lightning.Trainer argument (the known ones typed, the rest as Trainer takes them), nothing else.
Trainer = create_model(
    "Trainer",
    __base__=Schema,
    **{arg: (TRAINER_TYPES.get(arg, Any), None) for arg in ["target", *TRAINER_ARGS]},
)


class Diagnostic(Schema):
    """A diagnostics callback: its intervals typed, other arguments left to its constructor."""

    model_config = ConfigDict(extra="allow")
    target: Target
    every_n_steps: NonNegativeInt = 50
    histogram_every_n_steps: NonNegativeInt = 200
    percentiles: Annotated[
        list[Annotated[float, Field(ge=0, le=100)]], allowed("a list of numbers in [0, 100]")
    ] = [15, 50, 85]
    min_factor: Positive = 0.5
    max_factor: Positive = 4.0
    points: PositiveInt = 4
