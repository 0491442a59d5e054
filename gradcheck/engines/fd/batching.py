"""Batching rules: how an op's numpy forward runs on arguments that carry an extra leading
axis of stacked perturbed inputs, so that many finite-difference evaluations go through one
call. One rule per op kind; an op without a rule (conv2d, max-pool, rnn, a loss that
averages over its batch...) or a shape a rule cannot handle means the graph is evaluated
in place instead.

A rule gets the op's forward, which arguments are stacked, the unstacked argument shapes
and output shape, and the op's attributes; it returns a function of the (partly stacked)
arguments, or None.
"""
from __future__ import annotations

import numpy as np



def _elementwise(forward, stacked, shapes, out_shape, attrs):
    # numpy broadcasting aligns trailing axes: a stacked argument with fewer axes than the
    # output gets length-1 axes after its stacked one, so that this stays in front
    missing = [len(out_shape) - len(s) if b else 0 for s, b in zip(shapes, stacked)]

    def run(*args):
        return forward(*(a.reshape(a.shape[:1] + (1,) * m + a.shape[1:]) if m else a
                         for a, m in zip(args, missing)), **attrs)
    return run


def _matmul(forward, stacked, shapes, out_shape, attrs):
    (stack_a, stack_b), (na, nb) = stacked, (len(shapes[0]), len(shapes[1]))
    if stack_a and stack_b:
        return forward if na == nb >= 2 else None
    if stack_a:
        return forward if (na >= 2 and na >= nb) or (na == 1 and nb <= 2) else None
    if nb >= 2 and nb >= na:
        return forward
    if na == 1:                     # vector . stack of vectors
        return lambda a, b: forward(b, a)
    # matrix @ stack of vectors: one matrix product with the stack as columns
    return lambda a, b: np.moveaxis(forward(a, b.T), -1, 0)


def _along_axes(default):
    """Reductions, softmax: the stacked axis is axis 0, so every named axis moves by one."""
    def rule(forward, stacked, shapes, out_shape, attrs):
        ndim, axis = len(shapes[0]), attrs.get("axis", default)
        axes = range(ndim) if axis is None else axis if isinstance(axis, (list, tuple)) else [axis]
        moved = tuple(a % ndim + 1 for a in axes)
        moved = moved[0] if isinstance(axis, int) else moved
        return lambda x: forward(x, **{**attrs, "axis": moved})
    return rule


def _transpose(forward, stacked, shapes, out_shape, attrs):
    ndim, axes = len(shapes[0]), attrs.get("axes")
    order = reversed(range(ndim)) if axes is None else (a % ndim for a in axes)
    moved = (0,) + tuple(a + 1 for a in order)
    return lambda x: forward(x, **{**attrs, "axes": moved})


def _reshape(forward, stacked, shapes, out_shape, attrs):
    return lambda x: forward(x, **{**attrs, "shape": (len(x),) + tuple(out_shape)})


ELEMENTWISE = ("add sub mul div pow maximum minimum neg exp log tanh sigmoid relu abs sqrt "
               "square sin cos log1p softplus gelu leaky_relu elu clip").split()
RULES = {**{op: _elementwise for op in ELEMENTWISE}, "matmul": _matmul,
         **{op: _along_axes(None) for op in ("sum", "mean", "max", "min", "var")},
         **{op: _along_axes(-1) for op in ("softmax", "log_softmax", "logsumexp")},
         "transpose": _transpose, "reshape": _reshape}


def stacked_forward(graph, ops, env: dict, nodes: list, name: str):
    """A function (stack of values of input `name`) -> the stacked output, evaluating
    `nodes` (those that depend on `name`) with batching rules; None if one does not apply."""
    stacked, steps = {name}, []
    for node in nodes:
        flags = tuple(a in stacked for a in node.args)
        rule = RULES.get(node.op)
        step = rule and rule(ops[node.op].forward, flags, [np.shape(env[a]) for a in node.args],
                             np.shape(env[node.name]), node.attrs)
        if step is None:
            return None
        steps.append((node, step))
        stacked.add(node.name)

    def run(stack: np.ndarray) -> np.ndarray:
        scratch = {**env, name: stack}
        for node, step in steps:
            scratch[node.name] = step(*(scratch[a] for a in node.args))
        return scratch[graph.output]
    return run


__all__ = ["RULES", "stacked_forward"]
