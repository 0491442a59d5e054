"""The graph IR: input leaves, constants, an ordered list of op nodes, one output.

Every engine is an interpreter of this structure with its own op table. The builder
lowers parsed expressions into nodes, checking names, arity, keyword arguments and
shapes as it goes, so a bad case is refused before any engine runs.

Integer data (labels, indices, a 0/1 mask) has kind INT and is never differentiated. The
builder gives every node a kind (see `_Lowering._kind`) and the casts its operands need at
the op boundary, which every interpreter applies (`Node.casts`): integer data entering a
float op becomes floats of the case's dtype (the dtype of the `FLOAT_LIKE` constant), and
an integer literal in integer arithmetic becomes int64 (the dtype of an integer operand).
No op of any engine table sees mixed integer and float operands, so none promotes
(numpy's int64 * float32 is float64; torch's int64 / int64 is float32 in a float64 case).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from ..errors import did_you_mean
from .expr import Call, Expr, ExprError, Num, Ref, parse
from .ops import INT_KEPT, OPS, REQUIRED, OpSpec, Shape, ShapeError, int_data_ops

FLOAT, INT = "float", "int"
# A literal 0 of the case's dtype that every engine holds like any other constant: the dtype
# integer data takes where it enters a float op ('#' keeps it apart from any user name)
FLOAT_LIKE = "#float"
MAX_NODES = 5000  # shape inference and every engine walk the node list; keep it bounded


@dataclass(frozen=True)
class Leaf:
    name: str
    shape: Shape
    kind: str = FLOAT  # FLOAT inputs may be differentiated; INT inputs are data


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    args: tuple[str, ...]
    attrs: Mapping[str, Any]
    shape: Shape
    step: str  # the case step this node came from (for messages)
    kind: str = FLOAT  # INT: integer data, computed from integer data alone
    # (operand position, name of the value whose dtype that operand takes), applied by every
    # interpreter before the op runs (`operands`): integer data entering a float op, an
    # integer literal entering integer arithmetic
    casts: tuple[tuple[int, str], ...] = ()


@dataclass
class Graph:
    inputs: dict[str, Leaf]
    consts: dict[str, float] = field(default_factory=dict)
    nodes: list[Node] = field(default_factory=list)
    output: str = ""
    # name -> shape of every node (all are added through `add`): O(1) lookups on long graphs
    _shapes: dict[str, Shape] = field(default_factory=dict, repr=False, compare=False)

    def add(self, node: Node) -> None:
        self.nodes.append(node)
        self._shapes[node.name] = node.shape

    @property
    def output_shape(self) -> Shape:
        return self.shape_of(self.output)

    def shape_of(self, name: str) -> Shape:
        if name in self.inputs:
            return self.inputs[name].shape
        if name in self.consts:
            return ()
        return self._shapes[name]

    def ops(self) -> set[str]:
        return {n.op for n in self.nodes}

    def dependents(self, names) -> set[str]:
        """`names` and every node computed, directly or not, from one of them."""
        found = set(names)
        for node in self.nodes:
            if found.intersection(node.args):
                found.add(node.name)
        return found


def _constant(num: Num):
    return int(num.value) if num.value.is_integer() else num.value


class GraphError(ValueError):
    """A problem in one step of a case: names the step and the column in its expression."""

    def __init__(self, message: str, step: str, col: int | None = None):
        super().__init__(message)
        self.message, self.step, self.col = message, step, col

    def __str__(self) -> str:
        where = f"step {self.step!r}" + (f", column {self.col}" if self.col else "")
        return f"{where}: {self.message}"


def interpret(graph: Graph, ops: Mapping[str, Callable], env: dict) -> dict:
    """Run the graph forward with one engine's op table; `env` holds inputs and constants."""
    for node in graph.nodes:
        env[node.name] = ops[node.op](*operands(node, env), **node.attrs)
    return env


def operands(node: Node, env: Mapping) -> list:
    """The node's arguments from `env`, each cast that the node names applied."""
    args = [env[a] for a in node.args]
    for i, like in node.casts:
        args[i] = _astype(args[i], env[like].dtype)
    return args


def _astype(value, dtype):
    # numpy and jax arrays (tracers too) convert with astype, torch tensors with to
    convert = getattr(value, "astype", None) or value.to
    return convert(dtype)


def build_graph(steps: list[tuple[str, str]], inputs: Mapping[str, Leaf]) -> Graph:
    """Lower ordered `(step name, expression)` pairs; the last step is the output."""
    graph = Graph(inputs=dict(inputs))
    kinds = {name: leaf.kind for name, leaf in inputs.items()}
    for step, text in steps:
        if step in kinds:
            raise GraphError(f"step name {step!r} is already defined", step)
        try:
            tree = parse(text)
        except ExprError as e:
            raise GraphError(e.message, step, e.col) from None
        name = _Lowering(graph, kinds, step).lower(tree, final=True)
        kinds[step] = kinds[name]
    if not steps:
        raise GraphError("a case needs at least one step", "<none>")
    graph.output = steps[-1][0]
    return graph


class _Lowering:
    """Lowers one step's expression tree into graph nodes (names `step`, `step#1`, ...)."""

    def __init__(self, graph: Graph, kinds: dict[str, str], step: str):
        self.graph, self.kinds, self.step, self.count = graph, kinds, step, 0

    def lower(self, expr: Expr, final: bool = False) -> str:
        if isinstance(expr, Ref):
            name = self._ref(expr)
        elif isinstance(expr, Num):
            name = self._const(expr)
        else:
            name = self._call(expr, final)
        if final and name != self.step:  # a step that is just a name or a number
            args = (name, self._const(Num(0.0, 0)))
            self._add(
                self.step,
                "add",
                args,
                {},
                self.graph.shape_of(name),
                *self._kind(OPS["add"], args, expr),
            )
            name = self.step
        return name

    def _ref(self, expr: Ref) -> str:
        if expr.name not in self.kinds:
            defined = [k for k in self.kinds if "#" not in k]  # not the hidden nodes
            raise GraphError(
                f"name {expr.name!r} is not defined{did_you_mean(expr.name, defined, 20)}",
                self.step,
                expr.col,
            )
        return expr.name

    def _const(self, expr: Num) -> str:
        # a whole number is named apart: it may join integer arithmetic (cast to int64), and
        # the name is all of a literal that the structure of a graph shows (a compiled
        # program is cached by that structure, the values being its arguments)
        whole = float(expr.value).is_integer()
        name = f"{self.step}#{'i' if whole else 'c'}{len(self.graph.consts)}"
        self.graph.consts[name] = expr.value
        self.kinds[name] = FLOAT  # not integer data: an index must be an input
        return name

    def _call(self, expr: Call, final: bool) -> str:
        spec = OPS.get(expr.op)
        if spec is None:
            raise GraphError(
                f"unknown op {expr.op!r}{did_you_mean(expr.op, OPS, 100)}", self.step, expr.col
            )
        operands, attrs = self._split(spec, expr)
        args = tuple(self.lower(a) for a in operands)
        kind, casts = self._kind(spec, args, expr)
        shapes = [self.graph.shape_of(a) for a in args]
        try:
            shape = spec.shape(*shapes, **attrs)
            attrs = spec.cleaned(attrs, *shapes)
        except ShapeError as e:
            raise GraphError(f"{spec.name}: {e}", self.step, expr.col) from None
        except (ArithmeticError, TypeError, ValueError) as e:
            # hostile attributes (shape=[1e300]) can break a shape rule's arithmetic itself
            raise GraphError(
                f"{spec.name}: invalid arguments ({type(e).__name__}: {e})", self.step, expr.col
            ) from None
        self.count += 1
        name = self.step if final else f"{self.step}#{self.count}"
        return self._add(name, spec.name, args, attrs, shape, kind, casts)

    def _split(self, spec: OpSpec, expr: Call) -> tuple[tuple[Expr, ...], dict]:
        """Operands, and the attributes: keywords, or constants written after the operands
        of a fixed-arity op (`expand_dims(x, 0)`, `take_along_axis(s, y, 1)`)."""
        operands: tuple[Expr, ...] = expr.args
        extra: tuple[Expr, ...] = ()
        if not spec.variadic:
            operands, extra = expr.args[: spec.arity], expr.args[spec.arity :]
        names = [k for k in spec.attrs if k not in dict(expr.kwargs)]
        if (
            not spec.takes(len(operands))
            or len(extra) > len(names)
            or not all(isinstance(e, Num) for e in extra)
        ):
            least = "at least " if spec.variadic else ""
            raise GraphError(
                f"{spec.name} takes {least}{spec.arity} argument(s), got {len(expr.args)}",
                self.step,
                expr.col,
            )
        # every one a Num (checked above)
        positional = {k: _constant(e) for k, e in zip(names, extra) if isinstance(e, Num)}
        return operands, self._attrs(spec, expr, positional)

    def _attrs(self, spec: OpSpec, expr: Call, positional: dict) -> dict:
        given = {**dict(expr.kwargs), **positional}
        unknown = sorted(set(given) - set(spec.attrs))
        if unknown:
            allowed = ", ".join(spec.attrs) or "none"
            raise GraphError(
                f"{spec.name} has no keyword argument {unknown[0]!r}"
                f"{did_you_mean(unknown[0], spec.attrs)} (allowed: {allowed})",
                self.step,
                expr.col,
            )
        attrs = {**spec.attrs, **given}
        missing = [k for k, v in attrs.items() if v is REQUIRED]
        if missing:
            raise GraphError(
                f"{spec.name} needs {missing[0]}= (as in {spec.signature})", self.step, expr.col
            )
        return attrs

    def _kind(self, spec: OpSpec, args: tuple[str, ...], expr) -> tuple[str, tuple]:
        """The node's kind and its operands' casts, by the op's `int_data` (see the
        registry's notes on integer data): integer data in, integer data out where the op
        keeps it and its other operands are integer data or whole literals (those cast to
        int64); else a float result, the integer operands cast to the case's dtype."""
        self._check_int_slots(spec, args, expr)
        data = [(i, a) for i, a in enumerate(args) if i not in spec.int_args]
        ints = [a for _, a in data if self.kinds[a] == INT]
        if ints and not spec.int_data:
            i = next(i for i, a in data if a in ints)
            raise GraphError(
                f"{spec.name} argument {i + 1} ({args[i]}) must be float data, "
                f"got int: integer data enters only {int_data_ops()}",
                self.step,
                expr.col,
            )
        kept = spec.int_data == INT_KEPT and all(a in ints or self._whole(a) for _, a in data)
        if ints and kept:
            return INT, tuple((i, ints[0]) for i, a in data if a not in ints)
        if ints:
            self.graph.consts.setdefault(FLOAT_LIKE, 0.0)
        return FLOAT, tuple((i, FLOAT_LIKE) for i, a in data if a in ints)

    def _check_int_slots(self, spec: OpSpec, args: tuple[str, ...], expr) -> None:
        for i in spec.int_args:
            if self.kinds[args[i]] != INT:
                raise GraphError(
                    f"{spec.name} argument {i + 1} ({args[i]}) must be int data, "
                    f"got {self.kinds[args[i]]}",
                    self.step,
                    expr.col,
                )

    def _whole(self, name: str) -> bool:
        return name in self.graph.consts and float(self.graph.consts[name]).is_integer()

    def _add(self, name, op, args, attrs, shape, kind=FLOAT, casts=()) -> str:
        if len(self.graph.nodes) >= MAX_NODES:
            raise GraphError(f"the case has more than {MAX_NODES} operations", self.step)
        self.graph.add(Node(name, op, args, attrs, tuple(shape), self.step, kind, casts))
        self.kinds[name] = kind
        return name
