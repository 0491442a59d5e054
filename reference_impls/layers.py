"""Layers of the second vocabulary, CS231n-style: average pooling, batch and layer norm, LSTM.

As in `nn.py`, rules recompute what a forward pass would cache (the normalised input) from
the arguments, except where that costs the forward's products again: the LSTM's forward
keeps its gates and cell states for the backward (`SAVED`), which recomputes them for an
output it did not make. The rules of the norms and of
the LSTM are parts of one pass (`joint_rules`: the norms' three gradients read one
normalised input; the LSTM's backprop through time), run once per node for all its inputs;
so are their tangent rules (`joint_tangents`: the LSTM's tangent runs forward through time
once).
"""

from __future__ import annotations

import numpy as np

from .nn import _pool_geometry, _window_offsets
from .primitive import SAVED, Primitive, joint_rules, joint_tangents, linear, zeros_for_missing

# --- avgpool2d ----------------------------------------------------------------------------


def _avgpool2d(x, size=2, stride=2):
    oh, ow = _pool_geometry(x, size, stride)
    return sum(x[w] for w in _window_offsets(size, oh, ow, stride)) / (size * size)


def _avgpool2d_grad(g, out, x, size=2, stride=2):
    # every element of a window gets an equal share of that window's gradient
    oh, ow = _pool_geometry(x, size, stride)
    dx, share = np.zeros_like(x), g / (size * size)
    for window in _window_offsets(size, oh, ow, stride):
        dx[window] += share
    return dx


# --- batchnorm and layernorm --------------------------------------------------------------
# Both standardise x over some axes with the biased variance, then scale and shift per
# feature: y = xhat * gamma + beta. They differ only in the axes and in where gamma sits.


def _batch_axes(x):
    """Batch norm of N x D averages over N; of N x C x H x W over N, H and W (C stays).

    Counted from the end, so one extra leading axis (stacked perturbed inputs) is a batch."""
    return (-2,) if x.ndim < 4 else (-4, -2, -1)


def _channel(p, x):
    """gamma or beta shaped to broadcast against x's feature axis."""
    return p if x.ndim < 4 else p[:, None, None]


def _standardize(x, axes, eps):
    mu = np.mean(x, axis=axes, keepdims=True)
    inv_std = 1 / np.sqrt(np.var(x, axis=axes, keepdims=True) + eps)
    return (x - mu) * inv_std, inv_std


def _standardize_grad(dxhat, xhat, inv_std, axes):
    """CS231n's compact batch-norm backward: x reaches xhat directly, through the mean and
    through the variance; with m the count averaged over,
    dx = inv_std / m * (m dxhat - sum(dxhat) - xhat * sum(dxhat * xhat)).

    The Jacobian inv_std / m (m I - 1 1^T - xhat xhat^T) is symmetric: the same product
    takes x's tangent to xhat's (d mean = mean(t), d inv_std = -inv_std^2 mean(xhat t))."""
    m = np.prod([xhat.shape[a] for a in axes])
    total = np.sum(dxhat, axis=axes, keepdims=True)
    along = np.sum(dxhat * xhat, axis=axes, keepdims=True)
    return inv_std / m * (m * dxhat - total - xhat * along)


def _batchnorm(x, gamma, beta, eps=1e-5):
    xhat, _ = _standardize(x, _batch_axes(x), eps)
    return xhat * _channel(gamma, x) + _channel(beta, x)


def _batchnorm_backward(g, out, x, gamma, beta, eps=1e-5):
    """Gradients of (x, gamma, beta) in one pass: all three read the same xhat."""
    axes = _batch_axes(x)
    xhat, inv_std = _standardize(x, axes, eps)
    dx = _standardize_grad(g * _channel(gamma, x), xhat, inv_std, axes)
    return dx, np.sum(g * xhat, axis=axes), np.sum(g, axis=axes)


def _batchnorm_tangent(ts, out, x, gamma, beta, eps=1e-5):
    """y = xhat gamma + beta: dy = dxhat gamma + xhat dgamma + dbeta, in one pass."""
    tx, tgamma, tbeta = zeros_for_missing(ts, (x, gamma, beta))
    axes = _batch_axes(x)
    xhat, inv_std = _standardize(x, axes, eps)
    dxhat = _standardize_grad(tx, xhat, inv_std, axes)
    return dxhat * _channel(gamma, x) + xhat * _channel(tgamma, x) + _channel(tbeta, x)


def _layernorm(x, gamma, beta, eps=1e-5):
    return _standardize(x, (-1,), eps)[0] * gamma + beta


def _layernorm_backward(g, out, x, gamma, beta, eps=1e-5):
    """Gradients of (x, gamma, beta) in one pass; unbroadcast sums gamma's and beta's
    leading axes."""
    xhat, inv_std = _standardize(x, (-1,), eps)
    return _standardize_grad(g * gamma, xhat, inv_std, (-1,)), g * xhat, g


def _layernorm_tangent(ts, out, x, gamma, beta, eps=1e-5):
    """y = xhat gamma + beta: dy = dxhat gamma + xhat dgamma + dbeta, in one pass."""
    tx, tgamma, tbeta = zeros_for_missing(ts, (x, gamma, beta))
    xhat, inv_std = _standardize(x, (-1,), eps)
    return _standardize_grad(tx, xhat, inv_std, (-1,)) * gamma + xhat * tgamma + tbeta


# --- lstm ---------------------------------------------------------------------------------


def _sigmoid(a):
    # exp overflows to inf for a < -709, and 1 / inf is the right limit; unlike the tanh
    # form, nothing cancels for very negative a
    with np.errstate(over="ignore"):
        e = np.exp(-a)
    e += 1
    return np.reciprocal(e, out=e)


def _lstm(x, h0, c0, wx, wh, b):
    """Keeps, for the backward, the gates (i, f, o, g after their nonlinearities), the cell
    states and their tanh, time-major: recomputing them costs the forward's products again."""
    hdim = h0.shape[-1]
    xw = x @ wx + b  # the input's share of every step at once
    h, c, hs, steps = h0, c0, [], []
    for t in range(x.shape[-2]):
        gates = xw[..., t, :] + h @ wh
        gates[..., : 3 * hdim] = _sigmoid(gates[..., : 3 * hdim])
        np.tanh(gates[..., 3 * hdim :], out=gates[..., 3 * hdim :])
        i, f, o, g = _gate_blocks(gates)
        c = f * c + i * g
        tanh_c = np.tanh(c)
        h = o * tanh_c
        hs.append(h)
        steps.append((gates, c, tanh_c))
    out = np.stack(hs, axis=-2)
    if out.ndim != 3:  # stacked inputs (fd's batches): no backward reads these
        return out
    kept = tuple(np.stack(part) for part in zip(*steps))  # gates, cells, tanh(cells)
    return SAVED.keep(out, kept, (x, h0, c0, wx, wh, b), ())


def _lstm_recompute(prev_h, x, c0, wx, wh, b):
    """What the forward keeps (`_lstm`), for an `out` it did not make. Every h_{t-1} is in
    `out`, so the pre-activations of all steps are one matrix product; only c's recurrence
    is a loop."""
    hdim = prev_h.shape[-1]
    gates = np.moveaxis(x, 1, 0) @ wx + prev_h @ wh + b
    gates[..., : 3 * hdim] = _sigmoid(gates[..., : 3 * hdim])
    np.tanh(gates[..., 3 * hdim :], out=gates[..., 3 * hdim :])
    i, f, _, g = _gate_blocks(gates)
    cells, c = np.empty_like(prev_h), c0
    ig = i * g
    for t in range(len(cells)):
        c = cells[t] = f[t] * c + ig[t]
    return gates, cells, np.tanh(cells)


def _gate_blocks(a):
    hdim = a.shape[-1] // 4
    return tuple(a[..., k * hdim : (k + 1) * hdim] for k in range(4))


def _lstm_local_derivatives(gates, cells, tanh_cells, c0):
    """Per step, what the pre-activations a = (a_i, a_f, a_o, a_g) contribute, as factors of
    dc (for i, f, g) or dh (for o), and dh's path into c: everything except the
    (dh, dc) recurrence, computed for every step at once."""
    i, f, o, g = _gate_blocks(gates)
    prev_c = np.concatenate([c0[None], cells[:-1]])
    factors = np.empty_like(gates)
    blocks = _gate_blocks(factors)
    for block, gate, times in zip(blocks, (i, f, o), (g, prev_c, tanh_cells)):
        np.multiply(gate, 1 - gate, out=block)  # sigmoid' = s (1 - s)
        block *= times
    np.multiply(i, 1 - g * g, out=blocks[3])
    return factors, o * (1 - tanh_cells * tanh_cells), f


def _lstm_steps(out, x, h0, c0, wx, wh, b):
    """What the backward and the tangent read, time-major: every h_{t-1}, and the local
    derivatives of every step (`_lstm_local_derivatives`), from what the forward kept."""
    prev_h = np.concatenate([h0[None], np.moveaxis(out, 1, 0)[:-1]])
    gates, cells, tanh_cells = SAVED.find(out, (x, h0, c0, wx, wh, b), ()) or _lstm_recompute(
        prev_h, x, c0, wx, wh, b
    )
    return (prev_h, *_lstm_local_derivatives(gates, cells, tanh_cells, c0))


def _lstm_bptt(dout, out, x, h0, c0, wx, wh, b):
    """Backprop through time (CS231n's lstm_step_backward in a loop); returns the gradients
    of (x, h0, c0, wx, wh, b). Only the (dh, dc) recurrence is sequential; the weight and
    input gradients are one matrix product each over every step."""
    prev_h, factors, dc_dh, forget = _lstm_steps(out, x, h0, c0, wx, wh, b)
    n, hdim = h0.shape
    da = np.empty_like(factors)  # gradient of the pre-activations
    dh, dc = np.zeros_like(h0), np.zeros_like(c0)
    for t in reversed(range(x.shape[1])):
        dh += dout[:, t]
        dc += dh * dc_dh[t]  # h = o * tanh(c)
        blocks = da[t].reshape(n, 4, hdim)
        np.multiply(factors[t].reshape(n, 4, hdim), dc[:, None], out=blocks)
        blocks[:, 2] = factors[t, :, 2 * hdim : 3 * hdim] * dh  # o acts on h, not on c
        dh, dc = da[t] @ wh.T, dc * forget[t]
    flat = da.reshape(-1, 4 * hdim)
    return (
        np.moveaxis(da, 0, 1) @ wx.T,
        dh,
        dc,
        np.moveaxis(x, 1, 0).reshape(-1, x.shape[-1]).T @ flat,
        prev_h.reshape(-1, hdim).T @ flat,
        np.sum(flat, axis=0),
    )


def _lstm_tangent(ts, out, x, h0, c0, wx, wh, b):
    """The (dh, dc) recurrence forward through time, one pass for every input's tangent.
    The pre-activations move by da_t = dx_t wx + x_t dwx + h_{t-1} dwh + db (every step at
    once) + dh_{t-1} wh; then dc_t = f dc_{t-1} + (i, f, g's factors) da and
    dh_t = (o's factor) da + o (1 - tanh^2 c_t) dc_t."""
    tx, th0, tc0, twx, twh, tb = zeros_for_missing(ts, (x, h0, c0, wx, wh, b))
    prev_h, factors, dc_dh, forget = _lstm_steps(out, x, h0, c0, wx, wh, b)
    drive = np.moveaxis(tx, 1, 0) @ wx + np.moveaxis(x, 1, 0) @ twx + prev_h @ twh + tb
    dh, dc, dout = th0, tc0, np.empty_like(drive[..., : h0.shape[-1]])
    for t in range(len(drive)):
        di, df, do, dg = _gate_blocks(factors[t] * (drive[t] + dh @ wh))
        dc = forget[t] * dc + di + df + dg
        dh = dout[t] = do + dc_dh[t] * dc
    return np.moveaxis(dout, 0, 1)


OPS = {
    "avgpool2d": Primitive(_avgpool2d, (_avgpool2d_grad,), tangents=(linear(_avgpool2d),)),
    "batchnorm": Primitive(
        _batchnorm,
        joint_rules(_batchnorm_backward, 3),
        tangents=joint_tangents(_batchnorm_tangent, 3),
    ),
    "layernorm": Primitive(
        _layernorm,
        joint_rules(_layernorm_backward, 3),
        tangents=joint_tangents(_layernorm_tangent, 3),
    ),
    "lstm": Primitive(_lstm, joint_rules(_lstm_bptt, 6), tangents=joint_tangents(_lstm_tangent, 6)),
}
