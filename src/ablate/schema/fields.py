"""Field types of the config schema: each names what it allows, for the one-line message."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    WrapValidator,
)
from pydantic_core import PydanticCustomError

from ablate.models.blocks import ACTIVATIONS
from ablate.techniques.init import GAINS


def allowed(text: str) -> WrapValidator:
    """Replace pydantic's message for a field by what the field allows."""

    def check(value: Any, handler: Any) -> Any:
        try:
            return handler(value)
        except ValidationError:
            raise PydanticCustomError("not_allowed", text) from None

    return WrapValidator(check)


def one_of(*choices: Any) -> Any:
    """A Literal of the choices, described as `one of [...]`."""
    return Annotated[Literal[choices], allowed(f"one of {sorted(choices)}")]


def pair(item: Any, text: str) -> Any:
    """A list of exactly two items (YAML has no tuples)."""
    return Annotated[list[item], Field(min_length=2, max_length=2), allowed(text)]


def _ge(bound: float) -> Any:
    return Annotated[float, Field(ge=bound)]


PositiveInt = Annotated[int, Field(gt=0), allowed("a positive integer")]
NonNegativeInt = Annotated[int, Field(ge=0), allowed("an integer >= 0")]
OptionalPositiveInt = Annotated[
    None | Annotated[int, Field(gt=0)], allowed("null or a positive integer")
]
OptionalNonNegativeInt = Annotated[
    None | Annotated[int, Field(ge=0)], allowed("null or an integer >= 0")
]
Number = Annotated[float, allowed("a number")]
Positive = Annotated[float, Field(gt=0), allowed("a number > 0")]
NonNegative = Annotated[float, Field(ge=0), allowed("a number >= 0")]
OptionalNonNegative = Annotated[None | _ge(0), allowed("null or a number >= 0")]
Probability = Annotated[float, Field(ge=0, lt=1), allowed("a number in [0, 1)")]
Fraction = Annotated[float, Field(ge=0, le=1), allowed("a number in [0, 1]")]
OpenFraction = Annotated[float, Field(gt=0, lt=1), allowed("a number in (0, 1)")]
Bool = Annotated[bool, allowed("true or false")]
OptionalBool = Annotated[bool | None, allowed("null, true or false")]
Text = Annotated[str, Field(min_length=1), allowed("a non-empty string")]
Target = Annotated[Text, Field(alias="_target_")]
Partial = Annotated[
    Literal[True], allowed("true (the code adds the other arguments)"), Field(alias="_partial_")
]
Activation = one_of(*sorted(set(ACTIVATIONS) & set(GAINS)))
Gain = Annotated[Literal["auto"] | Annotated[float, Field(gt=0)], allowed("auto or a number > 0")]
Distribution = one_of("normal", "uniform")


class Schema(BaseModel):
    """A strict config node: only its own keys, no coercion ('1' is not 1, 1 is not true), and
    finite numbers only (a range check passes inf)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False
    )


class Open(Schema):
    """A node whose `_target_` the schema does not know: its constructor checks its keys."""

    model_config = ConfigDict(extra="allow")
    target: Target


def by_target(options: dict[str, type[BaseModel]], untargeted: type[BaseModel] = Open) -> Any:
    """One model per `_target_`; an unknown one gets Open (`untargeted`: a node without one)."""

    def tag(node: Any) -> str:
        target = node.get("_target_") if isinstance(node, dict) else None
        return target if target in options else ("open" if target else "untargeted")

    members = [Annotated[m, Tag(t)] for t, m in options.items()]
    members += [Annotated[Open, Tag("open")], Annotated[untargeted, Tag("untargeted")]]
    return Annotated[Union[tuple(members)], Discriminator(tag)]  # noqa: UP007


def model_for(options: dict[str, type[BaseModel]], node: Any) -> type[BaseModel]:
    """The model by_target picks for a node."""
    target = node.get("_target_") if isinstance(node, dict) else None
    return options.get(target, Open)
