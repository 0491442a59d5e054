"""Elementwise and matrix-product ops: each forward beside its gradient rules.

Rules return the gradient at the broadcast shape; the executor reduces it to each input's
shape with `unbroadcast`, so no rule repeats that logic.
"""
from __future__ import annotations

import numpy as np

from .primitive import Primitive


def _sigmoid(x):
    # split by sign so that exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _pow_exponent_grad(g, out, a, k):
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * out * np.log(a)


def _tie_share(a, b):
    """Gradient share of `a` in maximum(a, b): 1 where a wins, 1/2 on a tie (as torch and jax)."""
    return (a > b) + 0.5 * (a == b)


def _matmul_grad_a(g, out, a, b):
    if b.ndim == 1:
        return np.multiply.outer(g, b) if a.ndim == 2 else g * b
    return g @ b.T


def _matmul_grad_b(g, out, a, b):
    if a.ndim == 1:
        return np.multiply.outer(a, g) if b.ndim == 2 else g * a
    return a.T @ g


OPS = {
    "add": Primitive(np.add, (lambda g, out, a, b: g, lambda g, out, a, b: g)),
    "sub": Primitive(np.subtract, (lambda g, out, a, b: g, lambda g, out, a, b: -g)),
    "mul": Primitive(np.multiply, (lambda g, out, a, b: g * b, lambda g, out, a, b: g * a)),
    "div": Primitive(np.divide, (lambda g, out, a, b: g / b,
                                 lambda g, out, a, b: -g * a / (b * b))),
    "pow": Primitive(np.power, (lambda g, out, a, k: g * k * np.power(a, k - 1),
                                _pow_exponent_grad)),
    "maximum": Primitive(np.maximum, (lambda g, out, a, b: g * _tie_share(a, b),
                                      lambda g, out, a, b: g * _tie_share(b, a))),
    "minimum": Primitive(np.minimum, (lambda g, out, a, b: g * _tie_share(b, a),
                                      lambda g, out, a, b: g * _tie_share(a, b))),
    "matmul": Primitive(np.matmul, (_matmul_grad_a, _matmul_grad_b)),
    "neg": Primitive(np.negative, (lambda g, out, x: -g,)),
    "exp": Primitive(np.exp, (lambda g, out, x: g * out,)),
    "log": Primitive(np.log, (lambda g, out, x: g / x,)),
    "tanh": Primitive(np.tanh, (lambda g, out, x: g * (1 - out * out),)),
    "sigmoid": Primitive(_sigmoid, (lambda g, out, x: g * out * (1 - out),)),
    "relu": Primitive(lambda x: np.maximum(x, 0), (lambda g, out, x: g * (x > 0),)),
    "abs": Primitive(np.abs, (lambda g, out, x: g * np.sign(x),)),
}
