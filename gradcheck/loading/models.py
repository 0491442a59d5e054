"""The case format as pydantic models: unknown keys are errors, messages name the key."""
from __future__ import annotations

import re
from typing import Annotated, Literal, Optional, Union

from typing_extensions import TypeAliasType
from pydantic import (BaseModel, ConfigDict, Discriminator, Field, StrictFloat, StrictInt, Tag,
                      field_validator, model_validator)

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Number = Union[StrictInt, StrictFloat]
Nested = TypeAliasType("Nested", Union[Number, list["Nested"]])


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Parameters of random inputs: finite, and small enough that numpy's generators accept
# them (a huge `high - low` or a negative seed would only fail later, inside a run).
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
INT64_MAX = 2 ** 63 - 1


class RandomInput(Strict):
    """A seeded random tensor; `randint` makes integer data (labels)."""
    shape: list[Annotated[int, Field(ge=0)]]
    init: Literal["normal", "uniform", "zeros", "ones", "randint"] = "normal"
    seed: Optional[Annotated[int, Field(ge=0, le=INT64_MAX)]] = None
    scale: Finite = 1.0
    low: Finite = -1.0
    high: Finite = 1.0
    dtype: Literal["float", "int64"] = "float"

    @model_validator(mode="after")
    def _check(self):
        if self.init == "randint" and self.dtype != "int64":
            object.__setattr__(self, "dtype", "int64")
        if self.dtype == "int64" and self.init != "randint":
            raise ValueError("an int64 random input needs init: randint")
        if self.init in ("uniform", "randint") and not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.init == "randint" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError(f"randint needs whole-number low and high, got {self.low}, {self.high}")
        return self


class ValueInput(Strict):
    """A literal tensor with an explicit kind: `dtype: int64` marks data (labels)."""
    value: Nested
    dtype: Literal["float", "int64"] = "float"


def _input_kind(v) -> str:
    if isinstance(v, dict):
        return "value" if "value" in v else "random"
    return "literal"


InputModel = Annotated[
    Union[Annotated[Nested, Tag("literal")], Annotated[ValueInput, Tag("value")],
          Annotated[RandomInput, Tag("random")]],
    Discriminator(_input_kind),
]


class Tolerance(Strict):
    rtol: Optional[Annotated[float, Field(gt=0, allow_inf_nan=False)]] = None
    atol: Optional[Annotated[float, Field(ge=0, allow_inf_nan=False)]] = None


class Expect(Strict):
    value: Optional[Nested] = None
    grad: dict[str, Nested] = {}


class CaseModel(Strict):
    name: str = Field(pattern=NAME_PATTERN, max_length=120)
    description: str = ""
    source: Optional[str] = None
    tags: list[str] = []
    inputs: dict[str, InputModel]
    expr: Optional[Union[str, Number]] = None
    graph: Optional[dict[str, Union[str, Number]]] = None
    wrt: Optional[list[str]] = None
    dtypes: list[Literal["float64", "float32"]] = ["float64"]
    tolerance: Optional[Tolerance] = None
    expect: Optional[Expect] = None
    jacobian: bool = False
    fd_max_elements: Optional[Annotated[int, Field(ge=1)]] = None
    fd_coverage: Optional[Literal["auto", "full", "directional"]] = None

    @field_validator("inputs", "graph")
    @classmethod
    def _identifiers(cls, value):
        for key in value or {}:
            if not IDENTIFIER.match(str(key)) or str(key).startswith("__"):
                raise ValueError(f"{key!r} is not a valid name (letters, digits, _)")
        return value

    @field_validator("dtypes")
    @classmethod
    def _dtypes(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError("dtypes must list float64 and/or float32, each once")
        return value

    @model_validator(mode="after")
    def _one_body(self):
        if (self.expr is None) == (self.graph is None):
            raise ValueError("a case has exactly one of `expr` and `graph`")
        return self

    def steps(self) -> list[tuple[str, str]]:
        if self.graph is not None:
            return [(k, str(v)) for k, v in self.graph.items()]
        return [("out", str(self.expr))]
