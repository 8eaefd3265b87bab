"""Field types that name what they allow: the techniques annotate their parameters with them.

The config check reads a target's annotations (ablate.schema), and `checked` applies the same
annotations when the technique is called from Python, so each range is written once.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    WrapValidator,
    validate_call,
)
from pydantic_core import PydanticCustomError


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


def _ordered(low_high: list[float]) -> list[float]:
    if low_high[0] > low_high[1]:
        raise ValueError("low > high")
    return low_high


def checked(fn: Any) -> Any:
    """Check a technique's arguments against its annotations when it is called from Python too."""
    return validate_call(config=ConfigDict(arbitrary_types_allowed=True))(fn)


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
OptionalNonNegative = Annotated[
    None | Annotated[float, Field(ge=0)], allowed("null or a number >= 0")
]
OptionalPositive = Annotated[None | Annotated[float, Field(gt=0)], allowed("null or a number > 0")]
Probability = Annotated[float, Field(ge=0, lt=1), allowed("a number in [0, 1)")]
OptionalProbability = Annotated[
    None | Annotated[float, Field(ge=0, lt=1)], allowed("null or a number in [0, 1)")
]
Fraction = Annotated[float, Field(ge=0, le=1), allowed("a number in [0, 1]")]
OptionalFraction = Annotated[
    None | Annotated[float, Field(ge=0, le=1)], allowed("null or a number in [0, 1]")
]
OpenFraction = Annotated[float, Field(gt=0, lt=1), allowed("a number in (0, 1)")]
Fractions = Annotated[
    list[Annotated[float, Field(ge=0, le=1)]], allowed("a list of fractions of training in [0, 1]")
]
PositiveInts = Annotated[
    list[Annotated[int, Field(gt=0)]],
    Field(min_length=1),
    allowed("a non-empty list of positive integers"),
]
PositiveRange = Annotated[
    list[Annotated[float, Field(gt=0)]],
    Field(min_length=2, max_length=2),
    AfterValidator(_ordered),
    allowed("a pair [low, high] with 0 < low <= high"),
]
OptionalNonNegativePair = Annotated[
    None | Annotated[list[Annotated[float, Field(ge=0)]], Field(min_length=2, max_length=2)],
    allowed("null or a pair [a, b] of numbers >= 0"),
]
ImageSize = pair(Annotated[int, Field(gt=0)], "[height, width], positive integers")
Bool = Annotated[bool, allowed("true or false")]
OptionalBool = Annotated[bool | None, allowed("null, true or false")]
Text = Annotated[str, Field(min_length=1), allowed("a non-empty string")]
Target = Annotated[Text, Field(alias="_target_")]
Partial = Annotated[
    Literal[True], allowed("true (the code adds the other arguments)"), Field(alias="_partial_")
]


class Schema(BaseModel):
    """A strict config node: only its own keys, no coercion ('1' is not 1, 1 is not true), and
    finite numbers only (a range check passes inf)."""

    model_config = ConfigDict(
        extra="forbid", strict=True, populate_by_name=True, allow_inf_nan=False
    )
