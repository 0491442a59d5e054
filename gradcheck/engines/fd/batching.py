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

import reference_impls


def _elementwise(forward, stacked, shapes, out_shape, attrs):
    # numpy broadcasting aligns trailing axes: a stacked argument with fewer axes than the
    # output gets length-1 axes after its stacked one, so that this stays in front
    missing = [len(out_shape) - len(s) if b else 0 for s, b in zip(shapes, stacked)]

    def run(*args):
        return forward(*(_lead(a, m) if m else a for a, m in zip(args, missing)), **attrs)

    return run


def _matmul(forward, stacked, shapes, out_shape, attrs):
    (stack_a, stack_b), (na, nb) = stacked, (len(shapes[0]), len(shapes[1]))
    if na >= 2 and nb >= 2:  # stacks of matrices: the stack axis leads, past the
        depth = max(na, nb)  # other operand's batch axes
        return lambda a, b: forward(
            _lead(a, depth - na) if stack_a else a, _lead(b, depth - nb) if stack_b else b
        )
    if stack_a and stack_b:  # two stacks and a vector among them: by row
        return None
    if stack_a:
        return forward if na >= 2 or nb <= 2 else None
    if nb >= 2:  # vector @ stack of matrices
        return forward
    if na == 1:  # vector . stack of vectors
        return lambda a, b: forward(b, a)
    if na == 2:  # matrix @ stack of vectors = stack @ matrix.T, one product
        return lambda a, b: forward(b, a.T)
    return lambda a, b: np.moveaxis(forward(a, b.T), -1, 0)


def _lead(stack: np.ndarray, axes: int) -> np.ndarray:
    """`axes` length-1 axes after the stacked one."""
    return stack.reshape(stack.shape[:1] + (1,) * axes + stack.shape[1:])


def _along_axes(default):
    """Reductions, softmax: the stacked axis is axis 0, so every named axis moves by one."""

    def rule(forward, stacked, shapes, out_shape, attrs):
        ndim, axis = len(shapes[0]), attrs.get("axis", default)
        axes = range(ndim) if axis is None else axis if isinstance(axis, (list, tuple)) else [axis]
        moved = tuple(a % ndim + 1 for a in axes)
        along = moved[0] if isinstance(axis, int) else moved
        return lambda x: forward(x, **{**attrs, "axis": along})

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
            folded = [
                _fold(a, b, rows) if i in per_sample else a
                for i, (a, b) in enumerate(zip(args, stacked))
            ]
            out = forward(*folded, **attrs)
            return out.reshape((rows,) + tuple(out_shape))

        return run

    return rule


def _conv2d(forward, stacked, shapes, out_shape, attrs):
    """A stacked image folds into the batch; stacked filters or biases (the image not
    stacked) fold into the filter axis: B stacks of F filters in G groups are B * F filters,
    laid out group by group so that each group keeps its own input channels."""
    if stacked[0] and (stacked[1] or stacked[2]):
        return _conv2d_as_groups(forward, shapes, out_shape, attrs)
    if stacked[0]:
        return _folded((0,))(forward, stacked, shapes, out_shape, attrs)
    groups = attrs.get("groups", 1)

    def run(x, w, b):
        rows = len(w) if stacked[1] else len(b)
        w = np.broadcast_to(w, (rows,) + shapes[1])
        b = np.broadcast_to(b, (rows,) + shapes[2])
        out = forward(
            x,
            _group_major(w, groups).reshape((-1,) + w.shape[2:]),
            _group_major(b, groups).reshape(-1),
            **attrs,
        )
        n, _, oh, ow = out.shape
        out = out.reshape(n, groups, rows, -1, oh, ow).transpose(2, 0, 1, 3, 4, 5)
        return out.reshape((rows,) + tuple(out_shape))

    return run


def _conv2d_as_groups(forward, shapes, out_shape, attrs):
    """Images and filters both stacked: B stacks of G groups are B * G groups, each row's
    channels and filters side by side, so that no row sees another's."""
    groups = attrs.get("groups", 1)

    def run(x, w, b):
        rows = len(x)
        x = np.moveaxis(np.broadcast_to(x, (rows,) + shapes[0]), 0, 1)
        w = np.broadcast_to(w, (rows,) + shapes[1])
        out = forward(
            x.reshape((len(x), -1) + x.shape[3:]),
            w.reshape((-1,) + w.shape[2:]),
            np.broadcast_to(b, (rows,) + shapes[2]).reshape(-1),
            **{**attrs, "groups": rows * groups},
        )
        return np.moveaxis(out.reshape((len(out), rows) + tuple(out_shape[1:])), 1, 0)

    return run


def _group_major(a: np.ndarray, groups: int) -> np.ndarray:
    """(stack, filters, ...) -> (groups, stack, filters per group, ...)."""
    return np.moveaxis(a.reshape((len(a), groups, -1) + a.shape[2:]), 1, 0)


def _leading(extra: tuple[int, ...]):
    """Ops whose forward broadcasts over leading axes (rnn and lstm: `x @ wx + b`, `h @ wh`):
    stacked argument i gets `extra[i]` length-1 axes after its stacked one, so that the
    stacks meet on one leading axis whichever arguments carry one."""

    def rule(forward, stacked, shapes, out_shape, attrs):
        def run(*args):
            return forward(
                *(_lead(a, extra[i]) if b else a for i, (a, b) in enumerate(zip(args, stacked))),
                **attrs,
            )

        return run

    return rule


def _batchnorm(forward, stacked, shapes, out_shape, attrs):
    """Batch statistics are per channel: B stacks of C channels are B * C channels, the
    stack moved beside the channel axis (1), gamma and beta stacked alike."""
    n, channels, rest = shapes[0][0], shapes[0][1], tuple(shapes[0][2:])

    def run(x, gamma, beta):
        rows = next(len(a) for a, b in zip((x, gamma, beta), stacked) if b)
        x = np.moveaxis(np.broadcast_to(x, (rows,) + shapes[0]), 0, 1)
        params = [np.broadcast_to(p, (rows, channels)).reshape(-1) for p in (gamma, beta)]
        out = forward(x.reshape((n, rows * channels) + rest), *params, **attrs)
        return np.moveaxis(out.reshape((n, rows, channels) + rest), 1, 0)

    return run


def _einsum(forward, stacked, shapes, out_shape, attrs):
    """A letter the subscripts do not use names the stack, in each stacked operand and in
    the result (cleaned subscripts always carry '->')."""
    subscripts = attrs["subscripts"]
    terms, result = subscripts.split("->")
    letter = next(
        c for c in "ZYXWVUTSRQPONMLKJIHGFEDCBAzyxwvutsrqponmlkjihgfedcba" if c not in subscripts
    )
    spec = ",".join(letter + t if b else t for t, b in zip(terms.split(","), stacked))
    return lambda *operands: forward(
        *operands, **{**attrs, "subscripts": f"{spec}->{letter}{result}"}
    )


def _index(forward, stacked, shapes, out_shape, attrs):
    """The (cleaned, explicit) key, with the whole stack axis in front."""
    return lambda x: forward(x, **{**attrs, "key": (slice(None),) + tuple(attrs["key"])})


def _labels_unstacked(forward, stacked, shapes, out_shape, attrs):
    """Cross-entropy picks each row's label along the last axis and averages over the rows:
    stacked scores give one loss per stack row, as long as the labels are not stacked."""
    return None if stacked[1] else forward


def _fold(a: np.ndarray, stacked: bool, rows: int) -> np.ndarray:
    a = a if stacked else np.broadcast_to(a, (rows,) + np.shape(a))
    return a.reshape((-1,) + a.shape[2:])


def _row_by_row(forward, stacked, shapes, out_shape, attrs):
    def run(*args):
        rows = next(len(a) for a, b in zip(args, stacked) if b)
        return np.stack(
            [
                forward(*(a[r] if b else a for a, b in zip(args, stacked)), **attrs)
                for r in range(rows)
            ]
        )

    return run


ELEMENTWISE = [
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    "neg",
    "exp",
    "log",
    "tanh",
    "sigmoid",
    "relu",
    "abs",
    "sqrt",
    "square",
    "sin",
    "cos",
    "log1p",
    "softplus",
    "gelu",
    "leaky_relu",
    "elu",
    "clip",
]
RULES = {
    **dict.fromkeys(ELEMENTWISE, _elementwise),
    "matmul": _matmul,
    **{op: _along_axes(None) for op in ("sum", "mean", "max", "min", "var")},
    **{op: _along_axes(-1) for op in ("softmax", "log_softmax", "logsumexp")},
    "transpose": _transpose,
    "reshape": _reshape,
    "conv2d": _conv2d,
    "maxpool2d": _folded((0,)),
    "avgpool2d": _folded((0,)),
    "rnn": _leading((0, 0, 1, 0, 2)),
    "lstm": _leading((0, 0, 0, 1, 0, 2)),
    # layer norm standardizes along the last axis alone: it broadcasts as x * gamma does
    "layernorm": _elementwise,
    "batchnorm": _batchnorm,
    "einsum": _einsum,
    "index": _index,
    "softmax_cross_entropy": _labels_unstacked,
}


def dependent_nodes(graph, names) -> list:
    """The graph's nodes that depend on any input in `names`, in topological order: what a
    change of those inputs makes to recompute."""
    order = reference_impls.topological_order(graph)
    touched = reference_impls.dependents(order, list(names))
    return [node for node in order if node.name in touched]


def row_bytes(env: dict, names, nodes: list) -> int:
    """The memory one row of a stack takes through `nodes`: its values, and as much again
    in temporaries (float64)."""
    return 2 * 8 * int(sum(np.size(env[n]) for n in [*names, *(node.name for node in nodes)]))


def stacked_forward(graph, ops, env: dict, nodes: list, names):
    """A function (a stack of values for each input in `names`, in that order) -> the
    stacked output, evaluating `nodes` (those that depend on `names`) with batching rules."""
    names = (names,) if isinstance(names, str) else tuple(names)
    stacked, steps = set(names), []
    for node in nodes:
        flags = tuple(a in stacked for a in node.args)
        shapes, out_shape = [np.shape(env[a]) for a in node.args], np.shape(env[node.name])
        step = RULES.get(node.op, _row_by_row)(
            ops[node.op].forward, flags, shapes, out_shape, node.attrs
        ) or _row_by_row(ops[node.op].forward, flags, shapes, out_shape, node.attrs)
        steps.append((node, step))
        stacked.add(node.name)

    def run(*stacks: np.ndarray) -> np.ndarray:
        scratch = {**env, **dict(zip(names, stacks))}
        for node, step in steps:
            # a cast operand (integer data in float arithmetic) is never stacked: it
            # depends on no differentiated input
            scratch[node.name] = step(*reference_impls.operands(node, scratch))
        return scratch[graph.output]

    return run


__all__ = ["RULES", "dependent_nodes", "row_bytes", "stacked_forward"]
