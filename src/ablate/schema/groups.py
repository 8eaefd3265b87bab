"""Models of the strict groups: one per option (by `_target_`), only the keys it takes."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from ablate.schema.fields import (
    Activation,
    Bool,
    Distribution,
    Fraction,
    Gain,
    NonNegative,
    NonNegativeInt,
    Number,
    OpenFraction,
    OptionalBool,
    OptionalNonNegativeInt,
    OptionalPositiveInt,
    Partial,
    Positive,
    PositiveInt,
    Probability,
    Schema,
    Target,
    Text,
    allowed,
    one_of,
    pair,
)
from ablate.techniques.norm import PLACEMENTS


def _ordered(low_high: list[float]) -> list[float]:
    if low_high[0] > low_high[1]:
        raise ValueError("low > high")
    return low_high


class Data(Schema):
    target: Target
    dataset: Text
    root: Text
    cache_dir: Text
    download: Bool = True
    batch_size: PositiveInt = 128
    eval_batch_size: PositiveInt = 1000
    val_fraction: OpenFraction = 0.1
    train_subset: OptionalPositiveInt = None
    standardize: Bool = True
    num_workers: NonNegativeInt = 0
    on_device: OptionalBool = None
    eval_train_max: OptionalNonNegativeInt = 10000
    channels: one_of(1, 3) = 1
    image_size: pair(Annotated[int, Field(gt=0)], "[height, width], positive integers") = [28, 28]
    num_classes: PositiveInt = 10
    aug_family: one_of("digits", "fashion", "natural") = "digits"


class _Net(Schema):
    target: Target
    partial: Partial = True
    activation: Activation = "relu"
    channels_last: Bool = False
    tta_flip: Bool = False
    compile: Bool = False


class CNN(_Net):
    channels: Annotated[
        list[Annotated[int, Field(gt=0)]],
        Field(min_length=1),
        allowed("a non-empty list of positive integers"),
    ] = [32, 64]
    convs: PositiveInt = 1
    hidden: NonNegativeInt = 128
    pool: Bool = True
    head_norm: Bool = False


class PlainDeep(_Net):
    depth: PositiveInt = 20
    width: PositiveInt = 16
    pool_stages: NonNegativeInt = 2


class MLP(_Net):
    depth: Annotated[None | Annotated[int, Field(ge=0)], allowed("null or an integer >= 0")] = 3
    width: Annotated[
        Annotated[int, Field(gt=0)]
        | Annotated[list[Annotated[int, Field(gt=0)]], Field(min_length=1)],
        allowed("a positive integer or a non-empty list of them"),
    ] = 128


class _Norm(Schema):
    target: Target
    placement: one_of(*PLACEMENTS) = "before_act"


class NoNorm(_Norm):
    pass


class LayerNorm(_Norm):
    eps: Positive = 1e-5


class BatchNorm(LayerNorm):
    momentum: Annotated[
        None | Annotated[float, Field(ge=0, le=1)], allowed("null or a number in [0, 1]")
    ] = 0.1


class NoisyBatchNorm(BatchNorm):
    shift: NonNegative = 1.0
    scale: Annotated[
        list[Annotated[float, Field(gt=0)]],
        Field(min_length=2, max_length=2),
        AfterValidator(_ordered),
        allowed("a pair [low, high] with 0 < low <= high"),
    ] = [0.5, 2.0]
    per_sample: Bool = True


class GroupNorm(LayerNorm):
    groups: PositiveInt = 8


class Reg(Schema):
    target: Annotated[None | Text, Field(alias="_target_"), allowed("an import path")] = None
    l1: NonNegative = 0.0
    l2: NonNegative = 0.0
    weight_decay: NonNegative = 0.0
    dropout: Probability = 0.0
    dropout2d: Probability = 0.0
    label_smoothing: Probability = 0.0
    input_dropout: Annotated[
        None | Annotated[float, Field(ge=0, lt=1)], allowed("null or a number in [0, 1)")
    ] = None
    max_norm: Annotated[None | Annotated[float, Field(gt=0)], allowed("null or a number > 0")] = (
        None
    )


class Study(Schema):
    """A preset's declared seed budget for `python -m ablate.study` (its flags override it).

    Unset keys keep ablate.study's defaults (ablate.study.rounds: MAX_SEEDS, ADD; no time cap).
    """

    max_seeds: Annotated[None | Annotated[int, Field(gt=0)], allowed("a positive integer")] = None
    add: Annotated[None | Annotated[int, Field(gt=0)], allowed("a positive integer")] = None
    max_hours: Annotated[None | Annotated[float, Field(gt=0)], allowed("null or a number > 0")] = (
        None
    )


class Init(Schema):
    target: Target
    partial: Partial = True


class He(Init):
    distribution: Distribution = "normal"
    mode: one_of("fan_in", "fan_out") = "fan_in"


class Xavier(Init):
    distribution: Distribution = "normal"
    gain: Gain = 1.0


class Lecun(Init):
    distribution: Distribution = "normal"


class Orthogonal(Init):
    gain: Gain = "auto"


class Constant(Init):
    value: Number = 0.01


class Aug(Schema):
    """One albumentations pipeline (or null) per dataset family; the datamodule builds them."""

    digits: dict[str, Any] | None = None
    fashion: dict[str, Any] | None = None
    natural: dict[str, Any] | None = None


NoDecay = Annotated[
    float, Field(ge=0, le=0), allowed("0 (decay is reg.weight_decay: decoupled, weights only)")
]


class Optim(Schema):
    target: Target
    partial: Partial = True
    lr: Positive = 0.05
    weight_decay: NoDecay = 0.0


class SGD(Optim):
    momentum: NonNegative = 0.0
    dampening: NonNegative = 0.0
    nesterov: Bool = False


Betas = pair(Annotated[float, Field(ge=0, lt=1)], "a pair [beta1, beta2] of numbers in [0, 1)")


class Adam(Optim):
    betas: Betas = [0.9, 0.999]
    eps: NonNegative = 1e-8
    amsgrad: Bool = False


class Scheduler(Schema):
    target: Target
    partial: Partial = True


class NoScheduler(Schema):
    """scheduler=none: an empty node, a constant learning rate."""


class Cosine(Scheduler):
    warmup_steps: NonNegativeInt = 0
    min_ratio: Fraction = 0.0


class OneCycle(Scheduler):
    pct_start: OpenFraction = 0.25
    div_factor: Positive = 25.0
    final_div_factor: Positive = 1e4


class Step(Scheduler):
    milestones: Annotated[
        list[Annotated[float, Field(ge=0, le=1)]],
        allowed("a list of fractions of training in [0, 1]"),
    ] = [0.5, 0.75]
    gamma: Positive = 0.1
