"""The rows of a run's tables: each dataclass is the one definition of a CSV file's columns,
their order and their types (`str`, `float`, `int`).

Adding a column is one field here (and its line in the README's column table, which a test
holds against these classes). Text columns that hold lists (`tags`, `blame`, `engines`,
`skipped`) separate their items with spaces.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

# What a row checks: a VJP (reverse mode), a JVP (forward mode), a Hessian-vector product
# (second order), or the dot-product test <v, J u> = <J^T v, u> of one engine's two modes
VJP, JVP, HVP, ADJOINT = "vjp", "jvp", "hvp", "adjoint"
PRODUCTS = (VJP, JVP, HVP, ADJOINT)


def error_key(product: str, param: str) -> str:
    """How a comparison's per-element errors are filed (errors.npz, the heatmaps): by param
    for a VJP, as `product:param` for another product of the same input."""
    return param if product == VJP else f"{product}:{param}"


TEXT, FLOAT, INT, INDEX = "text", "float", "int", "index"
# an INDEX is a tuple of ints in memory and JSON text in a file: "[1, 2]", "[]" for a scalar
_KINDS = {"str": TEXT, "float": FLOAT, "int": INT, "tuple": INDEX}


@dataclass
class CaseRow:
    """cases.csv: one row per case x dtype, in the order they ran."""

    case: str
    dtype: str
    verdict: str
    blame: str
    seconds: float
    message: str
    family: str
    tags: str
    file: str
    engines: str
    skipped: str
    comparisons: int
    failed: int


@dataclass
class ComparisonRow:
    """comparisons.csv: one row per case x dtype x input x engine pair."""

    case: str
    dtype: str
    param: str
    engine_a: str
    engine_b: str
    verdict: str
    max_abs_err: float
    max_rel_err: float
    tol_ratio: float
    worst_index: tuple | None  # None when the shapes differ
    atol: float
    rtol: float
    value_a: float
    value_b: float
    fd_err: float
    round_err: float
    bound: float
    checked: int
    elements: int
    kinks: int
    message: str
    coverage: str = "full"  # how the numerical side covered the input: full, directional
    directions: int = 0  # directional checks compared (0 unless directional)
    kink_distance: float = float("nan")  # the farthest flagged kink from its element
    product: str = "vjp"  # what the row checks: vjp, jvp, hvp or adjoint (see PRODUCTS)


@dataclass
class TaylorRow:
    """taylor.csv: one row per case x dtype x engine whose gradient is complete."""

    case: str
    dtype: str
    engine: str
    rate: float  # the lowest over the directions; NaN when nothing rose above rounding
    verdict: str
    rates: str  # each direction's rate
    eps_high: float  # the fitted window of the direction with the lowest rate
    eps_low: float
    message: str
    product: str = "vjp"  # vjp: rate 2 expected; hvp: with the Hessian term, rate 3


@dataclass
class EngineRow:
    """engines.csv: one row per case x dtype x engine."""

    case: str
    dtype: str
    engine: str
    status: str
    seconds: float
    message: str
    product: str = "vjp"  # which of the engine's products ran: vjp, jvp or hvp


TIMING_COLUMNS = ("seconds",)  # the only columns that change between identical runs


def columns(row_type) -> list[str]:
    return [f.name for f in fields(row_type)]


def column_kinds(row_type) -> dict[str, str]:
    """Column name -> TEXT, FLOAT, INT or INDEX, from the field annotations."""
    return {f.name: _KINDS[_type_name(f.type)] for f in fields(row_type)}


def _type_name(annotation) -> str:
    """The annotation's name: a string already under `from __future__ import annotations`."""
    name = annotation if isinstance(annotation, str) else annotation.__name__
    return name.removesuffix(" | None")  # an INDEX may be missing (shapes that differ)
