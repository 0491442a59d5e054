"""The torch engine's op table: torch's own ops, one entry per op of the registry."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _dims(axis, ndim):
    if axis is None:
        return tuple(range(ndim))
    return tuple(axis) if isinstance(axis, (list, tuple)) else (axis,)


def _reduction(fn):
    # bool(): torch refuses keepdim=1, which the expression language may hand over
    return lambda x, axis=None, keepdims=False: fn(x, dim=_dims(axis, x.ndim),
                                                   keepdim=bool(keepdims))


def _transpose(x, axes=None):
    return x.permute(*(reversed(range(x.ndim)) if axes is None else axes))


# --- layers (attributes arrive cleaned: plain Python ints and floats) ----------------------

def _conv2d(x, w, b, stride=1, pad=0, dilation=1, groups=1):
    return F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dilation, groups=groups)


def _maxpool2d(x, size=2, stride=2):
    return F.max_pool2d(x, size, stride)


def _avgpool2d(x, size=2, stride=2):
    return F.avg_pool2d(x, size, stride)


def _batchnorm(x, gamma, beta, eps=1e-5):
    # no running statistics: training mode normalises with the batch's own biased variance
    return F.batch_norm(x, None, None, gamma, beta, training=True, eps=eps)


def _layernorm(x, gamma, beta, eps=1e-5):
    return F.layer_norm(x, x.shape[-1:], gamma, beta, eps=eps)


def _rnn(x, h0, wx, wh, b):
    # a loop of plain torch ops, so autograd (not a fused cuDNN kernel) does the BPTT
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ wx + h @ wh + b)
        hs.append(h)
    return torch.stack(hs, dim=1)


def _torch_gate_order(a):
    """Gate blocks along the last axis from the registry's i, f, o, g to torch's i, f, g, o."""
    i, f, o, g = a.chunk(4, dim=-1)
    return torch.cat([i, f, g, o], dim=-1)


def _lstm(x, h0, c0, wx, wh, b):
    # torch's own multi-step LSTM (one layer, batch first), weights as it stores them
    params = [_torch_gate_order(wx).T, _torch_gate_order(wh).T, _torch_gate_order(b),
              torch.zeros_like(b)]
    out, _, _ = torch.lstm(x, (h0[None], c0[None]), params, True, 1, 0.0, True, False, True)
    return out


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
    "add": torch.add,
    "sub": torch.sub,
    "mul": torch.mul,
    "div": torch.div,
    "pow": torch.pow,
    "maximum": torch.maximum,
    "minimum": torch.minimum,
    "matmul": torch.matmul,
    "neg": torch.neg,
    "exp": torch.exp,
    "log": torch.log,
    "tanh": torch.tanh,
    "sigmoid": torch.sigmoid,
    "relu": F.relu,
    "abs": torch.abs,
    "sum": _reduction(torch.sum),
    "mean": _reduction(torch.mean),
    "max": _reduction(torch.amax),
    "transpose": _transpose,
    "reshape": lambda x, shape=None: torch.reshape(x, tuple(shape)),
    "softmax": lambda x, axis=-1: F.softmax(x, dim=axis),
    "log_softmax": lambda x, axis=-1: F.log_softmax(x, dim=axis),
    "softmax_cross_entropy": lambda scores, labels: F.cross_entropy(scores, labels.long()),
    **LAYER_OPS,
}
