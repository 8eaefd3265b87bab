"""`layers` (conf/model/lecture_*.yaml): a Keras-like Sequential written as a list of layer tokens.

One token per Keras line, in the same order:
  norm                          a layer of the `norm` group: norm(C) on feature maps,
                                norm.for_vectors(F) on vectors; with norm=none it vanishes
  conv <channels> [activation]  Conv2D(channels, 3, 1, padding='same'), with bias
  maxpool                       MaxPool2D(): 2x2, stride 2, odd sizes rounded down (Keras 'valid')
  flatten                       Flatten()
  dense <units> [activation] [l1=<x>] [l2=<x>]
                                Dense(units, kernel_regularizer=L1L2(l1, l2)): the training loss
                                gets l1 * sum|w| + l2 * sum w^2 of this layer's weight (no bias)
  dropout <p>                   Dropout(p)
  <activation>                  Activation(name): relu, tanh, sigmoid, ...
conv and dense without an activation are linear, as in Keras. A dense on feature maps flattens them
first, so a Keras MLP written for vectors runs on images unchanged. Linear(features, num_classes) is
appended: Keras' last `Dense(10, activation='softmax')` as logits (the cross-entropy applies the
softmax). norm.placement is not read: the tokens place the norm. The rates of `reg` act as on
model=cnn: reg.dropout is a Dropout before that classifier, reg.dropout2d a Dropout2d after every
maxpool, reg.input_dropout a Dropout on the pixels.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated

import torch
from pydantic import AfterValidator
from pydantic_core import PydanticCustomError
from torch import nn

from ablate.models.blocks import ACTIVATIONS, Activation, activation_layer
from ablate.schema.fields import allowed
from ablate.techniques.norm import Norm
from ablate.techniques.norm import none as no_norm
from ablate.techniques.reg import penalty

FORMS = {
    "conv": "conv <channels> [activation]",
    "dense": "dense <units> [activation] [l1=<x>] [l2=<x>]",
    "dropout": "dropout <p>",
}
TOKENS = f"norm, maxpool, flatten, {', '.join(FORMS.values())} or an activation"
ACTS = sorted(ACTIVATIONS)
SOFTMAX = (
    "the classifier Linear(features, num_classes) is appended and the cross-entropy applies the "
    "softmax: leave out Keras' last Dense(classes, activation='softmax')"
)


@dataclass(frozen=True)
class Spec:
    """One parsed token."""

    kind: str  # norm, conv, maxpool, flatten, dense, dropout, activation
    size: int = 0  # conv channels, dense units
    activation: str | None = None  # None: linear
    rate: float = 0.0
    l1: float = 0.0
    l2: float = 0.0


def _number(text: str, form: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} is not a number >= 0: write {form}")
    return value


def _sized(head: str, args: list[str]) -> Spec:
    """A conv or dense token: the size, then an activation and (dense) l1=/l2= in any order."""
    form = FORMS[head]
    if not args or not args[0].isdecimal() or int(args[0]) < 1:
        raise ValueError(f"{head} needs a positive integer first: write {form}")
    activation, penalties = None, {}
    for word in args[1:]:
        key, eq, value = word.partition("=")
        if eq and head == "dense" and key in ("l1", "l2") and key not in penalties:
            penalties[key] = _number(value, form)
        elif word == "softmax":
            raise ValueError(SOFTMAX)
        elif not eq and activation is None and word in (*ACTIVATIONS, "linear"):
            activation = None if word == "linear" else word
        else:
            raise ValueError(f"{word!r} is not allowed: write {form}, activation in {ACTS}")
    return Spec(
        head, int(args[0]), activation, 0.0, penalties.get("l1", 0.0), penalties.get("l2", 0.0)
    )


def parse(token: str) -> Spec:
    """One token as a Spec; a bad one raises ValueError with the reason and the fix."""
    head, *args = token.split() or [""]
    if head in ACTIVATIONS and not args:
        return Spec("activation", activation=head)
    if head in ("norm", "maxpool", "flatten"):
        if args:
            raise ValueError(f"{head} takes no arguments: write {head}")
        return Spec(head)
    if head == "dropout":
        rate = _number(args[0], FORMS[head]) if len(args) == 1 else math.inf
        if not rate < 1:
            raise ValueError(f"dropout needs one rate 0 <= p < 1: write {FORMS[head]}")
        return Spec("dropout", rate=rate)
    if head in FORMS:
        return _sized(head, args)
    if head == "softmax":
        raise ValueError(SOFTMAX)
    raise ValueError(f"unknown layer {head!r}: write one of {TOKENS} (activation in {ACTS})")


def order_problem(specs: Sequence[Spec]) -> tuple[int, str] | None:
    """The first token that needs feature maps after they were flattened, with the fix."""
    flat = False
    for i, spec in enumerate(specs):
        if spec.kind in ("conv", "maxpool") and flat:
            return i, "needs feature maps: move it before the first flatten or dense"
        flat = flat or spec.kind in ("flatten", "dense")
    return None


def _token(token: str) -> str:
    try:
        parse(token)
    except ValueError as e:
        raise PydanticCustomError("not_allowed", str(e)) from None
    return token


def _ordered(tokens: list[str]) -> list[str]:
    if found := order_problem([parse(t) for t in tokens]):
        i, reason = found
        raise PydanticCustomError("not_allowed", f"layers[{i}]={tokens[i]!r} {reason}")
    return tokens


# The config check reads these (ablate.schema): a typo is one line naming model.layers[i].
Token = Annotated[str, allowed("a layer token such as 'conv 64 relu'"), AfterValidator(_token)]
Tokens = Annotated[list[Token], AfterValidator(_ordered)]


class Layers(nn.Module):
    """The tokens of `layers` as one nn.Sequential (`net`), ending in the appended classifier."""

    stackable = False  # no stacked layers for its K seeds (ablate.group.stack): they train solo

    def __init__(
        self,
        in_channels: int,
        num_classes: int,
        image_size: tuple[int, int],
        layers: Tokens,
        activation: Activation = "relu",  # read by the init for its gains; the tokens set their own
        norm: Norm | None = None,
        dropout: float = 0.0,
        dropout2d: float = 0.0,
        input_dropout: float = 0.0,
    ) -> None:
        super().__init__()
        norm = norm or no_norm()
        specs = []
        for i, token in enumerate(layers):
            try:
                specs.append(parse(token))
            except ValueError as e:
                raise ValueError(f"model.layers[{i}]={token!r}: {e}") from None
        if found := order_problem(specs):
            i, reason = found
            raise ValueError(f"model.layers[{i}]={layers[i]!r} {reason}")
        # (layer, l1, l2) of each dense token with a penalty: Keras' kernel_regularizer
        self.penalized: list[tuple[nn.Linear, float, float]] = []
        modules: list[nn.Module] = [nn.Dropout(input_dropout)] if input_dropout > 0 else []
        shape = (in_channels, *image_size)  # (C, H, W) until flattened, then (F,)
        for i, spec in enumerate(specs):
            where = f"model.layers[{i}]={layers[i]!r}"
            new, shape = self._layer(spec, shape, where, norm, dropout2d)
            modules += new
        if len(shape) == 3:
            modules.append(nn.Flatten())
        if dropout > 0:
            modules.append(nn.Dropout(dropout))
        modules.append(nn.Linear(math.prod(shape), num_classes))
        self.net = nn.Sequential(*modules)

    def _layer(
        self, spec: Spec, shape: tuple[int, ...], where: str, norm: Norm, dropout2d: float
    ) -> tuple[list[nn.Module], tuple[int, ...]]:
        """The modules of one token and the shape they output."""
        maps = len(shape) == 3
        if spec.kind == "norm":
            return _norm(norm, shape, where), shape
        if spec.kind == "conv":
            conv = nn.Conv2d(shape[0], spec.size, 3, padding=1)  # bias kept before a norm, as Keras
            return [conv, *_activation(spec)], (spec.size, *shape[1:])
        if spec.kind == "maxpool":
            c, h, w = shape
            if h < 2 or w < 2:
                raise ValueError(f"{where}: {h}x{w} maps are too small to pool: remove a maxpool")
            extra = [nn.Dropout2d(dropout2d)] if dropout2d > 0 else []
            return [nn.MaxPool2d(2), *extra], (c, h // 2, w // 2)
        if spec.kind == "dense":
            linear = nn.Linear(math.prod(shape), spec.size)
            if spec.l1 or spec.l2:
                self.penalized.append((linear, spec.l1, spec.l2))
            flatten = [nn.Flatten()] if maps else []
            return [*flatten, linear, *_activation(spec)], (spec.size,)
        if spec.kind == "flatten":  # on vectors already flat: nothing, as Keras' Flatten
            return ([nn.Flatten()] if maps else []), (math.prod(shape),)
        if spec.kind == "dropout":
            return [nn.Dropout(spec.rate)], shape
        return _activation(spec), shape

    def penalty(self) -> torch.Tensor:
        """Sum over the dense tokens of l1 * sum|w| + l2 * sum w^2 (Keras' scale: no 1/2)."""
        total = torch.zeros((), device=self.net[-1].weight.device)
        for linear, l1, l2 in self.penalized:
            total = total + penalty([linear.weight], l1, l2)
        return total

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def _norm(norm: Norm, shape: tuple[int, ...], where: str) -> list[nn.Module]:
    """The norm layer of a `norm` token on maps or vectors (none for norm=none)."""
    n = shape[0]
    if len(shape) == 1 and not norm.vectors:
        raise ValueError(
            f"{where} follows a flatten or dense: norm={norm.name} cannot normalize a feature "
            "vector (it has no spatial extent); use norm=batch, batch_keras, layer, group or none"
        )
    try:
        layer = norm(n) if len(shape) == 3 else norm.for_vectors(n)
    except ValueError as e:
        raise ValueError(
            f"{where}: norm={norm.name} cannot normalize width {n} ({e}): use another norm "
            f"(norm=group: norm.groups dividing {n})"
        ) from None
    return [] if isinstance(layer, nn.Identity) else [layer]


def _activation(spec: Spec) -> list[nn.Module]:
    return [activation_layer(spec.activation)] if spec.activation else []
