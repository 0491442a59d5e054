"""Neural-network layers in the CS231n style: softmax family, conv, max-pool, vanilla RNN.

Forwards tolerate extra leading dimensions where that comes for free (the batched
finite differences of the `fd` engine); gradient rules are written for the registry's
shapes. Rules are stateless: whatever the forward pass would have cached (windows, the
previous hidden states, the probabilities) is recomputed from `out` and the arguments.
"""
from __future__ import annotations

from functools import partial

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .primitive import Primitive


# --- softmax family -----------------------------------------------------------------------

def _softmax(x, axis=-1):
    # softmax is shift invariant; subtracting the max keeps exp from overflowing
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def _log_softmax(x, axis=-1):
    # log-sum-exp on shifted scores: no overflow, and no log(0) for very negative scores
    shifted = x - np.max(x, axis=axis, keepdims=True)
    return shifted - np.log(np.sum(np.exp(shifted), axis=axis, keepdims=True))


def _softmax_grad(g, out, x, axis=-1):
    # J^T g with J = diag(p) - p p^T, without ever forming the C x C Jacobian
    return (g - np.sum(g * out, axis=axis, keepdims=True)) * out


def _log_softmax_grad(g, out, x, axis=-1):
    # d log p_i / d x_j = [i == j] - p_j; exp(out) is p without recomputing the softmax
    return g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)


def _picked(scores, labels):
    """log p[n, labels[n]] for every row n (labels broadcast over leading dims)."""
    index = np.broadcast_to(labels[:, None], scores.shape[:-1] + (1,))
    return np.take_along_axis(_log_softmax(scores), index, axis=-1)[..., 0]


def _cross_entropy(scores, labels):
    return -np.mean(_picked(scores, np.asarray(labels, dtype=np.intp)), axis=-1)


def _cross_entropy_grad(g, out, scores, labels):
    n, c = scores.shape[-2:]
    onehot = np.arange(c) == np.asarray(labels)[:, None]
    return np.asarray(g)[..., None, None] * (_softmax(scores) - onehot) / n


# --- windows: shared by conv2d and maxpool2d ----------------------------------------------

def _windows(x, kh, kw, stride, pad):
    """A strided view (..., C, OH, OW, KH, KW) of the zero-padded input: im2col without a copy."""
    x = np.pad(x, [(0, 0)] * (x.ndim - 2) + [(pad, pad)] * 2)
    return sliding_window_view(x, (kh, kw), axis=(-2, -1))[..., ::stride, ::stride, :, :]


def _col2im(dcols, shape, stride, pad):
    """Adjoint of `_windows`: add each window's gradient back where that window read x.

    One strided slice per kernel offset; inside one offset the slices never overlap, and
    overlapping windows (stride < kernel) accumulate across offsets.
    """
    oh, ow, kh, kw = dcols.shape[-4:]
    dx = np.zeros(shape[:-2] + (shape[-2] + 2 * pad, shape[-1] + 2 * pad), dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            dx[..., i:i + stride * (oh - 1) + 1:stride,
               j:j + stride * (ow - 1) + 1:stride] += dcols[..., i, j]
    return dx[..., pad:pad + shape[-2], pad:pad + shape[-1]]


# --- conv2d -------------------------------------------------------------------------------

def _conv2d(x, w, b, stride=1, pad=0):
    cols = _windows(x, w.shape[2], w.shape[3], stride, pad)          # ..., C, OH, OW, KH, KW
    out = np.tensordot(cols, w, axes=([-5, -2, -1], [1, 2, 3]))      # ..., OH, OW, F
    return np.moveaxis(out, -1, -3) + b[:, None, None]


def _conv2d_grad_x(g, out, x, w, b, stride=1, pad=0):
    dcols = np.tensordot(g, w, axes=([1], [0]))                      # N, OH, OW, C, KH, KW
    return _col2im(np.moveaxis(dcols, 3, 1), x.shape, stride, pad)


def _conv2d_grad_w(g, out, x, w, b, stride=1, pad=0):
    cols = _windows(x, w.shape[2], w.shape[3], stride, pad)
    return np.tensordot(g, cols, axes=([0, 2, 3], [0, 2, 3]))       # F, C, KH, KW


def _conv2d_grad_b(g, out, x, w, b, stride=1, pad=0):
    return np.sum(g, axis=(0, 2, 3))


# --- maxpool2d ----------------------------------------------------------------------------

def _pool_windows(x, size, stride):
    win = _windows(x, size, size, stride, 0)
    return win.reshape(win.shape[:-2] + (size * size,))              # ..., OH, OW, size*size


def _maxpool2d(x, size=2, stride=2):
    return np.max(_pool_windows(x, size, stride), axis=-1)


def _maxpool2d_grad(g, out, x, size=2, stride=2):
    # each window sends its whole gradient to one element: the first argmax, as torch does
    win = _pool_windows(x, size, stride)
    winner = np.arange(size * size) == np.argmax(win, axis=-1)[..., None]
    dcols = (g[..., None] * winner).reshape(g.shape + (size, size))
    return _col2im(dcols, x.shape, stride, 0)


# --- rnn ----------------------------------------------------------------------------------

def _rnn(x, h0, wx, wh, b):
    h, hs = h0, []
    for t in range(x.shape[-2]):
        h = np.tanh(x[..., t, :] @ wx + h @ wh + b)
        hs.append(h)
    return np.stack(hs, axis=-2)


def _rnn_bptt(g, out, x, h0, wx, wh, b):
    """Backprop through time; returns the gradients of (x, h0, wx, wh, b).

    Every h_t is in `out`, so nothing is cached. Only the dh recurrence is sequential:
    h_t reaches the loss through g[:, t] and through h_{t+1}; the rest is batched over t.
    """
    da = np.empty_like(out)                                          # grad of the tanh input
    dh = np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        da[:, t] = (g[:, t] + dh) * (1 - out[:, t] ** 2)
        dh = da[:, t] @ wh.T
    prev = np.concatenate([h0[:, None], out[:, :-1]], axis=1)         # h_{t-1} for every t
    return (da @ wx.T, dh, np.tensordot(x, da, axes=([0, 1], [0, 1])),
            np.tensordot(prev, da, axes=([0, 1], [0, 1])), np.sum(da, axis=(0, 1)))


def _rnn_pick(i, g, out, *args):
    return _rnn_bptt(g, out, *args)[i]


OPS = {
    "softmax": Primitive(_softmax, (_softmax_grad,)),
    "log_softmax": Primitive(_log_softmax, (_log_softmax_grad,)),
    "softmax_cross_entropy": Primitive(_cross_entropy, (_cross_entropy_grad, None)),
    "conv2d": Primitive(_conv2d, (_conv2d_grad_x, _conv2d_grad_w, _conv2d_grad_b)),
    "maxpool2d": Primitive(_maxpool2d, (_maxpool2d_grad,)),
    "rnn": Primitive(_rnn, tuple(partial(_rnn_pick, i) for i in range(5))),
}
