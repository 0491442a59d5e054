"""Check your own code in one call: `check`, `assert_gradients`, `check_loss`.

Your function becomes a case and your code an engine. The case's graph is the `reference`
expression (then numpy, fd, torch and jax run it, and your forward value is compared with
theirs), or, without one, a single node whose op is your forward itself, registered on the
fly in a private copy of the numpy op table, so that `fd` differentiates your own forward.
Everything else (cotangents, comparisons, tolerances, blame, reports) is the harness's own.
"""
from __future__ import annotations

import re
from typing import Callable, Mapping

import numpy as np

import reference_impls
from reference_impls import Primitive

from ..engines import BUILTIN, FiniteDifferences, make_engines
from ..engines.own import (FunctionEngine, ValueAndGradEngine, call_forward, forward_value,
                           loss_value, split_value_and_grads)
from ..ir.graph import FLOAT, INT, Graph, GraphError, Leaf, Node, build_graph
from ..loading.case import Case
from ..loading.models import CaseModel
from .api import run
from .compare import EXPECT
from .result import RunResult
from .runner import RunOptions

DTYPES = ("float64", "float32")


def check(forward: Callable, backward: Callable, inputs: Mapping, *, reference: str | None = None,
          wrt=None, dtypes=None, name: str | None = None) -> RunResult:
    """Check `backward` against `forward` (by finite differences) and, given a `reference`
    expression over the same input names, against numpy, torch and jax running it."""
    arrays, floating = _inputs(inputs)
    wrt = _wrt(wrt, arrays, floating)
    mine = FunctionEngine(forward, backward, list(arrays), floating, name)
    out, _ = call_forward(forward, list(arrays.values()))
    return _run(mine, forward_value(forward), np.shape(out), arrays, wrt, reference, dtypes)


def check_loss(fn: Callable, inputs: Mapping, *, reference: str | None = None, wrt=None,
               dtypes=None, name: str | None = None) -> RunResult:
    """Check a function that returns a scalar value and its gradients together:
    `fn(*arrays) -> (loss, dx)`, `(loss, dx, dw)` or `(loss, {name: gradient})`."""
    arrays, floating = _inputs(inputs)
    wrt = _wrt(wrt, arrays, floating)
    mine = ValueAndGradEngine(fn, list(arrays), floating, name)
    value, _ = split_value_and_grads(fn, list(arrays.values()))
    return _run(mine, loss_value(fn), np.shape(value), arrays, wrt, reference, dtypes)


def assert_gradients(forward: Callable, backward: Callable, inputs: Mapping, **options) -> RunResult:
    """`check`, raising AssertionError with the discrepancy table when it does not pass."""
    __tracebackhide__ = True        # pytest shows the table, not this frame's arguments
    return _asserted(check(forward, backward, inputs, **options))


def assert_loss_gradients(fn: Callable, inputs: Mapping, **options) -> RunResult:
    """`check_loss`, raising AssertionError with the discrepancy table when it does not pass."""
    __tracebackhide__ = True
    return _asserted(check_loss(fn, inputs, **options))


def _asserted(result: RunResult) -> RunResult:
    __tracebackhide__ = True
    if not result.ok:
        raise AssertionError("\n" + str(result))
    return result


def _run(mine, value_fn: Callable, out_shape, arrays: dict, wrt: list[str],
         reference: str | None, dtypes) -> RunResult:
    if mine.name in set(BUILTIN) | {EXPECT}:
        raise ValueError(f"name {mine.name!r} is taken by another engine; pass name=...")
    leaves = {k: Leaf(k, a.shape, INT if a.dtype.kind in "iub" else FLOAT)
              for k, a in arrays.items()}
    if reference is not None:
        graph, engines = _reference_graph(reference, leaves), make_engines()
    else:
        graph = _own_graph(value_fn, leaves, tuple(out_shape))
        own_op = {graph.nodes[0].op: Primitive(value_fn, ())}
        engines = [FiniteDifferences({**reference_impls.OPS, **own_op})]
    case = OwnCase.make(_slug(mine.name), arrays, graph, wrt, _dtypes(dtypes), reference)
    # in this process (no time limit, no worker): your functions need not pickle, and may
    # be closures
    return run([case], engines=[mine] + engines, options=RunOptions(timeout=None))


class OwnCase(Case):
    """A case whose inputs are your arrays (rounded to each dtype) instead of YAML specs."""

    @classmethod
    def make(cls, name: str, arrays: dict, graph: Graph, wrt: list[str], dtypes: list[str],
             reference: str | None) -> "OwnCase":
        model = CaseModel(name=name, inputs={k: {"shape": list(a.shape)} for k, a in arrays.items()},
                          expr=reference or f"{name}({', '.join(arrays)})", wrt=wrt,
                          dtypes=dtypes, tags=["own"], description="checked with gradcheck.check")
        case = cls(model, graph, wrt, "<python>", 0)
        case.values = arrays
        return case

    def arrays(self, dtype: str) -> dict[str, np.ndarray]:
        return {k: a if self.graph.inputs[k].kind == INT else a.astype(dtype)
                for k, a in self.values.items()}


def _inputs(inputs: Mapping) -> tuple[dict[str, np.ndarray], list[str]]:
    """Floating inputs as float64 copies, everything else (labels, indices) as int64."""
    arrays, floating = {}, []
    for name, value in inputs.items():
        array = np.asarray(value)
        if array.dtype.kind == "f":
            arrays[name] = array.astype(np.float64)
            floating.append(name)
        elif array.dtype.kind in "iub":
            arrays[name] = array.astype(np.int64)
        else:
            raise TypeError(f"input {name!r} has dtype {array.dtype}; expected floating "
                            "numbers, or integers (data such as labels)")
    return arrays, floating


def _wrt(wrt, arrays: dict, floating: list[str]) -> list[str]:
    if wrt is None:
        return floating
    wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    wrong = [k for k in wrt if k not in floating]
    if wrong or not wrt:
        raise ValueError(f"wrt names {wrong or 'nothing'}: it must name floating inputs among "
                         f"{', '.join(floating) or 'none'}")
    return wrt


def _dtypes(dtypes) -> list[str]:
    dtypes = ["float64"] if dtypes is None else [dtypes] if isinstance(dtypes, str) else list(dtypes)
    wrong = [d for d in dtypes if d not in DTYPES]
    if wrong or not dtypes:
        raise ValueError(f"dtypes must be float64 and/or float32, got {dtypes}")
    return dtypes


def _reference_graph(reference: str, leaves: dict[str, Leaf]) -> Graph:
    try:
        return build_graph([("out", reference)], leaves)
    except GraphError as e:
        raise ValueError(f"reference {reference!r}: {e}") from None


def _own_graph(value_fn: Callable, leaves: dict[str, Leaf], out_shape: tuple) -> Graph:
    """One node whose op is your forward, under a name no registered op can have."""
    graph = Graph(dict(leaves))
    graph.add(Node("out", f"<{value_fn.__name__}>", tuple(leaves), {}, out_shape, "out"))
    graph.output = "out"
    return graph


def _slug(name: str) -> str:
    """A case name from a function name: `affine_backward` -> `affine-backward`."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.")[:120] or "function"
