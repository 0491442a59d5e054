"""The expression language of cases: parsed into a small tree, never evaluated.

Python's own parser reads the text (`ast.parse` only builds a tree; nothing runs), then a
whitelist walk turns the few node types we accept into `Ref`, `Num` and `Call`: constant
basic indexing `x[0, 1:3, ..., None]` becomes the `index` op, and einsum's subscripts
string, the only string admitted, becomes its `subscripts` attribute. Anything else --
attribute access, other strings, computed indices, lambdas, comprehensions, comparisons --
is refused with the column where it starts. Limits on length and depth come first, so
hostile text cannot exhaust the parser or our recursion.
"""

from __future__ import annotations

import ast
import math
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeGuard

from .ops import BINARY_OPERATORS, UNARY_OPERATORS

MAX_LENGTH = 2000
MAX_DEPTH = 64
MAX_SUBSCRIPTS = 100
SUBSCRIPT_CHARS = set("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ,-> ")


class ExprError(ValueError):
    def __init__(self, message: str, col: int | None = None):
        super().__init__(message)
        self.message = message
        self.col = col  # 1-based column in the expression, when known

    def __str__(self) -> str:
        return self.message if self.col is None else f"{self.message} (at column {self.col})"


@dataclass(frozen=True)
class Ref:
    name: str
    col: int


@dataclass(frozen=True)
class Num:
    value: float
    col: int


@dataclass(frozen=True)
class Call:
    op: str
    args: tuple[Expr, ...]
    kwargs: tuple[tuple[str, object], ...]
    col: int


Expr = Ref | Num | Call


def parse(text: str) -> Expr:
    if not isinstance(text, str):
        raise ExprError(f"an expression must be a string, got {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExprError(f"expression is {len(text)} characters long; the limit is {MAX_LENGTH}")
    _check_nesting(text)
    try:
        with warnings.catch_warnings():  # "invalid decimal literal" and the like
            warnings.simplefilter("ignore", SyntaxWarning)
            tree = ast.parse(text.strip(), mode="eval")
    except SyntaxError as e:
        raise ExprError(f"syntax error: {e.msg}", e.offset) from None
    except (RecursionError, MemoryError, ValueError):
        raise ExprError("expression is too complex to parse") from None
    _check_depth(tree.body)
    return _lower(tree.body)


def _check_nesting(text: str) -> None:
    """Cheap pre-scan: bracket depth and runs of prefix operators, before Python's parser."""
    depth = run = 0
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        run = run + 1 if ch in "-+~" else (run if ch.isspace() else 0)
        if depth > MAX_DEPTH or run > MAX_DEPTH:
            raise ExprError(f"expression is nested deeper than {MAX_DEPTH}")


def _check_depth(root: ast.AST) -> None:
    stack = [(root, 1)]
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ExprError(f"expression is nested deeper than {MAX_DEPTH}", _col(node))
        stack.extend((child, depth + 1) for child in ast.iter_child_nodes(node))


def _col(node: ast.AST) -> int | None:
    offset = getattr(node, "col_offset", None)
    return None if offset is None else offset + 1


def _at(node: ast.expr) -> int:
    """The 1-based column of an expression node (which always has one)."""
    return node.col_offset + 1


def _lower(node: ast.AST) -> Expr:
    lower = _LOWER.get(type(node))
    if lower is None:
        raise ExprError(f"{_describe(node)} is not allowed in an expression", _col(node))
    return lower(node)


def _lower_name(node: ast.Name) -> Ref:
    if node.id.startswith("__"):
        raise ExprError(f"name {node.id!r} is not allowed", _col(node))
    return Ref(node.id, _at(node))


def _lower_constant(node: ast.Constant) -> Num:
    if isinstance(node.value, bool) or not isinstance(node.value, (int, float)):
        raise ExprError(f"constant {_short(node.value)} is not a number", _col(node))
    try:
        value = float(node.value)
    except OverflowError:  # an integer literal with hundreds of digits
        raise ExprError(f"constant {_short(node.value)} is too large", _col(node)) from None
    if not math.isfinite(value):
        raise ExprError(f"constant {_short(node.value)} is not finite", _col(node))
    return Num(value, _at(node))


def _short(value) -> str:
    """A constant for a message: hostile input may hold a 2000-character literal."""
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _lower_binop(node: ast.BinOp) -> Call:
    op = BINARY_OPERATORS.get(type(node.op).__name__)
    if op is None:
        raise ExprError(f"operator {type(node.op).__name__} is not allowed", _col(node))
    return Call(op, (_lower(node.left), _lower(node.right)), (), _at(node))


def _lower_unaryop(node: ast.UnaryOp) -> Expr:
    if isinstance(node.op, ast.UAdd):
        return _lower(node.operand)
    op = UNARY_OPERATORS.get(type(node.op).__name__)
    if op is None:
        raise ExprError(f"operator {type(node.op).__name__} is not allowed", _col(node))
    operand = _lower(node.operand)
    if isinstance(operand, Num):  # fold literal negatives: 2 ** -1, x * -0.5
        return Num(-operand.value, operand.col - 1)
    return Call(op, (operand,), (), _at(node))


def _lower_call(node: ast.Call) -> Call:
    if not isinstance(node.func, ast.Name):
        raise ExprError("only plain op names can be called", _col(node))
    names: list[str] = []
    for kw in node.keywords:
        if kw.arg is None:
            raise ExprError("**kwargs is not allowed", _col(kw.value))
        if kw.arg in names:  # ast.parse accepts this; only Python's compiler refuses it
            raise ExprError(f"keyword argument {kw.arg!r} is repeated", _col(kw.value))
        names.append(kw.arg)
    kwargs: tuple[tuple[str, object], ...] = tuple(
        (name, _constant(kw.value)) for name, kw in zip(names, node.keywords)
    )
    args = node.args
    if node.func.id == "einsum" and args and _is_string(args[0]):
        kwargs += (("subscripts", _subscripts(args[0])),)
        args = args[1:]
    return Call(node.func.id, tuple(_lower(a) for a in args), kwargs, _at(node))


def _is_string(node: ast.AST) -> TypeGuard[ast.Constant]:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _subscripts(node: ast.Constant) -> str:
    """einsum's subscripts, the one string the language admits: letters, commas, '->'."""
    text = node.value
    assert isinstance(text, str)  # _is_string(node)
    if len(text) > MAX_SUBSCRIPTS or not set(text) <= SUBSCRIPT_CHARS:
        raise ExprError(
            f"einsum subscripts take letters, commas, spaces and '->' "
            f"(at most {MAX_SUBSCRIPTS} characters), got {_short(text)}",
            _col(node),
        )
    return text


def _lower_subscript(node: ast.Subscript) -> Call:
    """x[i, 1:3, ..., None]: constant basic indexing, as the `index` op."""
    entries = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    key = tuple(_index_entry(e) for e in entries)
    return Call("index", (_lower(node.value),), (("key", key),), _at(node))


def _index_entry(node: ast.AST):
    if isinstance(node, ast.Slice):
        return slice(
            *(
                None if part is None else _index_int(part)
                for part in (node.lower, node.upper, node.step)
            )
        )
    if isinstance(node, ast.Constant) and (node.value is None or node.value is Ellipsis):
        return node.value
    return _index_int(node)


def _index_int(node: ast.AST) -> int:
    value = _lower(node)
    if not isinstance(value, Num) or not value.value.is_integer():
        raise ExprError(
            "an index takes constant integers, slices of them, ... and None", _col(node)
        )
    return int(value.value)


def _constant(node: ast.AST):
    """A keyword argument: a number, a list of numbers (nested allowed), True/False or None."""
    if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, bool)):
        return node.value  # None, or a flag such as keepdims=True
    if isinstance(node, (ast.List, ast.Tuple)):
        return [_constant(e) for e in node.elts]
    value = _lower(node)
    if not isinstance(value, Num):
        raise ExprError(
            "keyword arguments take constants only: numbers, lists of numbers, None", _col(node)
        )
    return int(value.value) if value.value.is_integer() else value.value


def _describe(node: ast.AST) -> str:
    names = {
        ast.Attribute: "attribute access",
        ast.Lambda: "lambda",
        ast.ListComp: "a comprehension",
        ast.GeneratorExp: "a comprehension",
        ast.DictComp: "a comprehension",
        ast.SetComp: "a comprehension",
        ast.Compare: "a comparison",
        ast.BoolOp: "a boolean operator",
        ast.IfExp: "a conditional",
        ast.Starred: "unpacking",
        ast.NamedExpr: "assignment",
        ast.JoinedStr: "a string",
        ast.Await: "await",
        ast.List: "a list (only keyword arguments take lists)",
        ast.Tuple: "a tuple",
        ast.Set: "a set",
        ast.Dict: "a dict",
    }
    return names.get(type(node), type(node).__name__)


_LOWER: dict[type[ast.AST], Callable[[Any], Expr]] = {
    ast.Name: _lower_name,
    ast.Constant: _lower_constant,
    ast.BinOp: _lower_binop,
    ast.UnaryOp: _lower_unaryop,
    ast.Call: _lower_call,
    ast.Subscript: _lower_subscript,
}
