"""The jax engine's op table: jax.numpy / jax.lax ops, one entry per op of the registry."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

# float32 matmuls and convolutions on a GPU default to reduced-precision passes (TF32);
# a reference engine wants the full dtype
_EXACT = lax.Precision.HIGHEST


# Attributes arrive clean (see OpSpec.clean): axes as tuples of non-negative ints, flags
# as bools, a reshape's -1 resolved.


def _reduction(fn):
    def reduce(x, axis=(), keepdims=False):
        return fn(x, axis=axis, keepdims=keepdims)

    return reduce


def _matmul(a, b):
    return jnp.matmul(a, b, precision=_EXACT)


def _einsum(*operands, subscripts):
    return jnp.einsum(subscripts, *operands, precision=_EXACT)


def _gelu(x):
    return jax.nn.gelu(x, approximate=False)


def _take(x, indices, axis=0):
    return jnp.take(x, indices, axis=axis)


def _cross_entropy(scores, labels):
    logp = jax.nn.log_softmax(scores, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


# --- layers (attributes arrive cleaned: plain Python ints and floats) ----------------------


def _conv2d(x, w, b, stride=1, pad=0, dilation=1, groups=1):
    # padding done by jnp.pad, then a VALID convolution: XLA's CPU backend aborts compiling
    # the VJP of some stride-2 convolutions that carry their own padding (see
    # tests/test_jax_conv_crash.py); a separate pad is the same function and compiles
    x = jnp.pad(x, [(0, 0), (0, 0), (pad, pad), (pad, pad)])
    out = lax.conv_general_dilated(
        x,
        w,
        (stride, stride),
        "VALID",
        rhs_dilation=(dilation,) * 2,
        feature_group_count=groups,
        precision=_EXACT,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )
    return out + b[:, None, None]


def _pool(x, monoid, init, size, stride):
    # a concrete numpy init (-inf with max, 0 with add) is the monoid jax recognizes as
    # reduce_window_max / _sum, which have VJPs, even while tracing under jit
    return lax.reduce_window(
        x,
        np.array(init, dtype=x.dtype),
        monoid,
        (1, 1, size, size),
        (1, 1, stride, stride),
        "VALID",
    )


def _maxpool2d(x, size=2, stride=2):
    return _pool(x, lax.max, -np.inf, size, stride)


def _avgpool2d(x, size=2, stride=2):
    return _pool(x, lax.add, 0, size, stride) / (size * size)


def _normalize(x, gamma, beta, axis, eps):
    # standardizing is shift-invariant: centring first, the shift held constant, keeps the
    # autodiff of the mean from carrying |x| eps into every gradient element (pixel-like
    # inputs, mean 128: 2.4 rounding bounds off where numpy and torch are exact)
    centred = x - jax.lax.stop_gradient(jnp.mean(x, axis=axis, keepdims=True))
    xhat = jax.nn.standardize(centred, axis=axis, epsilon=eps, algorithm="stable")
    return xhat * gamma + beta


def _batchnorm(x, gamma, beta, eps=1e-5):
    if x.ndim == 2:
        return _normalize(x, gamma, beta, 0, eps)
    return _normalize(x, gamma[:, None, None], beta[:, None, None], (0, 2, 3), eps)


def _layernorm(x, gamma, beta, eps=1e-5):
    return _normalize(x, gamma, beta, -1, eps)


def _rnn(x, h0, wx, wh, b):
    def step(h, x_t):
        h = jnp.tanh(
            jnp.matmul(x_t, wx, precision=_EXACT) + jnp.matmul(h, wh, precision=_EXACT) + b
        )
        return h, h

    _, hs = lax.scan(step, h0, jnp.swapaxes(x, 0, 1))  # scan runs over axis 0: time
    return jnp.swapaxes(hs, 0, 1)


def _lstm(x, h0, c0, wx, wh, b):
    def step(state, x_t):
        h, c = state
        a = jnp.matmul(x_t, wx, precision=_EXACT) + jnp.matmul(h, wh, precision=_EXACT) + b
        i, f, o, g = jnp.split(a, 4, axis=-1)  # the registry's gate order
        c = jax.nn.sigmoid(f) * c + jax.nn.sigmoid(i) * jnp.tanh(g)
        h = jax.nn.sigmoid(o) * jnp.tanh(c)
        return (h, c), h

    _, hs = lax.scan(step, (h0, c0), jnp.swapaxes(x, 0, 1))
    return jnp.swapaxes(hs, 0, 1)


LAYER_OPS = {
    "conv2d": _conv2d,
    "maxpool2d": _maxpool2d,
    "avgpool2d": _avgpool2d,
    "batchnorm": _batchnorm,
    "layernorm": _layernorm,
    "rnn": _rnn,
    "lstm": _lstm,
}


OPS = {
    "add": jnp.add,
    "sub": jnp.subtract,
    "mul": jnp.multiply,
    "div": jnp.divide,
    "pow": jnp.power,
    "maximum": jnp.maximum,
    "minimum": jnp.minimum,
    "matmul": _matmul,
    "einsum": _einsum,
    "neg": jnp.negative,
    "exp": jnp.exp,
    "log": jnp.log,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "abs": jnp.abs,
    "sqrt": jnp.sqrt,
    "square": jnp.square,
    "sin": jnp.sin,
    "cos": jnp.cos,
    "log1p": jnp.log1p,
    "softplus": jax.nn.softplus,
    "gelu": _gelu,
    "leaky_relu": lambda x, slope=0.01: jax.nn.leaky_relu(x, negative_slope=slope),
    "elu": lambda x, alpha=1.0: jax.nn.elu(x, alpha=alpha),
    "clip": lambda x, low=None, high=None: jnp.clip(x, low, high),
    "sum": _reduction(jnp.sum),
    "mean": _reduction(jnp.mean),
    "max": _reduction(jnp.max),
    "min": _reduction(jnp.min),
    "var": _reduction(jnp.var),
    "logsumexp": lambda x, axis=-1, keepdims=False: jax.nn.logsumexp(
        x, axis=axis, keepdims=keepdims
    ),
    "transpose": lambda x, axes=(): jnp.transpose(x, axes),
    "reshape": lambda x, shape=(): jnp.reshape(x, shape),
    "index": lambda x, key=(): x[key],
    "concat": lambda *xs, axis=0: jnp.concatenate(xs, axis=axis),
    "stack": lambda *xs, axis=0: jnp.stack(xs, axis=axis),
    "expand_dims": lambda x, axis=(): jnp.expand_dims(x, axis),
    "squeeze": lambda x, axis=(): jnp.squeeze(x, axis),
    "take": _take,
    "take_along_axis": lambda x, indices, axis=0: jnp.take_along_axis(x, indices, axis=axis),
    "softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
    "log_softmax": lambda x, axis=-1: jax.nn.log_softmax(x, axis=axis),
    "softmax_cross_entropy": _cross_entropy,
    **LAYER_OPS,
}
