"""Reductions and shape ops: each forward beside its gradient and tangent rules.

Sums, means, transposes and reshapes are linear: their tangent is the forward applied to
the tangent (`linear`).

Attributes arrive clean (the graph builder normalises them once): `axis` of a reduction
is a tuple of non-negative axes, `keepdims` a bool, `axes` and `shape` tuples.
"""

from __future__ import annotations

import numpy as np

from .primitive import Primitive, linear


def _expand(g, axis, keepdims):
    """Give a reduced gradient back its reduced axes, so it broadcasts against x."""
    return g if keepdims else np.expand_dims(g, axis)


def _sum(x, axis=(), keepdims=False):
    return np.sum(x, axis=axis, keepdims=keepdims)


def _mean(x, axis=(), keepdims=False):
    return np.mean(x, axis=axis, keepdims=keepdims)


def _max(x, axis=(), keepdims=False):
    return np.max(x, axis=axis, keepdims=keepdims)


def _min(x, axis=(), keepdims=False):
    return np.min(x, axis=axis, keepdims=keepdims)


def _var(x, axis=(), keepdims=False):
    return np.var(x, axis=axis, keepdims=keepdims)


def _logsumexp(x, axis=-1, keepdims=False):
    # shifted by the max, exp never overflows and the largest term is exactly 1
    top = np.max(x, axis=axis, keepdims=True)
    out = top + np.log(np.sum(np.exp(x - top), axis=axis, keepdims=True))
    return out if keepdims else np.squeeze(out, axis)


def _count(x, axis):
    return np.prod([x.shape[a] for a in axis], dtype=np.int64)


def _sum_grad(g, out, x, axis=(), keepdims=False):
    return np.broadcast_to(_expand(g, axis, keepdims), x.shape).copy()


def _mean_grad(g, out, x, axis=(), keepdims=False):
    return _sum_grad(g, out, x, axis, keepdims) / _count(x, axis)


def _extreme_grad(g, out, x, axis=(), keepdims=False):
    """max and min: ties share the gradient evenly, as torch and jax do."""
    return _tie_shares(out, x, axis, keepdims) * _expand(g, axis, keepdims)


def _extreme_tangent(t, out, x, axis=(), keepdims=False):
    """max and min move with the winner's tangent; with ties, the mean of theirs (jax)."""
    return np.sum(_tie_shares(out, x, axis, keepdims) * t, axis=axis, keepdims=keepdims)


def _tie_shares(out, x, axis, keepdims):
    """1 / (number of winners) at each element equal to its reduction's result, else 0."""
    winners = x == _expand(out, axis, keepdims)
    return winners / np.sum(winners, axis=axis, keepdims=True)


def _var_grad(g, out, x, axis=(), keepdims=False):
    # var = mean((x - mean)^2); the mean's own gradient term sums to zero
    return 2 * _centered(x, axis) * _expand(g, axis, keepdims) / _count(x, axis)


def _var_tangent(t, out, x, axis=(), keepdims=False):
    # d var = mean(2 (x - mean) (t - mean(t))), and (x - mean) sums to zero against mean(t)
    return 2 * np.mean(_centered(x, axis) * t, axis=axis, keepdims=keepdims)


def _centered(x, axis):
    return x - np.mean(x, axis=axis, keepdims=True)


def _logsumexp_grad(g, out, x, axis=-1, keepdims=False):
    # d/dx logsumexp(x) = softmax(x) = exp(x - out)
    return np.exp(x - _expand(out, axis, keepdims)) * _expand(g, axis, keepdims)


def _logsumexp_tangent(t, out, x, axis=-1, keepdims=False):
    # the tangent's mean under softmax(x) = exp(x - out)
    softmax = np.exp(x - _expand(out, axis, keepdims))
    return np.sum(softmax * t, axis=axis, keepdims=keepdims)


def _transpose(x, axes=()):
    return np.transpose(x, axes)


def _transpose_grad(g, out, x, axes=()):
    return np.transpose(g, np.argsort(axes))


def _reshape(x, shape=()):
    return np.reshape(x, shape)


def _reshape_grad(g, out, x, shape=()):
    return np.reshape(g, x.shape)


OPS = {
    "sum": Primitive(_sum, (_sum_grad,), tangents=(linear(_sum),)),
    "mean": Primitive(_mean, (_mean_grad,), tangents=(linear(_mean),)),
    "max": Primitive(_max, (_extreme_grad,), tangents=(_extreme_tangent,)),
    "min": Primitive(_min, (_extreme_grad,), tangents=(_extreme_tangent,)),
    "var": Primitive(_var, (_var_grad,), tangents=(_var_tangent,)),
    "logsumexp": Primitive(_logsumexp, (_logsumexp_grad,), tangents=(_logsumexp_tangent,)),
    "transpose": Primitive(_transpose, (_transpose_grad,), tangents=(linear(_transpose),)),
    "reshape": Primitive(_reshape, (_reshape_grad,), tangents=(linear(_reshape),)),
}
