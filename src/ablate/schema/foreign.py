"""Types for the keys of targets that are not ablate's: torch optimizers and the Lightning Trainer.

Their own annotations are not ablate's types, so their known keys are typed here; any other
argument of their signature is taken as they take it.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field

from ablate.schema.fields import (
    Bool,
    NonNegative,
    NonNegativeInt,
    OptionalBool,
    OptionalNonNegative,
    OptionalNonNegativeInt,
    OptionalPositiveInt,
    Positive,
    PositiveInt,
    Text,
    allowed,
    pair,
)

NoDecay = Annotated[
    float, Field(ge=0, le=0), allowed("0 (decay is reg.weight_decay: decoupled, weights only)")
]
OPTIM_TYPES: dict[str, Any] = {
    "lr": Positive,
    "weight_decay": NoDecay,
    "momentum": NonNegative,
    "dampening": NonNegative,
    "nesterov": Bool,
    "betas": pair(
        Annotated[float, Field(ge=0, lt=1)], "a pair [beta1, beta2] of numbers in [0, 1)"
    ),
    "eps": NonNegative,
    "amsgrad": Bool,
}


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
    "val_check_interval": Annotated[  # Lightning: a fraction of the epoch, or a number of batches
        None | Annotated[int, Field(gt=0)] | Annotated[float, Field(gt=0, le=1)],
        allowed("null, a fraction of an epoch in (0, 1] or a number of batches"),
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
