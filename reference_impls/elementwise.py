"""Elementwise and matrix-product ops: each forward beside its gradient and tangent rules.

Gradient rules return the gradient at the broadcast shape; the executor reduces it to each
input's shape with `unbroadcast`, so no rule repeats that logic. Tangent rules take the
tangent at the input's own shape and let numpy broadcast it against the other operands.

An elementwise op's Jacobian is diagonal, so its tangent rule, t * f'(x), reads like its
gradient rule, g * f'(x): each is written down on its own all the same, from the forward,
so that either can be replaced (a deliberately broken rule) without touching the other,
and the dot-product test of one against the other tests something. At a kink the tangent
takes jax's convention (`jax.jvp`), noted where it differs from the gradient's.
"""

from __future__ import annotations

import math

import numpy as np

from .primitive import Primitive, unbroadcast


def _sigmoid(x):
    # split by sign so that exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _pow_exponent_grad(g, out, a, k):
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * out * np.log(a)


def _pow_exponent_tangent(t, out, a, k):
    # d a^k / dk = a^k log a
    with np.errstate(divide="ignore", invalid="ignore"):
        return t * out * np.log(a)


def _tie_share(a, b):
    """Gradient share of `a` in maximum(a, b): 1 where a wins, 1/2 on a tie (as torch and jax)."""
    return (a > b) + 0.5 * (a == b)


def _matmul_grad_a(g, out, a, b):
    # 1-d operands are a row (a) or a column (b) of the product, as numpy's matmul says;
    # batch axes that a was broadcast over are summed back
    da = _as_product(g, a, b) @ np.swapaxes(_as_matrix_col(b), -1, -2)
    return unbroadcast(da, _as_matrix_row(a).shape).reshape(a.shape)


def _matmul_grad_b(g, out, a, b):
    db = np.swapaxes(_as_matrix_row(a), -1, -2) @ _as_product(g, a, b)
    return unbroadcast(db, _as_matrix_col(b).shape).reshape(b.shape)


# the product is linear in each factor: its tangent is the product with that factor's
# tangent in its place (1-d operands and broadcast batch axes as numpy's matmul says)
def _matmul_tangent_a(t, out, a, b):
    return np.matmul(t, b)


def _matmul_tangent_b(t, out, a, b):
    return np.matmul(a, t)


def _as_product(g, a, b):
    """g with the axes that a 1-d operand dropped from the product put back."""
    g = g[..., None] if b.ndim == 1 else g
    return np.expand_dims(g, -2) if a.ndim == 1 else g


def _as_matrix_row(a):
    return a[None, :] if a.ndim == 1 else a


def _as_matrix_col(b):
    return b[:, None] if b.ndim == 1 else b


def _einsum(*operands, subscripts):
    return np.einsum(subscripts, *operands)


def _einsum_grad(i, g, out, *operands, subscripts):
    """The gradient of operand i is an einsum of g with the other operands, written to
    operand i's letters; a letter summed within operand i alone reaches every element."""
    terms, result = subscripts.split("->")
    terms = terms.split(",")
    others = [t for j, t in enumerate(terms) if j != i]
    known = set(result).union(*others)
    kept = "".join(c for c in terms[i] if c in known)
    part = np.einsum(
        ",".join([result] + others) + "->" + kept,
        g,
        *(op for j, op in enumerate(operands) if j != i),
    )
    lone = [k for k, c in enumerate(terms[i]) if c not in known]
    return np.broadcast_to(np.expand_dims(part, lone), operands[i].shape).copy()


def _einsum_tangent(i, t, out, *operands, subscripts):
    """An einsum is linear in each operand: operand i's tangent in its place."""
    return np.einsum(subscripts, *(t if j == i else op for j, op in enumerate(operands)))


# --- gradient rules: rule(g, out, *args) -> the gradient of one argument ----------------
# --- tangent rules: rule(t, out, *args) -> one argument's share of the output's tangent --


def _pass(g, out, *args):  # add (both), sub (first); the Jacobian is I: a tangent passes too
    return g


def _negate(g, out, *args):  # sub (second), neg; the Jacobian is -I: a tangent's sign flips
    return -g


def _mul_a(g, out, a, b):
    return g * b


def _mul_b(g, out, a, b):
    return g * a


def _mul_tangent_a(t, out, a, b):
    return t * b


def _mul_tangent_b(t, out, a, b):
    return a * t


def _div_a(g, out, a, b):
    return g / b


def _div_b(g, out, a, b):
    return -g * a / (b * b)


def _div_tangent_a(t, out, a, b):
    return t / b


def _div_tangent_b(t, out, a, b):
    # d (a / b) / db = -a / b^2 = -(a / b) / b
    return -t * out / b


def _pow_base(g, out, a, k):
    return g * k * np.power(a, k - 1)


def _pow_base_tangent(t, out, a, k):
    return t * k * np.power(a, k - 1)


def _maximum_a(g, out, a, b):
    return g * _tie_share(a, b)


def _maximum_b(g, out, a, b):
    return g * _tie_share(b, a)


def _minimum_a(g, out, a, b):
    return g * _tie_share(b, a)


def _minimum_b(g, out, a, b):
    return g * _tie_share(a, b)


# the output follows the winner; on a tie it moves by the mean of both tangents (jax)
def _maximum_tangent_a(t, out, a, b):
    return t * _tie_share(a, b)


def _maximum_tangent_b(t, out, a, b):
    return t * _tie_share(b, a)


def _minimum_tangent_a(t, out, a, b):
    return t * _tie_share(b, a)


def _minimum_tangent_b(t, out, a, b):
    return t * _tie_share(a, b)


def _exp_grad(g, out, x):
    return g * out


def _exp_tangent(t, out, x):
    return t * out


def _log_grad(g, out, x):
    return g / x


def _log_tangent(t, out, x):
    return t / x


def _tanh_grad(g, out, x):
    return g * (1 - out * out)


def _tanh_tangent(t, out, x):
    return t * (1 - out * out)


def _sigmoid_grad(g, out, x):
    return g * out * (1 - out)


def _sigmoid_tangent(t, out, x):
    return t * out * (1 - out)


def _relu(x):
    return np.maximum(x, 0)


def _relu_grad(g, out, x):
    return g * (x > 0)


def _relu_tangent(t, out, x):
    return t * (x > 0)  # 0 at the kink, as jax's


def _abs_grad(g, out, x):
    return g * np.sign(x)


def _abs_tangent(t, out, x):
    # at 0, jax's abs moves with +t (its jvp selects x >= 0), where the gradient's sign is 0
    return np.where(x >= 0, t, -t)


def _sqrt_grad(g, out, x):
    return g / (2 * out)


def _sqrt_tangent(t, out, x):
    return t / (2 * out)


def _square(x):
    return x * x


def _square_grad(g, out, x):
    return 2 * g * x


def _square_tangent(t, out, x):
    return 2 * x * t


def _sin_grad(g, out, x):
    return g * np.cos(x)


def _sin_tangent(t, out, x):
    return t * np.cos(x)


def _cos_grad(g, out, x):
    return -g * np.sin(x)


def _cos_tangent(t, out, x):
    return -t * np.sin(x)


def _log1p_grad(g, out, x):
    return g / (1 + x)


def _log1p_tangent(t, out, x):
    return t / (1 + x)


def _softplus(x):
    # log(1 + e^x) = max(x, 0) + log(1 + e^-|x|): exp never overflows, and small
    # e^-|x| keeps its digits through log1p
    return np.maximum(x, 0) + np.log1p(np.exp(-np.abs(x)))


def _softplus_grad(g, out, x):
    return g * _sigmoid(x)


def _softplus_tangent(t, out, x):
    return t * _sigmoid(x)


_erfc = np.vectorize(math.erfc, otypes=[np.float64])  # numpy has no erfc of its own


def _normal_cdf(x):
    # erfc, not 1 + erf: for x < 0 the sum cancels (1 + erf(-3 / sqrt 2) = 0.0027, and its
    # float64 result was 6.5e-15 off relatively, 30 times jax's, which was then blamed)
    return (0.5 * _erfc(-x / math.sqrt(2))).astype(x.dtype)


def _gelu(x):
    return x * _normal_cdf(x)


def _gelu_grad(g, out, x):
    return g * _gelu_slope(x)


def _gelu_tangent(t, out, x):
    return t * _gelu_slope(x)


def _gelu_slope(x):
    # d/dx x Phi(x) = Phi(x) + x phi(x), phi the standard normal density
    return _normal_cdf(x) + x * np.exp(-0.5 * x * x) / math.sqrt(2 * math.pi)


def _leaky_relu(x, slope=0.01):
    return np.where(x > 0, x, slope * x)


def _leaky_relu_grad(g, out, x, slope=0.01):
    return g * np.where(x > 0, 1.0, slope).astype(x.dtype)


def _leaky_relu_tangent(t, out, x, slope=0.01):
    # at 0, jax's leaky_relu (x >= 0 picks x) moves with t, where the gradient takes slope
    return t * np.where(x >= 0, 1.0, slope).astype(x.dtype)


def _elu(x, alpha=1.0):
    # expm1 only where it is used: exp of a large positive x would overflow
    return np.where(x > 0, x, alpha * np.expm1(np.minimum(x, 0)))


def _elu_grad(g, out, x, alpha=1.0):
    return g * np.where(x > 0, 1.0, out + alpha).astype(x.dtype)


def _elu_tangent(t, out, x, alpha=1.0):
    # d/dx alpha (e^x - 1) = alpha e^x = out + alpha
    return t * np.where(x > 0, 1.0, out + alpha).astype(x.dtype)


def _clip(x, low=None, high=None):
    return np.clip(x, low, high)


def _clip_grad(g, out, x, low=None, high=None):
    # the gradient passes on the closed interval [low, high], bounds included, as torch's
    inside = np.ones(x.shape, dtype=bool)
    if low is not None:
        inside &= x >= low
    if high is not None:
        inside &= x <= high
    return g * inside


def _clip_tangent(t, out, x, low=None, high=None):
    # jax clips as minimum(maximum(x, low), high): at a bound the tangent is shared 1/2
    # with the bound, where the gradient passes whole (torch's closed interval)
    above = 1.0 if low is None else _tie_share(x, low)
    below = 1.0 if high is None else _tie_share(high, x)
    return t * above * below


# Named functions, not lambdas: a table that pickles can be sent to a worker process.
OPS = {
    "add": Primitive(np.add, (_pass, _pass), tangents=(_pass, _pass)),
    "sub": Primitive(np.subtract, (_pass, _negate), tangents=(_pass, _negate)),
    "mul": Primitive(np.multiply, (_mul_a, _mul_b), tangents=(_mul_tangent_a, _mul_tangent_b)),
    "div": Primitive(np.divide, (_div_a, _div_b), tangents=(_div_tangent_a, _div_tangent_b)),
    "pow": Primitive(
        np.power,
        (_pow_base, _pow_exponent_grad),
        tangents=(_pow_base_tangent, _pow_exponent_tangent),
    ),
    "maximum": Primitive(
        np.maximum, (_maximum_a, _maximum_b), tangents=(_maximum_tangent_a, _maximum_tangent_b)
    ),
    "minimum": Primitive(
        np.minimum, (_minimum_a, _minimum_b), tangents=(_minimum_tangent_a, _minimum_tangent_b)
    ),
    "matmul": Primitive(
        np.matmul, (_matmul_grad_a, _matmul_grad_b), tangents=(_matmul_tangent_a, _matmul_tangent_b)
    ),
    "neg": Primitive(np.negative, (_negate,), tangents=(_negate,)),
    "exp": Primitive(np.exp, (_exp_grad,), tangents=(_exp_tangent,)),
    "log": Primitive(np.log, (_log_grad,), tangents=(_log_tangent,)),
    "tanh": Primitive(np.tanh, (_tanh_grad,), tangents=(_tanh_tangent,)),
    "sigmoid": Primitive(_sigmoid, (_sigmoid_grad,), tangents=(_sigmoid_tangent,)),
    "relu": Primitive(_relu, (_relu_grad,), tangents=(_relu_tangent,)),
    "abs": Primitive(np.abs, (_abs_grad,), tangents=(_abs_tangent,)),
    "sqrt": Primitive(np.sqrt, (_sqrt_grad,), tangents=(_sqrt_tangent,)),
    "square": Primitive(_square, (_square_grad,), tangents=(_square_tangent,)),
    "sin": Primitive(np.sin, (_sin_grad,), tangents=(_sin_tangent,)),
    "cos": Primitive(np.cos, (_cos_grad,), tangents=(_cos_tangent,)),
    "log1p": Primitive(np.log1p, (_log1p_grad,), tangents=(_log1p_tangent,)),
    "softplus": Primitive(_softplus, (_softplus_grad,), tangents=(_softplus_tangent,)),
    "gelu": Primitive(_gelu, (_gelu_grad,), tangents=(_gelu_tangent,)),
    "leaky_relu": Primitive(_leaky_relu, (_leaky_relu_grad,), tangents=(_leaky_relu_tangent,)),
    "elu": Primitive(_elu, (_elu_grad,), tangents=(_elu_tangent,)),
    "clip": Primitive(_clip, (_clip_grad,), tangents=(_clip_tangent,)),
    "einsum": Primitive(_einsum, (_einsum_grad,), variadic=True, tangents=(_einsum_tangent,)),
}
