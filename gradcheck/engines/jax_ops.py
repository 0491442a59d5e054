"""The jax engine's op table: jax.numpy / jax.lax ops, one entry per op of the registry."""
from __future__ import annotations

import jax
import numpy as np
import jax.numpy as jnp
from jax import lax

# float32 matmuls and convolutions on a GPU default to reduced-precision passes (TF32);
# a reference engine wants the full dtype
_EXACT = lax.Precision.HIGHEST


def _axes(axis):
    return tuple(axis) if isinstance(axis, list) else axis


def _reduction(fn):
    return lambda x, axis=None, keepdims=False: fn(x, axis=_axes(axis), keepdims=keepdims)


def _cross_entropy(scores, labels):
    logp = jax.nn.log_softmax(scores, axis=-1)
    return -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))


def _conv2d(x, w, b, stride=1, pad=0):
    stride, pad = int(stride), int(pad)
    out = lax.conv_general_dilated(x, w, (stride, stride), [(pad, pad), (pad, pad)],
                                   dimension_numbers=("NCHW", "OIHW", "NCHW"), precision=_EXACT)
    return out + b[:, None, None]


def _maxpool2d(x, size=2, stride=2):
    # -inf with lax.max is the monoid jax recognizes as reduce_window_max, which has a VJP;
    # a concrete numpy scalar, so that it is still recognized while tracing under jit
    init = np.array(-np.inf, dtype=x.dtype)
    size, stride = int(size), int(stride)
    return lax.reduce_window(x, init, lax.max, (1, 1, size, size), (1, 1, stride, stride), "VALID")


def _rnn(x, h0, wx, wh, b):
    def step(h, x_t):
        h = jnp.tanh(jnp.matmul(x_t, wx, precision=_EXACT)
                     + jnp.matmul(h, wh, precision=_EXACT) + b)
        return h, h
    _, hs = lax.scan(step, h0, jnp.swapaxes(x, 0, 1))              # scan runs over axis 0: time
    return jnp.swapaxes(hs, 0, 1)


OPS = {
    "add": jnp.add,
    "sub": jnp.subtract,
    "mul": jnp.multiply,
    "div": jnp.divide,
    "pow": jnp.power,
    "maximum": jnp.maximum,
    "minimum": jnp.minimum,
    "matmul": jnp.matmul,
    "neg": jnp.negative,
    "exp": jnp.exp,
    "log": jnp.log,
    "tanh": jnp.tanh,
    "sigmoid": jax.nn.sigmoid,
    "relu": jax.nn.relu,
    "abs": jnp.abs,
    "sum": _reduction(jnp.sum),
    "mean": _reduction(jnp.mean),
    "max": _reduction(jnp.max),
    "transpose": lambda x, axes=None: jnp.transpose(x, axes),
    "reshape": lambda x, shape=None: jnp.reshape(x, tuple(shape)),
    "softmax": lambda x, axis=-1: jax.nn.softmax(x, axis=axis),
    "log_softmax": lambda x, axis=-1: jax.nn.log_softmax(x, axis=axis),
    "softmax_cross_entropy": _cross_entropy,
    "conv2d": _conv2d,
    "maxpool2d": _maxpool2d,
    "rnn": _rnn,
}
