"""Neural-network layers in the CS231n style: softmax family, conv, max-pool, vanilla RNN.

Forwards tolerate extra leading dimensions where that comes for free (the batched
finite differences of the `fd` engine); gradient and tangent rules are written for the
registry's shapes. Rules recompute whatever the forward pass would have cached (windows,
the previous hidden states, the probabilities) from `out` and the arguments; conv2d's
forward alone keeps its im2col matrix for the backward and the tangent (`SAVED`: a copy of
the image the size of its taps), which rebuild it for an output the forward did not make.
"""

from __future__ import annotations

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .primitive import SAVED, Primitive, joint_rules, joint_tangents, zeros_for_missing

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


def _softmax_tangent(t, out, x, axis=-1):
    # d p_i = p_i (t_i - sum_j p_j t_j): the shift is the tangent's mean under p
    return out * (t - np.sum(out * t, axis=axis, keepdims=True))


def _log_softmax_grad(g, out, x, axis=-1):
    # d log p_i / d x_j = [i == j] - p_j; exp(out) is p without recomputing the softmax
    return g - np.exp(out) * np.sum(g, axis=axis, keepdims=True)


def _log_softmax_tangent(t, out, x, axis=-1):
    # d log p_i = t_i - sum_j p_j t_j, p = exp(out)
    return t - np.sum(np.exp(out) * t, axis=axis, keepdims=True)


def _picked(scores, labels):
    """log p[n, labels[n]] for every row n (labels broadcast over leading dims)."""
    return _at_labels(_log_softmax(scores), labels)


def _at_labels(a, labels):
    """a[n, labels[n]] for every row n (labels broadcast over leading dims)."""
    index = np.broadcast_to(labels[:, None], a.shape[:-1] + (1,))
    return np.take_along_axis(a, index, axis=-1)[..., 0]


def _cross_entropy(scores, labels):
    return -np.mean(_picked(scores, np.asarray(labels, dtype=np.intp)), axis=-1)


def _cross_entropy_grad(g, out, scores, labels):
    n, c = scores.shape[-2:]
    onehot = np.arange(c) == np.asarray(labels)[:, None]
    return np.asarray(g)[..., None, None] * (_softmax(scores) - onehot) / n


def _cross_entropy_tangent(t, out, scores, labels):
    # -d log p[n, y_n] = sum_c p_c t_c - t[n, y_n], averaged over the rows n
    labels = np.asarray(labels, dtype=np.intp)
    moved = np.sum(_softmax(scores) * t, axis=-1) - _at_labels(t, labels)
    return np.mean(moved, axis=-1)


# --- window offsets: shared by max- and average-pooling ------------------------------------


def _window_offsets(size, oh, ow, stride):
    """For each offset (i, j) inside a window: the strided slice of x it reads in every window.

    One slice per offset, never one per window; inside one offset the windows' reads never
    overlap, so `dx[slice] += ...` scatters a gradient with no collision, and overlapping
    windows (stride < size) add up across offsets.
    """
    for i in range(size):
        for j in range(size):
            yield (
                ...,
                slice(i, i + stride * (oh - 1) + 1, stride),
                slice(j, j + stride * (ow - 1) + 1, stride),
            )


# --- conv2d -------------------------------------------------------------------------------
# Both passes lay the zero-padded image out channels first (C, N, H, W, one block per group).
# Window (h, w)'s kernel tap (i, j) is then pixel (stride h + dilation i, stride w +
# dilation j), so all windows together are one strided view of the image whose last axis
# runs along an image row: the forward copies it once into the transposed im2col matrix
# (one row per channel and tap, one column per output position) and multiplies the filters
# by it; the backward's dw is one product of g with that matrix, and the matrix's own
# gradient goes back to the image tap by tap, a strided slice each (inside one tap no two
# windows read the same pixel, so `+=` scatters with no collision). The tangent is the
# forward's product twice: the filters times the tangent's matrix, the filters' tangent
# times the image's.


def _conv2d(x, w, b, stride=1, pad=0, dilation=1, groups=1):
    out_hw = _conv_out_hw(x, w, stride, pad, dilation)
    cols = _im2col(x, w, out_hw, stride, pad, dilation, groups)
    out = _correlate(cols, w, x.shape[:-3], out_hw, groups) + b[:, None, None]
    if out.ndim != 4:  # stacked images (fd's batches): no backward reads the matrix
        return out
    return SAVED.keep(out, cols, (x, w), (stride, pad, dilation, groups))  # (N, F, OH, OW)


def _conv2d_backward(g, out, x, w, b, stride=1, pad=0, dilation=1, groups=1):
    """Gradients of (x, w, b) in one pass, through the forward's im2col matrix."""
    f, out_hw = w.shape[0], g.shape[-2:]
    cols = _kept_cols(out, x, w, stride, pad, dilation, groups)  # (G, Cg KH KW, windows)
    gg = g.reshape((-1, f) + out_hw).swapaxes(0, 1).reshape(groups, f // groups, -1)
    dcols = _filters(w, groups).swapaxes(1, 2) @ gg
    dw = gg @ cols.swapaxes(1, 2)  # (G, F / G, Cg KH KW)
    return (
        _col2im(dcols, x, w, out_hw, stride, pad, dilation, groups),
        dw.reshape(w.shape),
        np.sum(g, axis=(0, 2, 3)),
    )


def _conv2d_tangent(ts, out, x, w, b, stride=1, pad=0, dilation=1, groups=1):
    """conv2d is linear in x, linear in w and shifted by b: the output's tangent is
    conv(t_x, w) + conv(x, t_w) + t_b, the image's matrix the one the forward kept."""
    tx, tw, tb = zeros_for_missing(ts, (x, w, b))
    out_hw = out.shape[-2:]
    tcols = _im2col(tx, w, out_hw, stride, pad, dilation, groups)
    cols = _kept_cols(out, x, w, stride, pad, dilation, groups)
    moved = _correlate(tcols, w, x.shape[:-3], out_hw, groups)
    return moved + _correlate(cols, tw, x.shape[:-3], out_hw, groups) + tb[:, None, None]


def _correlate(cols, w, batch, out_hw, groups):
    """The filters times an im2col matrix, laid out as the output: (..., F, OH, OW)."""
    out = (_filters(w, groups) @ cols).reshape((w.shape[0], -1) + tuple(out_hw))
    return out.swapaxes(0, 1).reshape(tuple(batch) + (w.shape[0],) + tuple(out_hw))


def _kept_cols(out, x, w, stride, pad, dilation, groups):
    """The im2col matrix of x that the forward kept with `out`, or it again."""
    cols = SAVED.find(out, (x, w), (stride, pad, dilation, groups))
    if cols is None:
        cols = _im2col(x, w, out.shape[-2:], stride, pad, dilation, groups)
    return cols


def _filters(w, groups):
    """w (F, Cg, KH, KW) -> (G, F / G, Cg KH KW): each group's filters, one per row."""
    return w.reshape(groups, w.shape[0] // groups, -1)


def _padded(x, pad, groups):
    """(G, Cg, N, H + 2 pad, W + 2 pad): the zero-padded image, channels first."""
    n, (c, h, wd) = int(np.prod(x.shape[:-3], dtype=np.int64)), x.shape[-3:]
    image = np.zeros_like(x, shape=(c, n, h + 2 * pad, wd + 2 * pad))
    image[:, :, pad : pad + h, pad : pad + wd] = x.reshape(n, c, h, wd).swapaxes(0, 1)
    return image.reshape(groups, c // groups, n, h + 2 * pad, wd + 2 * pad)


def _windows(image, taps_hw, out_hw, stride, dilation):
    """(G, Cg, KH, KW, N, OH, OW): every window of the padded image, a strided view."""
    s = image.strides
    return as_strided(
        image,
        image.shape[:2] + tuple(taps_hw) + image.shape[2:3] + tuple(out_hw),
        (s[0], s[1], dilation * s[3], dilation * s[4], s[2], stride * s[3], stride * s[4]),
        subok=True,
        writeable=False,
    )


def _im2col(x, w, out_hw, stride, pad, dilation, groups):
    """(G, Cg KH KW, windows): the windows' pixels, by channel, then tap (i, j)."""
    windows = _windows(_padded(x, pad, groups), w.shape[2:], out_hw, stride, dilation)
    return windows.reshape(groups, int(np.prod(windows.shape[1:4])), -1)


def _col2im(dcols, x, w, out_hw, stride, pad, dilation, groups):
    """The gradient of the image from that of its im2col matrix: tap by tap, a strided
    slice of the padded image each."""
    (c, h, wd), (kh, kw), (oh, ow) = x.shape[-3:], w.shape[2:], out_hw
    image = np.zeros(
        (
            groups,
            c // groups,
            int(np.prod(x.shape[:-3], dtype=np.int64)),
            h + 2 * pad,
            wd + 2 * pad,
        ),
        dcols.dtype,
    )
    taps = dcols.reshape(image.shape[:2] + (kh, kw) + image.shape[2:3] + tuple(out_hw))
    for i in range(kh):
        for j in range(kw):
            rows = slice(i * dilation, i * dilation + stride * (oh - 1) + 1, stride)
            cols = slice(j * dilation, j * dilation + stride * (ow - 1) + 1, stride)
            image[..., rows, cols] += taps[:, :, i, j]
    dx = image[..., pad : pad + h, pad : pad + wd].reshape((c,) + image.shape[2:3] + (h, wd))
    return dx.swapaxes(0, 1).reshape(x.shape)


def _conv_out_hw(x, w, stride, pad, dilation):
    return tuple(
        (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1
        for size, k in zip(x.shape[-2:], w.shape[2:])
    )


# --- maxpool2d ----------------------------------------------------------------------------


def _pool_geometry(x, size, stride):
    return (x.shape[-2] - size) // stride + 1, (x.shape[-1] - size) // stride + 1


def _maxpool2d(x, size=2, stride=2):
    oh, ow = _pool_geometry(x, size, stride)
    first, *rest = _window_offsets(size, oh, ow, stride)
    out = x[first].copy()
    for window in rest:
        np.maximum(out, x[window], out=out)
    return out


def _maxpool2d_grad(g, out, x, size=2, stride=2):
    # each window sends its whole gradient to one element, its winner
    dx, share = np.zeros_like(x), np.empty_like(out)  # share: reused by every tap
    for window, wins in _winners(out, x, size, stride):
        dx[window] += np.multiply(g, wins, out=share)
    return dx


def _maxpool2d_tangent(t, out, x, size=2, stride=2):
    # each window's maximum moves with its winner's tangent
    dout = np.zeros_like(t, shape=out.shape)
    for window, wins in _winners(out, x, size, stride):
        dout = np.where(wins, t[window], dout)
    return dout


def _winners(out, x, size, stride):
    """For each offset inside a window: its slice of x, and the windows whose winner sits
    there: the first argmax in row-major order, as torch and jax route gradients and
    tangents. `free` marks the windows whose winner is still unknown; the mask is one
    array, overwritten at the next offset."""
    oh, ow = _pool_geometry(x, size, stride)
    free = np.ones(out.shape, bool)
    wins = np.empty_like(free)
    for window in _window_offsets(size, oh, ow, stride):
        np.equal(x[window], out, out=wins)
        wins &= free
        free ^= wins
        yield window, wins


# --- rnn ----------------------------------------------------------------------------------


def _rnn(x, h0, wx, wh, b):
    xw = x @ wx + b  # the input's share of every step at once
    h, hs = h0, []
    for t in range(x.shape[-2]):
        h = np.tanh(xw[..., t, :] + h @ wh)
        hs.append(h)
    return np.stack(hs, axis=-2)


def _rnn_bptt(g, out, x, h0, wx, wh, b):
    """Backprop through time; returns the gradients of (x, h0, wx, wh, b).

    Every h_t is in `out`, so nothing is cached. Only the dh recurrence is sequential:
    h_t reaches the loss through g[:, t] and through h_{t+1}; the rest is batched over t.
    """
    da = np.empty_like(out)  # grad of the tanh input
    dh = np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        da[:, t] = (g[:, t] + dh) * (1 - out[:, t] ** 2)
        dh = da[:, t] @ wh.T
    prev = _previous(h0, out)
    return (
        da @ wx.T,
        dh,
        _flat(x).T @ _flat(da),
        _flat(prev).T @ _flat(da),
        np.sum(da, axis=(0, 1)),
    )


def _rnn_tangent(ts, out, x, h0, wx, wh, b):
    """The recurrence's tangent forward through time, one pass for every input's tangent:
    dh_t = (1 - h_t^2) (dx_t wx + x_t dwx + db + dh_{t-1} wh + h_{t-1} dwh), dh_{-1} = dh0.
    Only the dh recurrence is sequential; the rest is batched over t."""
    tx, th0, twx, twh, tb = zeros_for_missing(ts, (x, h0, wx, wh, b))
    drive = tx @ wx + x @ twx + _previous(h0, out) @ twh + tb
    slope = 1 - out * out
    dh, dout = th0, np.empty_like(drive)
    for t in range(x.shape[1]):
        dh = dout[:, t] = slope[:, t] * (drive[:, t] + dh @ wh)
    return dout


def _previous(h0, out):
    """h_{t-1} for every step t: N x T x H."""
    return np.concatenate([h0[:, None], out[:, :-1]], axis=1)


def _flat(a):
    """N x T x K -> NT x K: a sum over batch and time as one matrix product."""
    return a.reshape(-1, a.shape[-1])


OPS = {
    "softmax": Primitive(_softmax, (_softmax_grad,), tangents=(_softmax_tangent,)),
    "log_softmax": Primitive(_log_softmax, (_log_softmax_grad,), tangents=(_log_softmax_tangent,)),
    "softmax_cross_entropy": Primitive(
        _cross_entropy, (_cross_entropy_grad, None), tangents=(_cross_entropy_tangent, None)
    ),
    "conv2d": Primitive(
        _conv2d, joint_rules(_conv2d_backward, 3), tangents=joint_tangents(_conv2d_tangent, 3)
    ),
    "maxpool2d": Primitive(_maxpool2d, (_maxpool2d_grad,), tangents=(_maxpool2d_tangent,)),
    "rnn": Primitive(_rnn, joint_rules(_rnn_bptt, 5), tangents=joint_tangents(_rnn_tangent, 5)),
}
