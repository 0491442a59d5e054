"""The op registry: every op a case may use, with its arity, attributes and shape rule.

This is the contract shared by the expression parser, shape inference and every engine's
op table. Adding an op means one `OpSpec` here and one entry per engine table
(`tests/test_op_coverage.py` checks that every engine covers every op).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

Shape = tuple[int, ...]


class ShapeError(ValueError):
    """Raised by a shape rule; the graph builder adds the case, step and position."""


@dataclass(frozen=True)
class OpSpec:
    name: str
    arity: int
    shape: Callable[..., Shape]          # shape(*input_shapes, **attrs) -> output shape
    attrs: dict[str, Any] = field(default_factory=dict)   # keyword -> default
    int_args: tuple[int, ...] = ()       # positions that take integer data (never differentiated)
    doc: str = ""
    # clean(attrs, *input_shapes) -> attrs as every engine table receives them: plain Python
    # ints, tuples of non-negative axes, `None` resolved; run once when the graph is built
    clean: Callable[..., dict] | None = None

    def cleaned(self, attrs: dict, *shapes: Shape) -> dict:
        return dict(attrs) if self.clean is None else self.clean(dict(attrs), *shapes)


# --- attribute checks ---------------------------------------------------------------------

def _int(value, what: str, minimum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
        raise ShapeError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ShapeError(f"{what} must be >= {minimum}, got {value!r}")
    return int(value)


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """`None`, an int or a list of ints -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    out = []
    for a in axes:
        a = _int(a, "axis")
        if not -ndim <= a < max(ndim, 1):
            raise ShapeError(f"axis {a} is out of range for a {ndim}-d input")
        out.append(a % max(ndim, 1))
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis!r}")
    return tuple(sorted(out))


# --- shape rules --------------------------------------------------------------------------

def same_shape(x: Shape) -> Shape:
    return x


def broadcast(a: Shape, b: Shape) -> Shape:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise ShapeError(f"shapes {list(a)} and {list(b)} do not broadcast") from None


def matmul_shape(a: Shape, b: Shape) -> Shape:
    if not (1 <= len(a) <= 2 and 1 <= len(b) <= 2):
        raise ShapeError(f"@ takes 1-d or 2-d operands, got shapes {list(a)} and {list(b)}")
    if a[-1] != b[0]:
        raise ShapeError(f"@ inner dimensions differ: {list(a)} @ {list(b)}")
    return a[:-1] + b[1:]


def reduce_shape(x: Shape, axis=None, keepdims=False) -> Shape:
    axes = normalize_axes(axis, len(x))
    if keepdims:
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def max_shape(x: Shape, axis=None, keepdims=False) -> Shape:
    if 0 in x:
        raise ShapeError("max of an empty input")
    return reduce_shape(x, axis, keepdims)


def transpose_shape(x: Shape, axes=None) -> Shape:
    if axes is None:
        return x[::-1]
    if not isinstance(axes, (list, tuple)):
        raise ShapeError(f"axes must be a list, got {axes!r}")
    perm = [_int(a, "axes entry") % max(len(x), 1) for a in axes]
    if sorted(perm) != list(range(len(x))):
        raise ShapeError(f"axes {axes!r} is not a permutation of {len(x)} axes")
    return tuple(x[p] for p in perm)


def reshape_shape(x: Shape, shape=None) -> Shape:
    if not isinstance(shape, (list, tuple)):
        raise ShapeError("reshape needs shape=[...]")
    dims = [_int(d, "shape entry", minimum=-1) for d in shape]
    size = int(np.prod(x, dtype=np.int64))
    if dims.count(-1) > 1:
        raise ShapeError("reshape takes at most one -1")
    known = int(np.prod([d for d in dims if d != -1], dtype=np.int64))
    if -1 in dims:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {list(x)} to {dims}")
        dims[dims.index(-1)] = size // known
    if int(np.prod(dims, dtype=np.int64)) != size:
        raise ShapeError(f"cannot reshape {list(x)} ({size} elements) to {dims}")
    return tuple(dims)


def softmax_shape(x: Shape, axis=-1) -> Shape:
    if not x:
        raise ShapeError("softmax needs at least a 1-d input")
    normalize_axes(axis, len(x))
    return x


def cross_entropy_shape(scores: Shape, labels: Shape) -> Shape:
    if len(scores) != 2 or labels != scores[:1]:
        raise ShapeError(f"softmax_cross_entropy takes scores N x C and labels N, "
                         f"got {list(scores)} and {list(labels)}")
    return ()


def _window(size: int, kernel: int, stride: int, pad: int, what: str) -> int:
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ShapeError(f"{what}: window {kernel} does not fit input {size} with pad {pad}")
    return out


# --- layers: conv2d, pooling, normalization, recurrent cells -------------------------------

def clean_conv2d(attrs: dict, *shapes: Shape) -> dict:
    return {"stride": _int(attrs["stride"], "stride", 1), "pad": _int(attrs["pad"], "pad", 0),
            "dilation": _int(attrs["dilation"], "dilation", 1),
            "groups": _int(attrs["groups"], "groups", 1)}


def conv2d_shape(x: Shape, w: Shape, b: Shape, **attrs) -> Shape:
    a = clean_conv2d({**CONV2D_ATTRS, **attrs})
    if len(x) != 4 or len(w) != 4 or len(b) != 1:
        raise ShapeError(f"conv2d takes x N x C x H x W, w F x C x KH x KW and b F, "
                         f"got {list(x)}, {list(w)}, {list(b)}")
    if x[1] != w[1] * a["groups"] or b[0] != w[0] or w[0] % a["groups"]:
        raise ShapeError(f"conv2d channels differ: x {list(x)}, w {list(w)}, b {list(b)}, "
                         f"groups {a['groups']} (x has w.shape[1] * groups channels, "
                         f"F divisible by groups)")
    kh, kw = (a["dilation"] * (k - 1) + 1 for k in w[2:])        # the dilated kernel's reach
    return (x[0], w[0], _window(x[2], kh, a["stride"], a["pad"], "conv2d height"),
            _window(x[3], kw, a["stride"], a["pad"], "conv2d width"))


def clean_pool2d(attrs: dict, *shapes: Shape) -> dict:
    return {"size": _int(attrs["size"], "size", 1), "stride": _int(attrs["stride"], "stride", 1)}


def pool2d_shape(x: Shape, **attrs) -> Shape:
    a = clean_pool2d({**POOL2D_ATTRS, **attrs})
    if len(x) != 4:
        raise ShapeError(f"pooling takes x N x C x H x W, got {list(x)}")
    return (x[0], x[1], _window(x[2], a["size"], a["stride"], 0, "pool height"),
            _window(x[3], a["size"], a["stride"], 0, "pool width"))


def clean_norm(attrs: dict, *shapes: Shape) -> dict:
    eps = attrs["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ShapeError(f"eps must be a positive number, got {eps!r}")
    return {"eps": float(eps)}


def _affine_params(op: str, size: int, gamma: Shape, beta: Shape) -> None:
    if gamma != (size,) or beta != (size,):
        raise ShapeError(f"{op} takes gamma and beta of shape [{size}], "
                         f"got {list(gamma)} and {list(beta)}")


def batchnorm_shape(x: Shape, gamma: Shape, beta: Shape, eps=1e-5) -> Shape:
    clean_norm({"eps": eps})
    if len(x) not in (2, 4) or x[0] < 1:
        raise ShapeError(f"batchnorm takes x N x D or N x C x H x W, got {list(x)}")
    _affine_params("batchnorm", x[1], gamma, beta)
    return x


def layernorm_shape(x: Shape, gamma: Shape, beta: Shape, eps=1e-5) -> Shape:
    clean_norm({"eps": eps})
    if not x or x[-1] < 1:
        raise ShapeError(f"layernorm needs a non-empty last axis, got {list(x)}")
    _affine_params("layernorm", x[-1], gamma, beta)
    return x


def _recurrent_shape(op: str, gates: int, x: Shape, states: list[Shape], wx: Shape,
                     wh: Shape, b: Shape) -> Shape:
    """Shapes of a cell with `gates` H-blocks: x N x T x D, states N x H, wx D x gH, ..."""
    if len(x) != 3 or any(len(s) != 2 for s in states) or len(wx) != 2 or len(b) != 1:
        raise ShapeError(f"{op} takes x N x T x D, states N x H, wx D x {gates}H, "
                         f"wh H x {gates}H, b {gates}H")
    (n, t, d), h = x, states[0][1]
    if any(s != (n, h) for s in states) or wx != (d, gates * h) or wh != (h, gates * h) \
            or b != (gates * h,):
        raise ShapeError(f"{op} shapes disagree: x {list(x)}, states "
                         f"{[list(s) for s in states]}, wx {list(wx)}, wh {list(wh)}, "
                         f"b {list(b)}")
    return (n, t, h)


def rnn_shape(x: Shape, h0: Shape, wx: Shape, wh: Shape, b: Shape) -> Shape:
    return _recurrent_shape("rnn", 1, x, [h0], wx, wh, b)


def lstm_shape(x: Shape, h0: Shape, c0: Shape, wx: Shape, wh: Shape, b: Shape) -> Shape:
    return _recurrent_shape("lstm", 4, x, [h0, c0], wx, wh, b)


CONV2D_ATTRS = {"stride": 1, "pad": 0, "dilation": 1, "groups": 1}
POOL2D_ATTRS = {"size": 2, "stride": 2}
NORM_ATTRS = {"eps": 1e-5}

LAYER_OPS = [
    OpSpec("conv2d", 3, conv2d_shape, dict(CONV2D_ATTRS), clean=clean_conv2d,
           doc="NCHW cross-correlation with zero padding, dilation and groups (torch semantics)"),
    OpSpec("maxpool2d", 1, pool2d_shape, dict(POOL2D_ATTRS), clean=clean_pool2d,
           doc="NCHW max over each window, no padding"),
    OpSpec("avgpool2d", 1, pool2d_shape, dict(POOL2D_ATTRS), clean=clean_pool2d,
           doc="NCHW mean over each window, no padding"),
    OpSpec("batchnorm", 3, batchnorm_shape, dict(NORM_ATTRS), clean=clean_norm,
           doc="training-mode batch norm, biased variance: N x D over axis 0, "
               "N x C x H x W over axes 0, 2, 3"),
    OpSpec("layernorm", 3, layernorm_shape, dict(NORM_ATTRS), clean=clean_norm,
           doc="(x - mean) / sqrt(var + eps) * gamma + beta over the last axis"),
    OpSpec("rnn", 5, rnn_shape,
           doc="h_t = tanh(x_t @ wx + h_{t-1} @ wh + b); every h as N x T x H"),
    OpSpec("lstm", 6, lstm_shape,
           doc="CS231n LSTM, gates i, f, o, g in that order; every h as N x T x H"),
]


# --- the registry -------------------------------------------------------------------------

def _elementwise(name: str, doc: str) -> OpSpec:
    return OpSpec(name, 1, same_shape, doc=doc)


def _binary(name: str, doc: str) -> OpSpec:
    return OpSpec(name, 2, broadcast, doc=doc)


_REDUCE = {"axis": None, "keepdims": False}

OPS: dict[str, OpSpec] = {spec.name: spec for spec in [
    _binary("add", "a + b"),
    _binary("sub", "a - b"),
    _binary("mul", "a * b"),
    _binary("div", "a / b"),
    _binary("pow", "a ** k"),
    _binary("maximum", "elementwise max gate"),
    _binary("minimum", "elementwise min gate"),
    OpSpec("matmul", 2, matmul_shape, doc="a @ b, numpy semantics for 1-d and 2-d"),
    _elementwise("neg", "-a"),
    _elementwise("exp", "e ** x"),
    _elementwise("log", "natural logarithm"),
    _elementwise("tanh", "hyperbolic tangent"),
    _elementwise("sigmoid", "1 / (1 + exp(-x))"),
    _elementwise("relu", "max(x, 0)"),
    _elementwise("abs", "|x|"),
    OpSpec("sum", 1, reduce_shape, dict(_REDUCE), doc="sum over axis (all when None)"),
    OpSpec("mean", 1, reduce_shape, dict(_REDUCE), doc="mean over axis (all when None)"),
    OpSpec("max", 1, max_shape, dict(_REDUCE), doc="max over axis (all when None)"),
    OpSpec("transpose", 1, transpose_shape, {"axes": None}, doc="permute axes (reverse when None)"),
    OpSpec("reshape", 1, reshape_shape, {"shape": None}, doc="reshape, one -1 allowed"),
    OpSpec("softmax", 1, softmax_shape, {"axis": -1}, doc="softmax along axis"),
    OpSpec("log_softmax", 1, softmax_shape, {"axis": -1}, doc="log softmax along axis"),
    OpSpec("softmax_cross_entropy", 2, cross_entropy_shape, int_args=(1,),
           doc="mean over the batch of -log softmax(scores)[label]"),
    *LAYER_OPS,
]}

# Infix and prefix operators of the expression language, by Python AST operator class name.
BINARY_OPERATORS = {"Add": "add", "Sub": "sub", "Mult": "mul", "Div": "div",
                    "Pow": "pow", "MatMult": "matmul"}
UNARY_OPERATORS = {"USub": "neg"}
