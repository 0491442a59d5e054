"""The torch engine's op table: torch's own ops, one entry per op of the registry."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.autograd import forward_ad

from .base import EngineSkip

# Attributes arrive clean (see OpSpec.clean): axes as tuples of non-negative ints, flags
# as bools, a reshape's -1 resolved.


def _reduction(fn):
    def reduce(x, axis=(), keepdims=False):
        return fn(x, dim=axis, keepdim=keepdims)

    return reduce


def _var(x, axis=(), keepdims=False):
    return torch.var(x, dim=axis, correction=0, keepdim=keepdims)


def _transpose(x, axes=()):
    return x.permute(*axes)


def _index(x, key=()):
    """torch slices only forwards: a backward slice is read forwards, then flipped."""
    forward, flips, axis = [], [], 0
    for k in key:
        if isinstance(k, slice) and k.step < 0:
            picked = range(k.start, -1 if k.stop is None else k.stop, k.step)
            k = slice(picked[-1], picked[0] + 1, -k.step) if picked else slice(0, 0)
            flips.append(axis)
        forward.append(k)
        axis += not isinstance(k, int)
    out = x[tuple(forward)]
    return out.flip(flips) if flips else out


def _expand_dims(x, axis=()):
    for a in axis:  # ascending, so each lands where it is named
        x = x.unsqueeze(a)
    return x


def _take(x, indices, axis=0):
    picked = torch.index_select(x, axis, indices.reshape(-1))
    return picked.reshape(x.shape[:axis] + indices.shape + x.shape[axis + 1 :])


def _einsum(*operands, subscripts):
    return torch.einsum(subscripts, *operands)


# --- layers (attributes arrive cleaned: plain Python ints and floats) ----------------------


def _conv2d(x, w, b, stride=1, pad=0, dilation=1, groups=1):
    return F.conv2d(x, w, b, stride=stride, padding=pad, dilation=dilation, groups=groups)


def _maxpool2d(x, size=2, stride=2):
    return F.max_pool2d(x, size, stride)


def _avgpool2d(x, size=2, stride=2):
    return F.avg_pool2d(x, size, stride)


def _batchnorm(x, gamma, beta, eps=1e-5):
    # no running statistics: training mode normalises with the batch's own biased variance
    if x.numel() // x.shape[1] < 2:
        raise EngineSkip(
            "torch's training-mode batch norm needs more than one value per "
            f"channel, got input size {list(x.shape)}"
        )
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
    params = [
        _torch_gate_order(wx).T,
        _torch_gate_order(wh).T,
        _torch_gate_order(b),
        _as_dual(torch.zeros_like(b)) if _is_dual(b) else torch.zeros_like(b),
    ]
    # not oneDNN's fused kernel, which CPU float32 and bfloat16 would take: it has neither
    # forward mode nor a double backward; torch's own, made of its ops, has both. (Set
    # alone: `mkldnn.flags()` resets oneDNN's TF32 flag too, which warns on every CPU.)
    onednn = torch.backends.mkldnn.enabled
    torch.backends.mkldnn.enabled = False
    try:
        out, _, _ = torch.lstm(x, (h0[None], c0[None]), params, True, 1, 0.0, True, False, True)
    finally:
        torch.backends.mkldnn.enabled = onednn
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


def all_dual(fn):
    """`fn` taking every floating tensor argument as a dual one (a plain one with a zero
    tangent) when some argument is dual. In forward mode, arithmetic between a dual tensor
    and a plain one (`dual * mask`) goes through a Python decomposition in torch that
    imports torch._dynamo, 1.4 s once per process; between two duals it does not."""

    def dual_args(*args, **attrs):
        if any(_is_dual(a) for a in args):
            args = tuple(_as_dual(a) for a in args)
        return fn(*args, **attrs)

    return dual_args


def plain_numbers(fn):
    """pow with a plain 0-d base or exponent as a number (`dual ** 2` takes no
    decomposition, and a zero tangent would not do: a negative base's log times 0 is
    NaN)."""

    def pow_(base, exponent):
        if _is_dual(base) or _is_dual(exponent):
            base, exponent = _number_if_plain(base), _number_if_plain(exponent)
        return fn(base, exponent)

    return pow_


def _number_if_plain(t):
    return t.item() if torch.is_tensor(t) and t.ndim == 0 and not _is_dual(t) else t


def _is_dual(t) -> bool:
    return torch.is_tensor(t) and forward_ad.unpack_dual(t).tangent is not None


def _as_dual(t):
    """`t`, dual with a zero tangent where it is a plain floating tensor."""
    if torch.is_tensor(t) and t.is_floating_point() and not _is_dual(t):
        return forward_ad.make_dual(t, torch.zeros_like(t))
    return t


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
    "sqrt": torch.sqrt,
    "square": torch.square,
    "sin": torch.sin,
    "cos": torch.cos,
    "log1p": torch.log1p,
    "softplus": F.softplus,
    "gelu": F.gelu,
    "leaky_relu": lambda x, slope=0.01: F.leaky_relu(x, negative_slope=slope),
    "elu": lambda x, alpha=1.0: F.elu(x, alpha=alpha),
    "clip": lambda x, low=None, high=None: torch.clamp(x, min=low, max=high),
    "einsum": _einsum,
    "sum": _reduction(torch.sum),
    "mean": _reduction(torch.mean),
    "max": _reduction(torch.amax),
    "min": _reduction(torch.amin),
    "var": _var,
    "logsumexp": lambda x, axis=-1, keepdims=False: torch.logsumexp(x, dim=axis, keepdim=keepdims),
    "transpose": _transpose,
    "reshape": lambda x, shape=(): torch.reshape(x, shape),
    "index": _index,
    "concat": lambda *xs, axis=0: torch.cat(xs, dim=axis),
    "stack": lambda *xs, axis=0: torch.stack(xs, dim=axis),
    "expand_dims": _expand_dims,
    "squeeze": lambda x, axis=(): torch.squeeze(x, dim=axis),
    "take": _take,
    "take_along_axis": lambda x, indices, axis=0: torch.take_along_dim(x, indices, dim=axis),
    "softmax": lambda x, axis=-1: F.softmax(x, dim=axis),
    "log_softmax": lambda x, axis=-1: F.log_softmax(x, dim=axis),
    "softmax_cross_entropy": lambda scores, labels: F.cross_entropy(scores, labels.long()),
    **LAYER_OPS,
}

# How the forward-mode pass takes each op whose arguments may mix dual and plain tensors
# (see `all_dual`): only ops whose derivative in each argument is finite wherever their
# value is, so that a zero tangent adds exactly zero (not sqrt's at 0, not log's)
ZERO_TANGENT_SAFE = (
    *("add", "sub", "mul", "div", "matmul", "einsum", "maximum", "minimum", "concat", "stack"),
    *("conv2d", "batchnorm", "layernorm", "rnn", "lstm"),
)
IN_FORWARD_MODE = {**dict.fromkeys(ZERO_TANGENT_SAFE, all_dual), "pow": plain_numbers}


def forward_mode_ops() -> dict:
    """The op table as the forward-mode pass takes it (ops registered since import too)."""
    return {op: IN_FORWARD_MODE[op](fn) if op in IN_FORWARD_MODE else fn for op, fn in OPS.items()}
