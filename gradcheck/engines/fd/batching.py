"""Batching rules: how an op's numpy forward runs on arguments that carry an extra leading
axis of stacked perturbed inputs, so that many finite-difference evaluations go through one
call. One rule per op kind.

A rule gets the op's forward, which arguments are stacked, the unstacked argument shapes
and output shape, and the op's attributes; it returns a function of the (partly stacked)
arguments, or None. Ops that carry their own batch axis (conv2d, max-pool, rnn) fold the
stack into it; an op with no rule, or a case its rule refuses, runs once per row of the
stack (`_row_by_row`), so the ops around it still run stacked.
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
    if na == 2:                     # matrix @ stack of vectors = stack @ matrix.T, one product
        return lambda a, b: forward(b, a.T)
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


def _folded(per_sample: tuple[int, ...]):
    """Ops whose arguments `per_sample` start with the op's own batch axis N: a stack of B
    becomes a batch of B * N, as long as no other argument is stacked."""
    def rule(forward, stacked, shapes, out_shape, attrs):
        if any(b for i, b in enumerate(stacked) if i not in per_sample):
            return None

        def run(*args):
            rows = next(len(a) for a, b in zip(args, stacked) if b)
            folded = [_fold(a, b, rows) if i in per_sample else a
                      for i, (a, b) in enumerate(zip(args, stacked))]
            out = forward(*folded, **attrs)
            return out.reshape((rows,) + tuple(out_shape))
        return run
    return rule


def _conv2d(forward, stacked, shapes, out_shape, attrs):
    """A stacked image folds into the batch; stacked filters or biases (the image not
    stacked, one group) fold into the filter axis: B stacks of F filters are B * F filters."""
    if stacked[0]:
        return _folded((0,))(forward, stacked, shapes, out_shape, attrs)
    if attrs.get("groups", 1) != 1:
        return None

    def run(x, w, b):
        rows = len(w) if stacked[1] else len(b)
        w = w if stacked[1] else np.broadcast_to(w, (rows,) + np.shape(w))
        b = b if stacked[2] else np.broadcast_to(b, (rows,) + np.shape(b))
        out = forward(x, w.reshape((-1,) + w.shape[2:]), b.reshape(-1), **attrs)
        n, _, oh, ow = out.shape
        return out.reshape(n, rows, -1, oh, ow).transpose(1, 0, 2, 3, 4)
    return run


def _fold(a: np.ndarray, stacked: bool, rows: int) -> np.ndarray:
    a = a if stacked else np.broadcast_to(a, (rows,) + np.shape(a))
    return a.reshape((-1,) + a.shape[2:])


def _row_by_row(forward, stacked, shapes, out_shape, attrs):
    def run(*args):
        rows = next(len(a) for a, b in zip(args, stacked) if b)
        return np.stack([forward(*(a[r] if b else a for a, b in zip(args, stacked)), **attrs)
                         for r in range(rows)])
    return run


ELEMENTWISE = ("add sub mul div pow maximum minimum neg exp log tanh sigmoid relu abs sqrt "
               "square sin cos log1p softplus gelu leaky_relu elu clip").split()
RULES = {**{op: _elementwise for op in ELEMENTWISE}, "matmul": _matmul,
         **{op: _along_axes(None) for op in ("sum", "mean", "max", "min", "var")},
         **{op: _along_axes(-1) for op in ("softmax", "log_softmax", "logsumexp")},
         "transpose": _transpose, "reshape": _reshape,
         "conv2d": _conv2d, "maxpool2d": _folded((0,)), "avgpool2d": _folded((0,)),
         "rnn": _folded((0, 1)), "lstm": _folded((0, 1, 2))}


def stacked_forward(graph, ops, env: dict, nodes: list, name: str):
    """A function (stack of values of input `name`) -> the stacked output, evaluating
    `nodes` (those that depend on `name`) with batching rules."""
    stacked, steps = {name}, []
    for node in nodes:
        flags = tuple(a in stacked for a in node.args)
        shapes, out_shape = [np.shape(env[a]) for a in node.args], np.shape(env[node.name])
        step = (RULES.get(node.op, _row_by_row)(ops[node.op].forward, flags, shapes, out_shape,
                                                node.attrs)
                or _row_by_row(ops[node.op].forward, flags, shapes, out_shape, node.attrs))
        steps.append((node, step))
        stacked.add(node.name)

    def run(stack: np.ndarray) -> np.ndarray:
        scratch = {**env, name: stack}
        for node, step in steps:
            scratch[node.name] = step(*(scratch[a] for a in node.args))
        return scratch[graph.output]
    return run


__all__ = ["RULES", "stacked_forward"]
