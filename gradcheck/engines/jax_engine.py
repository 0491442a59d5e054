"""The `jax` engine: jax.vjp over jax.numpy / jax.lax ops, float64 enabled.

Compiling, not running, is what costs on a catalog of small graphs, so a graph is compiled
once per product: one program gives the value and the VJP (every row of a Jacobian at
once, under `vmap`), the JVPs of every input (`jax.jvp`, each input moving alone) or the
Hessian-vector product (forward over reverse: `jax.jvp` of the VJP). It is kept by
`jax_cache` in memory and in the user's cache folder, keyed by the product, the graph's
structure, the names differentiated, and the arguments' dtypes and shapes.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import os
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

from ..ir.graph import interpret
from .base import EngineOutput, constants, require, require_ops
from .jax_cache import compiled_program, default_cache_dir, use_persistent_cache


class JaxEngine:
    """`cache_dir`: the folder of compiled programs (JAX's persistent compilation cache
    among them). "auto", the default, reads $GRADCHECK_JAX_CACHE (a folder, or "off"),
    else uses the platform's user cache folder; None turns it off. JAX's cache folder is
    process-wide: the engine that runs last sets it."""

    def __init__(
        self, device: str = "cpu", name: str = "jax", cache_dir: str | os.PathLike | None = "auto"
    ):
        self.device, self.name = device, name
        self.cache_dir = default_cache_dir() if cache_dir == "auto" else cache_dir

    def options(self) -> dict:
        """What the report says of this engine's settings."""
        return {"device": self.device}

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        return self._run(graph, inputs, wrt, "vjp", cotangent.dtype, cotangent)

    def batched_vjp(self, graph, inputs, wrt, cotangents) -> EngineOutput:
        """One VJP per row of `cotangents` (stacked along a first axis) in one program:
        each gradient gains that first axis; the value is the output, once."""
        return self._run(graph, inputs, wrt, "batched_vjp", cotangents.dtype, cotangents)

    def jvp(self, graph, inputs, wrt, tangents) -> EngineOutput:
        """grads[x] = J_x u_x, the output's derivative with x alone moving along u_x."""
        along = [tangents[w] for w in wrt]
        return self._run(graph, inputs, wrt, "jvp", along[0].dtype, along)

    def hvp(self, graph, inputs, wrt, cotangent, tangents) -> EngineOutput:
        """grads[x] = (H u)_x of <cotangent, output>, every input moving along its tangent."""
        along = [tangents[w] for w in wrt]
        return self._run(graph, inputs, wrt, "hvp", cotangent.dtype, cotangent, along)

    def prepare(self) -> None:
        """Import jax and its op table and start its backend: what a worker process does
        while the parent still loads the cases."""
        from . import jax_ops  # noqa: F401

        self._jax().devices(self.device)

    def _jax(self):
        jax = require("jax")
        # x64 must be on before any array is made, or float64 inputs silently become float32
        jax.config.update("jax_enable_x64", True)
        use_persistent_cache(jax, self.cache_dir)
        return jax

    def _run(self, graph, inputs, wrt, kind: str, dtype, *products) -> EngineOutput:
        """The program of `kind` (a key of PRODUCTS) on the inputs and `products` (the
        cotangent, tangents), compiled once per graph; `dtype`: the case's."""
        jax = self._jax()
        from .jax_ops import OPS

        require_ops(self.name, graph, OPS)
        fixed = {k: v for k, v in inputs.items() if k not in wrt}
        fixed.update(constants(graph, dtype))
        args = ([inputs[w] for w in wrt], fixed, *products)
        device = jax.devices(self.device)[0]
        with jax.default_device(device):
            program = compiled_program(
                jax,
                program_key(graph, wrt, kind, device, args),
                lambda: _compile(jax, graph, tuple(wrt), kind, args),
                args,
                device,
                self.cache_dir,
            )
            out, grads = program(*args)
        return EngineOutput(np.asarray(out), {w: np.asarray(g) for w, g in zip(wrt, grads)})


def _compile(jax, graph, wrt: tuple, kind: str, args):
    from .jax_ops import OPS

    def program(arrays, fixed, *products):
        def forward(*a):
            return interpret(graph, OPS, {**fixed, **dict(zip(wrt, a))})[graph.output]

        return PRODUCTS[kind](jax, forward, arrays, *products)

    return jax.jit(program).lower(*args).compile()


def _vjp(jax, forward, arrays, cotangent):
    out, pullback = jax.vjp(forward, *arrays)
    return out, pullback(cotangent)


def _batched_vjp(jax, forward, arrays, cotangents):
    out, pullback = jax.vjp(forward, *arrays)
    return out, jax.vmap(pullback)(cotangents)


def _jvps(jax, forward, arrays, tangents):
    """One JVP per input, the others held, unrolled in one program: XLA computes the
    forward pass they have in common once."""

    def along(i):
        def moving(x):
            return forward(*arrays[:i], x, *arrays[i + 1 :])

        return jax.jvp(moving, (arrays[i],), (tangents[i],))[1]

    return forward(*arrays), [along(i) for i in range(len(arrays))]


def _hvp(jax, forward, arrays, cotangent, tangents):
    """Forward over reverse: the VJP's own derivative along the tangents, every input
    moving at once."""

    def gradient(*a):
        out, pullback = jax.vjp(forward, *a)
        return pullback(cotangent), out

    (_, out), (products, _) = jax.jvp(gradient, tuple(arrays), tuple(tangents))
    return out, products


# each program gives (output, one array per input differentiated)
PRODUCTS: dict[str, Callable[..., tuple]] = {
    "vjp": _vjp,
    "batched_vjp": _batched_vjp,
    "jvp": _jvps,
    "hvp": _hvp,
}


def program_key(graph, wrt, kind, device, args) -> str:
    """What the compiled program depends on: the graph's structure, what is differentiated
    and which product (`kind`: a VJP, one over a batch of cotangents, JVPs, a
    Hessian-vector product), the device, the arguments' dtypes and shapes, and the code that
    traces it (an op table edited since, or another version of it)."""
    import jax

    from .jax_ops import OPS

    arrays, fixed, *products = args  # products: a cotangent, a stack of them, tangents
    shaped = [*arrays, *jax.tree_util.tree_leaves(products)]
    # by name: a dtype's `str` does not tell ml_dtypes' apart (bfloat16's is '<V2')
    avals: list[tuple] = [(np.shape(a), np.asarray(a).dtype.name) for a in shaped]
    avals += [(k, np.shape(v), np.asarray(v).dtype.name) for k, v in sorted(fixed.items())]
    code = [_source_hash(), [(op, _function_id(OPS[op])) for op in sorted(graph.ops())]]
    return repr((graph_key(graph), tuple(wrt), kind, str(device), avals, code))


@functools.lru_cache(maxsize=1)
def _source_hash() -> str:
    """This module, the op table and the graph interpreter, as they are on disk."""
    from ..ir import graph as ir_graph
    from . import jax_ops

    modules = (sys.modules[__name__], jax_ops, ir_graph)
    texts = [Path(inspect.getfile(module)).read_bytes() for module in modules]
    return hashlib.sha256(b"".join(texts)).hexdigest()


def _function_id(fn) -> str:
    code = getattr(fn, "__code__", None)
    body = hashlib.sha256(code.co_code).hexdigest()[:16] if code is not None else ""
    return f"{getattr(fn, '__module__', '')}.{getattr(fn, '__qualname__', repr(fn))}:{body}"


def graph_key(graph) -> str:
    """The graph's structure: leaves (name, shape, kind), the constants' names (their values
    are arguments), the nodes with their attributes and integer data's casts, the output."""
    leaves = [(leaf.name, leaf.shape, leaf.kind) for leaf in graph.inputs.values()]
    nodes = [(n.name, n.op, n.args, sorted(n.attrs.items()), n.casts) for n in graph.nodes]
    return repr((leaves, sorted(graph.consts), nodes, graph.output))
