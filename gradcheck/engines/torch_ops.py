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


def _conv2d(x, w, b, stride=1, pad=0):
    return F.conv2d(x, w, b, stride=int(stride), padding=int(pad))


def _maxpool2d(x, size=2, stride=2):
    return F.max_pool2d(x, int(size), int(stride))


def _rnn(x, h0, wx, wh, b):
    # a loop of plain torch ops, so autograd (not a fused cuDNN kernel) does the BPTT
    h, hs = h0, []
    for t in range(x.shape[1]):
        h = torch.tanh(x[:, t] @ wx + h @ wh + b)
        hs.append(h)
    return torch.stack(hs, dim=1)


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
    "conv2d": _conv2d,
    "maxpool2d": _maxpool2d,
    "rnn": _rnn,
}
