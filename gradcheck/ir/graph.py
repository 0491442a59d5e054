"""The graph IR: input leaves, constants, an ordered list of op nodes, one output.

Every engine is an interpreter of this structure with its own op table. The builder
lowers parsed expressions into nodes, checking names, arity, keyword arguments and
shapes as it goes, so a bad case is refused before any engine runs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

from ..errors import did_you_mean
from .expr import Call, Expr, ExprError, Num, Ref, parse
from .ops import OPS, REQUIRED, OpSpec, Shape, ShapeError

FLOAT, INT = "float", "int"
MAX_NODES = 5000     # shape inference and every engine walk the node list; keep it bounded


@dataclass(frozen=True)
class Leaf:
    name: str
    shape: Shape
    kind: str = FLOAT            # FLOAT inputs may be differentiated; INT inputs are data


@dataclass(frozen=True)
class Node:
    name: str
    op: str
    args: tuple[str, ...]
    attrs: Mapping[str, Any]
    shape: Shape
    step: str                    # the case step this node came from (for messages)


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
        env[node.name] = ops[node.op](*(env[a] for a in node.args), **node.attrs)
    return env


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
        if final and name != self.step:     # a step that is just a name or a number
            zero = self._const(Num(0.0, 0))
            self._add(self.step, "add", (name, zero), {}, self.graph.shape_of(name))
            name = self.step
        return name

    def _ref(self, expr: Ref) -> str:
        if expr.name not in self.kinds:
            defined = [k for k in self.kinds if "#" not in k]       # not the hidden nodes
            raise GraphError(f"name {expr.name!r} is not defined{did_you_mean(expr.name, defined, 20)}",
                             self.step, expr.col)
        return expr.name

    def _const(self, expr: Num) -> str:
        name = f"{self.step}#c{len(self.graph.consts)}"
        self.graph.consts[name] = expr.value
        self.kinds[name] = FLOAT
        return name

    def _call(self, expr: Call, final: bool) -> str:
        spec = OPS.get(expr.op)
        if spec is None:
            raise GraphError(f"unknown op {expr.op!r}{did_you_mean(expr.op, OPS, 100)}",
                             self.step, expr.col)
        operands, attrs = self._split(spec, expr)
        args = tuple(self.lower(a) for a in operands)
        self._check_kinds(spec, args, expr)
        shapes = [self.graph.shape_of(a) for a in args]
        try:
            shape = spec.shape(*shapes, **attrs)
            attrs = spec.cleaned(attrs, *shapes)
        except ShapeError as e:
            raise GraphError(f"{spec.name}: {e}", self.step, expr.col) from None
        except (ArithmeticError, TypeError, ValueError) as e:
            # hostile attributes (shape=[1e300]) can break a shape rule's arithmetic itself
            raise GraphError(f"{spec.name}: invalid arguments ({type(e).__name__}: {e})",
                             self.step, expr.col) from None
        self.count += 1
        name = self.step if final else f"{self.step}#{self.count}"
        return self._add(name, spec.name, args, attrs, shape)

    def _split(self, spec: OpSpec, expr: Call) -> tuple[tuple[Expr, ...], dict]:
        """Operands, and the attributes: keywords, or constants written after the operands
        of a fixed-arity op (`expand_dims(x, 0)`, `take_along_axis(s, y, 1)`)."""
        operands, extra = expr.args, ()
        if not spec.variadic:
            operands, extra = expr.args[:spec.arity], expr.args[spec.arity:]
        names = [k for k in spec.attrs if k not in dict(expr.kwargs)]
        if (not spec.takes(len(operands)) or len(extra) > len(names)
                or not all(isinstance(e, Num) for e in extra)):
            least = "at least " if spec.variadic else ""
            raise GraphError(f"{spec.name} takes {least}{spec.arity} argument(s), got "
                             f"{len(expr.args)}", self.step, expr.col)
        positional = {k: _constant(e) for k, e in zip(names, extra)}
        return operands, self._attrs(spec, expr, positional)

    def _attrs(self, spec: OpSpec, expr: Call, positional: dict) -> dict:
        given = {**dict(expr.kwargs), **positional}
        unknown = sorted(set(given) - set(spec.attrs))
        if unknown:
            allowed = ", ".join(spec.attrs) or "none"
            raise GraphError(f"{spec.name} has no keyword argument {unknown[0]!r}"
                             f"{did_you_mean(unknown[0], spec.attrs)} (allowed: {allowed})",
                             self.step, expr.col)
        attrs = {**spec.attrs, **given}
        missing = [k for k, v in attrs.items() if v is REQUIRED]
        if missing:
            raise GraphError(f"{spec.name} needs {missing[0]}= (as in {spec.signature})",
                             self.step, expr.col)
        return attrs

    def _check_kinds(self, spec: OpSpec, args: tuple[str, ...], expr: Call) -> None:
        for i, arg in enumerate(args):
            wanted = INT if i in spec.int_args else FLOAT
            if self.kinds[arg] != wanted:
                raise GraphError(f"{spec.name} argument {i + 1} ({arg}) must be {wanted} data, "
                                 f"got {self.kinds[arg]}", self.step, expr.col)

    def _add(self, name, op, args, attrs, shape) -> str:
        if len(self.graph.nodes) >= MAX_NODES:
            raise GraphError(f"the case has more than {MAX_NODES} operations", self.step)
        self.graph.add(Node(name, op, args, attrs, tuple(shape), self.step))
        self.kinds[name] = FLOAT
        return name
