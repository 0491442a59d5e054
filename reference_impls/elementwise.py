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


# --- gradient rules: rule(g, out, *args) -> the gradient of one argument ----------------

def _pass(g, out, *args):                   # add (both), sub (first)
    return g


def _negate(g, out, *args):                 # sub (second), neg
    return -g


def _mul_a(g, out, a, b):
    return g * b


def _mul_b(g, out, a, b):
    return g * a


def _div_a(g, out, a, b):
    return g / b


def _div_b(g, out, a, b):
    return -g * a / (b * b)


def _pow_base(g, out, a, k):
    return g * k * np.power(a, k - 1)


def _maximum_a(g, out, a, b):
    return g * _tie_share(a, b)


def _maximum_b(g, out, a, b):
    return g * _tie_share(b, a)


def _minimum_a(g, out, a, b):
    return g * _tie_share(b, a)


def _minimum_b(g, out, a, b):
    return g * _tie_share(a, b)


def _exp_grad(g, out, x):
    return g * out


def _log_grad(g, out, x):
    return g / x


def _tanh_grad(g, out, x):
    return g * (1 - out * out)


def _sigmoid_grad(g, out, x):
    return g * out * (1 - out)


def _relu(x):
    return np.maximum(x, 0)


def _relu_grad(g, out, x):
    return g * (x > 0)


def _abs_grad(g, out, x):
    return g * np.sign(x)


# Named functions, not lambdas: a table that pickles can be sent to a worker process.
OPS = {
    "add": Primitive(np.add, (_pass, _pass)),
    "sub": Primitive(np.subtract, (_pass, _negate)),
    "mul": Primitive(np.multiply, (_mul_a, _mul_b)),
    "div": Primitive(np.divide, (_div_a, _div_b)),
    "pow": Primitive(np.power, (_pow_base, _pow_exponent_grad)),
    "maximum": Primitive(np.maximum, (_maximum_a, _maximum_b)),
    "minimum": Primitive(np.minimum, (_minimum_a, _minimum_b)),
    "matmul": Primitive(np.matmul, (_matmul_grad_a, _matmul_grad_b)),
    "neg": Primitive(np.negative, (_negate,)),
    "exp": Primitive(np.exp, (_exp_grad,)),
    "log": Primitive(np.log, (_log_grad,)),
    "tanh": Primitive(np.tanh, (_tanh_grad,)),
    "sigmoid": Primitive(_sigmoid, (_sigmoid_grad,)),
    "relu": Primitive(_relu, (_relu_grad,)),
    "abs": Primitive(np.abs, (_abs_grad,)),
}
