"""CS231n-style layers as a student writes them: `forward -> (out, cache)`,
`backward(dout, cache) -> gradients`, each with a correct backward and one realistic bug.

The bugs are the classic ones: batch norm's variance path dropped, the stride forgotten
in conv's dw, max-pool's gradient routed to the window's first element, tanh' forgotten on
the way to the previous h, and a loss not divided by N.
"""

from __future__ import annotations

import numpy as np

# --- affine -------------------------------------------------------------------------------


def affine_forward(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b
    return out, (x, w, b)


def affine_backward(dout, cache):
    x, w, _b = cache
    dx = (dout @ w.T).reshape(x.shape)
    dw = x.reshape(x.shape[0], -1).T @ dout
    return dx, dw, dout.sum(axis=0)


def affine_backward_db_mean(dout, cache):
    dx, dw, _ = affine_backward(dout, cache)
    return dx, dw, dout.mean(axis=0)  # bug: the bias gradient averaged


def affine_forward_minus_b(x, w, b):
    out, _cache = affine_forward(x, w, -b)  # bug: a sign in the forward pass
    return out, (x, w, b)


def affine_backward_minus_b(dout, cache):
    dx, dw, db = affine_backward(dout, cache)
    return dx, dw, -db  # consistent with its own forward


# --- relu: the CS231n backward writes into dout -------------------------------------------


def relu_forward(x):
    return np.maximum(x, 0), x


def relu_backward(dout, cache):
    dout[cache <= 0] = 0  # in place, as in the assignment
    cache *= 0  # and it scribbles over its cache
    return dout


# --- batch norm (training mode) -----------------------------------------------------------

EPS = 1e-5


def batchnorm_forward(x, gamma, beta):
    mu = x.mean(axis=0)
    var = x.var(axis=0)
    inv_std = 1.0 / np.sqrt(var + EPS)
    xhat = (x - mu) * inv_std
    return gamma * xhat + beta, (xhat, gamma, inv_std)


def batchnorm_backward(dout, cache):
    xhat, gamma, inv_std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = inv_std / n * (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0))
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def batchnorm_backward_no_var(dout, cache):
    xhat, gamma, inv_std = cache
    dxhat = dout * gamma
    dx = inv_std * (dxhat - dxhat.mean(axis=0))  # bug: the path through var dropped
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


BATCHNORM_REFERENCE = (
    "(x - mean(x, axis=0)) / (mean((x - mean(x, axis=0)) ** 2, axis=0)"
    " + 1e-5) ** 0.5 * gamma + beta"
)


# --- naive convolution with stride and padding ----------------------------------------------


def conv_forward_naive(x, w, b, conv_param):
    stride, pad = conv_param["stride"], conv_param["pad"]
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    f, _, kh, kw = w.shape
    oh = (xp.shape[2] - kh) // stride + 1
    ow = (xp.shape[3] - kw) // stride + 1
    out = np.zeros((x.shape[0], f, oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            window = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.einsum("nchw,fchw->nf", window, w) + b
    return out, (x, w, b, conv_param)


def conv_backward_naive(dout, cache, dw_stride=None):
    x, w, _b, conv_param = cache
    stride, pad = conv_param["stride"], conv_param["pad"]
    dw_stride = stride if dw_stride is None else dw_stride
    xp = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dxp, dw = np.zeros_like(xp), np.zeros_like(w)
    kh, kw = w.shape[2:]
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            g = dout[:, :, i, j]
            dxp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw] += np.einsum(
                "nf,fchw->nchw", g, w
            )
            window = xp[
                :, :, i * dw_stride : i * dw_stride + kh, j * dw_stride : j * dw_stride + kw
            ]
            dw += np.einsum("nf,nchw->fchw", g, window)
    dx = dxp[:, :, pad : pad + x.shape[2], pad : pad + x.shape[3]]
    return dx, dw, dout.sum(axis=(0, 2, 3))


def conv_backward_no_stride_in_dw(dout, cache):
    return conv_backward_naive(dout, cache, dw_stride=1)  # bug: stride forgotten in dw


# --- max-pool -------------------------------------------------------------------------------


def max_pool_forward_naive(x, pool_param):
    size, stride = pool_param["size"], pool_param["stride"]
    oh = (x.shape[2] - size) // stride + 1
    ow = (x.shape[3] - size) // stride + 1
    out = np.zeros(x.shape[:2] + (oh, ow), dtype=x.dtype)
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[
                :, :, i * stride : i * stride + size, j * stride : j * stride + size
            ].max(axis=(2, 3))
    return out, (x, pool_param)


def max_pool_backward_naive(dout, cache, first=False):
    x, pool_param = cache
    size, stride = pool_param["size"], pool_param["stride"]
    dx = np.zeros_like(x)
    for i in range(dout.shape[2]):
        for j in range(dout.shape[3]):
            window = x[:, :, i * stride : i * stride + size, j * stride : j * stride + size]
            if first:  # bug: to the window's first element
                mask = np.zeros_like(window)
                mask[:, :, 0, 0] = 1
            else:
                mask = window == window.max(axis=(2, 3), keepdims=True)
            dx[:, :, i * stride : i * stride + size, j * stride : j * stride + size] += (
                mask * dout[:, :, i, j][:, :, None, None]
            )
    return (dx,)


def max_pool_backward_first(dout, cache):
    return max_pool_backward_naive(dout, cache, first=True)


# --- one RNN step -------------------------------------------------------------------------


def rnn_step_forward(x, prev_h, wx, wh, b):
    next_h = np.tanh(x @ wx + prev_h @ wh + b)
    return next_h, (x, prev_h, wx, wh, next_h)


def rnn_step_backward(dnext_h, cache, tanh_grad_to_h=True):
    x, prev_h, wx, wh, next_h = cache
    da = dnext_h * (1 - next_h**2)
    dprev_h = (da if tanh_grad_to_h else dnext_h) @ wh.T  # the bug skips tanh' here
    return da @ wx.T, dprev_h, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def rnn_step_backward_no_tanh_to_h(dnext_h, cache):
    return rnn_step_backward(dnext_h, cache, tanh_grad_to_h=False)


# --- softmax loss: value and gradient together ------------------------------------------------


def softmax_loss(x, y, divide_loss_by_n=True):
    shifted = x - x.max(axis=1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
    n = x.shape[0]
    loss = -log_probs[np.arange(n), y].sum() / (n if divide_loss_by_n else 1)
    dx = np.exp(log_probs)
    dx[np.arange(n), y] -= 1
    return loss, dx / n


def softmax_loss_not_divided(x, y):
    return softmax_loss(x, y, divide_loss_by_n=False)  # bug: the loss is a sum, not a mean


def svm_loss(x, y):
    """Multiclass hinge loss, value and gradient together, as the assignment returns them."""
    n = x.shape[0]
    margins = np.maximum(0, x - x[np.arange(n), y][:, None] + 1.0)
    margins[np.arange(n), y] = 0
    positive = (margins > 0).astype(x.dtype)
    dx = positive.copy()
    dx[np.arange(n), y] -= positive.sum(axis=1)
    return margins.sum() / n, {"x": dx / n}
