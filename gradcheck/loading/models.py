"""The case format as pydantic models: unknown keys are errors, messages name the key."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StrictFloat,
    StrictInt,
    Tag,
    field_validator,
    model_validator,
)
from typing_extensions import TypeAliasType

from ..dtypes import DTYPES
from ..ir.ops import expression_help

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]*$"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Number = StrictInt | StrictFloat
# The value as one string: type checkers resolve a recursive alias only written so
Nested = TypeAliasType("Nested", "Number | list[Nested]")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Parameters of random inputs: finite, and small enough that numpy's generators accept
# them (a huge `high - low` or a negative seed would only fail later, inside a run).
Finite = Annotated[float, Field(allow_inf_nan=False, ge=-1e15, le=1e15)]
INT64_MAX = 2**63 - 1


class RandomInput(Strict):
    """A seeded random tensor; `randint` makes integer data (labels); `bernoulli` floats 0
    and 1, each 1 with probability `p` (a fixed dropout mask)."""

    shape: list[Annotated[int, Field(ge=0)]] = Field(description="the tensor's shape, e.g. [2, 3]")
    init: Literal["normal", "uniform", "zeros", "ones", "randint", "bernoulli"] = Field(
        "normal",
        description="how to fill it: normal (times scale), uniform in [low, high), "
        "zeros, ones (times scale), randint in [low, high) as int64 data, or bernoulli: "
        "floats 0 and 1, each 1 with probability p",
    )
    seed: Annotated[int, Field(ge=0, le=INT64_MAX)] | None = Field(
        None, description="random seed; default: derived from the case and input names"
    )
    scale: Finite = Field(1.0, description="standard deviation for normal, value for ones")
    low: Finite = Field(-1.0, description="lower bound for uniform and randint")
    high: Finite = Field(1.0, description="upper bound (excluded) for uniform and randint")
    dtype: Literal["float", "int64"] = Field(
        "float", description="int64 marks integer data (labels), never differentiated"
    )
    p: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] | None = Field(
        None, description="for bernoulli: the probability of a 1"
    )

    @model_validator(mode="after")
    def _check(self):
        if (self.p is not None) != (self.init == "bernoulli"):
            raise ValueError("init: bernoulli takes p (the probability of a 1), and only it does")
        if self.init == "randint" and self.dtype != "int64":
            object.__setattr__(self, "dtype", "int64")
        if self.dtype == "int64" and self.init != "randint":
            raise ValueError("an int64 random input needs init: randint")
        if self.init in ("uniform", "randint") and not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.init == "randint" and not (self.low.is_integer() and self.high.is_integer()):
            raise ValueError(
                f"randint needs whole-number low and high, got {self.low}, {self.high}"
            )
        return self


class ValueInput(Strict):
    """A literal tensor with an explicit kind: `dtype: int64` marks data (labels)."""

    value: Nested = Field(description="a number or a nested list of numbers")
    dtype: Literal["float", "int64"] = Field(
        "float", description="int64 marks integer data (labels), never differentiated"
    )


def _input_kind(v) -> str:
    if isinstance(v, dict):
        return "value" if "value" in v else "random"
    return "literal"


InputModel = Annotated[
    Annotated[Nested, Tag("literal")]
    | Annotated[ValueInput, Tag("value")]
    | Annotated[RandomInput, Tag("random")],
    Discriminator(_input_kind),
]


class Tolerance(Strict):
    """Overrides of the comparator's tolerances for this case."""

    rtol: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = Field(
        None, description="relative tolerance"
    )
    atol: Annotated[float, Field(ge=0, allow_inf_nan=False)] | None = Field(
        None, description="absolute tolerance, relative to the largest magnitude compared"
    )


class Expect(Strict):
    """Hand-derived numbers, compared with every engine as a source of their own."""

    value: Nested | None = Field(None, description="the output's value")
    grad: dict[str, Nested] = Field(
        {},
        description="input name -> its gradient (for a "
        "non-scalar output: the vector-Jacobian product)",
    )


class CaseModel(Strict):
    """One gradient check: inputs, an expression (or ordered steps), optional hand values."""

    name: str = Field(
        pattern=NAME_PATTERN,
        max_length=120,
        description="unique name: lower-case letters, digits, '.', '_', '-'",
    )
    description: str = Field("", description="what the case checks, in words")
    source: str | None = Field(None, description="where the case comes from (a document)")
    tags: list[str] = Field([], description="families and keywords; the first is the family")
    inputs: dict[str, InputModel] = Field(
        description="input name -> a literal number or nested list, {value, dtype}, or a "
        "seeded random tensor {shape, init, ...}"
    )
    expr: str | Number | None = Field(
        None, description="the output as one expression (instead of graph). " + expression_help()
    )
    graph: dict[str, str | Number] | None = Field(
        None,
        description="ordered named steps, each an expression; the last is the output "
        "(instead of expr)",
    )
    wrt: list[str] | None = Field(
        None, description="inputs to differentiate; default: every floating input"
    )
    # Literal[DTYPES]: the names, from the registry at run time (mypy wants them spelled out)
    dtypes: list[Literal[DTYPES]] = Field(  # type: ignore[valid-type]
        ["float64"], description="dtypes to run the case in"
    )
    tolerance: Tolerance | None = Field(None, description="tolerance overrides")
    expect: Expect | None = Field(None, description="hand-derived value and gradients")
    jacobian: bool = Field(
        False, description="check the full Jacobian instead of a VJP with a seeded random cotangent"
    )
    fd_max_elements: Annotated[int, Field(ge=1)] | None = Field(
        None,
        description="fd checks every element of an input up to this size; beyond, "
        "directional checks and a seeded sample",
    )
    fd_coverage: Literal["auto", "full", "directional"] | None = Field(
        None,
        description="how fd covers each input: every element, random directions plus "
        "a sample, or by size (auto)",
    )

    modes: list[Literal["rev", "fwd"]] = Field(
        ["rev"],
        description="products checked: rev (VJPs, reverse mode) and/or fwd (JVPs, forward "
        "mode, with the dot-product test of the two)",
    )
    order: Literal[1, 2] = Field(
        1, description="2 also checks Hessian-vector products of <cotangent, output>"
    )

    @field_validator("inputs", "graph")
    @classmethod
    def _identifiers(cls, value):
        for key in value or {}:
            if not IDENTIFIER.match(str(key)) or str(key).startswith("__"):
                raise ValueError(f"{key!r} is not a valid name (letters, digits, _)")
        return value

    @field_validator("modes")
    @classmethod
    def _modes(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError("modes must list rev and/or fwd, each once")
        return value

    @field_validator("dtypes")
    @classmethod
    def _dtypes(cls, value):
        if not value or len(set(value)) != len(value):
            raise ValueError(f"dtypes must list some of {', '.join(DTYPES)}, each once")
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


JSON_SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"


def case_json_schema() -> dict:
    """The case format as a JSON Schema (draft 2020-12) for editors: exactly one of `expr`
    and `graph`, and a call in an expression must name a known op."""
    from ..ir.ops import OPS

    schema = CaseModel.model_json_schema()
    defs = schema.setdefault("$defs", {})
    defs["op"] = {"enum": sorted(OPS), "description": "the ops an expression may call"}
    defs["expression"] = {
        "type": ["string", "number"],
        "pattern": _calls_only(sorted(OPS)),
        "description": "infix + - * / ** @, numbers, input and step names, and calls of "
        "the ops in #/$defs/op with constant keyword arguments",
    }
    props = schema["properties"]
    props["expr"] = {"$ref": "#/$defs/expression", "description": props["expr"]["description"]}
    props["graph"] = {
        "type": "object",
        "minProperties": 1,
        "additionalProperties": {"$ref": "#/$defs/expression"},
        "description": props["graph"]["description"],
    }
    one_of = [
        {"required": [key], "not": {"required": [other]}}
        for key, other in (("expr", "graph"), ("graph", "expr"))
    ]
    return {"$schema": JSON_SCHEMA_DIALECT, **schema, "title": "gradcheck case", "oneOf": one_of}


def _calls_only(ops: list[str]) -> str:
    """A pattern no expression matches that calls a name outside `ops`: no identifier
    followed by '(' unless it is one of them."""
    known = "|".join(re.escape(op) for op in ops)
    return rf"^(?![\s\S]*\b(?!(?:{known})\s*\()[A-Za-z_]\w*\s*\()"
