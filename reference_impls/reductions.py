"""Reductions and shape ops: each forward beside its gradient rule."""
from __future__ import annotations

import numpy as np

from .primitive import Primitive


def _axes(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(a % ndim for a in (axis if isinstance(axis, (list, tuple)) else [axis]))


def _expand(g, x, axis, keepdims):
    """Give a reduced gradient back its reduced axes, so it broadcasts against x."""
    if not keepdims:
        g = np.expand_dims(g, _axes(axis, x.ndim))
    return g


def _sum(x, axis=None, keepdims=False):
    return np.sum(x, axis=_tuple(axis), keepdims=keepdims)


def _mean(x, axis=None, keepdims=False):
    return np.mean(x, axis=_tuple(axis), keepdims=keepdims)


def _max(x, axis=None, keepdims=False):
    return np.max(x, axis=_tuple(axis), keepdims=keepdims)


def _tuple(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _sum_grad(g, out, x, axis=None, keepdims=False):
    return np.broadcast_to(_expand(g, x, axis, keepdims), x.shape).copy()


def _mean_grad(g, out, x, axis=None, keepdims=False):
    count = np.prod([x.shape[a] for a in _axes(axis, x.ndim)])
    return _sum_grad(g, out, x, axis, keepdims) / count


def _max_grad(g, out, x, axis=None, keepdims=False):
    # ties share the gradient evenly, as torch and jax do
    winners = x == _expand(out, x, axis, keepdims)
    share = winners / np.sum(winners, axis=_axes(axis, x.ndim), keepdims=True)
    return share * _expand(g, x, axis, keepdims)


def _transpose(x, axes=None):
    return np.transpose(x, axes)


def _transpose_grad(g, out, x, axes=None):
    return np.transpose(g, None if axes is None else np.argsort([a % x.ndim for a in axes]))


def _reshape(x, shape=None):
    return np.reshape(x, shape)


def _reshape_grad(g, out, x, shape=None):
    return np.reshape(g, x.shape)


OPS = {
    "sum": Primitive(_sum, (_sum_grad,)),
    "mean": Primitive(_mean, (_mean_grad,)),
    "max": Primitive(_max, (_max_grad,)),
    "transpose": Primitive(_transpose, (_transpose_grad,)),
    "reshape": Primitive(_reshape, (_reshape_grad,)),
}
