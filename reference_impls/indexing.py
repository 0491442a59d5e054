"""Indexing and assembling ops: each forward beside its gradient and tangent rules.

Attributes arrive clean: `key` of `index` is a tuple of non-negative ints, resolved slices
and None covering every axis; `axis` a non-negative int (a tuple for expand_dims and
squeeze). Picking forwards scatter their gradient back; where one element is picked
several times (`take` with repeated indices), the contributions add up. Every op here is
linear in its data: its tangent is the same indexing, or assembling, of the tangents.
"""

from __future__ import annotations

import numpy as np

from .primitive import Primitive, linear


def _index(x, key=()):
    return x[key]


def _index_grad(g, out, x, key=()):
    # basic indexing never picks an element twice: assignment is the whole scatter
    dx = np.zeros_like(x)
    dx[key] = g
    return dx


def _concat(*xs, axis=0):
    return np.concatenate(xs, axis=axis)


def _concat_grad(i, g, out, *xs, axis=0):
    edges = np.cumsum([x.shape[axis] for x in xs])[:-1]
    return np.split(g, edges, axis=axis)[i]


def _concat_tangent(i, t, out, *xs, axis=0):
    start = sum(x.shape[axis] for x in xs[:i])
    return _placed(t, out, (slice(None),) * axis + (slice(start, start + t.shape[axis]),))


def _stack(*xs, axis=0):
    return np.stack(xs, axis=axis)


def _stack_grad(i, g, out, *xs, axis=0):
    return np.take(g, i, axis=axis)


def _stack_tangent(i, t, out, *xs, axis=0):
    return _placed(t, out, (slice(None),) * axis + (i,))


def _placed(t, out, where):
    """Operand i's tangent where it lies in the output, zeros elsewhere: the other
    operands' tangents are theirs to add."""
    dout = np.zeros_like(t, shape=out.shape)
    dout[where] = t
    return dout


def _expand_dims(x, axis=()):
    return np.expand_dims(x, axis)


def _squeeze(x, axis=()):
    return np.squeeze(x, axis)


def _restore_shape(g, out, x, axis=()):  # expand_dims and squeeze
    return np.reshape(g, x.shape)


def _take(x, indices, axis=0):
    return np.take(x, indices, axis=axis)


def _take_grad(g, out, x, indices, axis=0):
    # move the picked axis to the front and the index axes of g there too, then add each
    # picked slice back at its index: np.add.at adds once per occurrence
    k = np.ndim(indices)
    dx = np.zeros_like(np.moveaxis(x, axis, 0))
    np.add.at(dx, indices, np.moveaxis(g, range(axis, axis + k), range(k)))
    return np.moveaxis(dx, 0, axis)


def _take_along_axis(x, indices, axis=0):
    return np.take_along_axis(x, indices, axis=axis)


def _take_along_axis_grad(g, out, x, indices, axis=0):
    # every output element names its source: the same position, with indices along axis;
    # x broadcast against indices is summed back by the executor's unbroadcast
    where = list(np.indices(out.shape, sparse=True))
    where[axis] = np.broadcast_to(indices, out.shape)
    dx = np.zeros(out.shape[:axis] + x.shape[axis : axis + 1] + out.shape[axis + 1 :], g.dtype)
    np.add.at(dx, tuple(where), g)
    return dx


OPS = {
    "index": Primitive(_index, (_index_grad,), tangents=(linear(_index),)),
    "concat": Primitive(_concat, (_concat_grad,), variadic=True, tangents=(_concat_tangent,)),
    "stack": Primitive(_stack, (_stack_grad,), variadic=True, tangents=(_stack_tangent,)),
    "expand_dims": Primitive(_expand_dims, (_restore_shape,), tangents=(linear(_expand_dims),)),
    "squeeze": Primitive(_squeeze, (_restore_shape,), tangents=(linear(_squeeze),)),
    "take": Primitive(_take, (_take_grad, None), tangents=(linear(_take), None)),
    "take_along_axis": Primitive(
        _take_along_axis, (_take_along_axis_grad, None), tangents=(linear(_take_along_axis), None)
    ),
}
