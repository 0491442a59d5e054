"""The op registry: every op a case may use, with its arity, attributes and shape rule.

This is the contract shared by the expression parser, shape inference and every engine's
op table. Adding an op means one `OpSpec` here and one entry per engine table
(`tests/test_op_coverage.py` checks that every engine covers every op).

Integer data (int64 inputs: labels, indices, a 0/1 mask) is never differentiated. It fills
an op's `int_args` slots (take's indices, cross-entropy's labels), and enters other slots
only where the op's `int_data` says how:
- `INT_KEPT`: integer data in, integer data out, where every other operand is integer data
  or a whole literal: the exact integer arithmetic `+ - *`, unary `-`, `maximum`, `minimum`,
  and the ops that only move values (`reshape`, `transpose`, `x[...]`, `concat`, `stack`,
  `expand_dims`, `squeeze`, and the `x` of `take` and `take_along_axis`). So
  `take_along_axis(s, expand_dims(y, 1), 1)` picks by labels, and `y - 1` stays labels.
  With a float operand (`x * mask`) or a fractional literal (`y * 0.5`), the result is
  float data, as below.
- `INT_AS_FLOAT`: the integer operands become floats of the case's dtype and the result is
  float data: `a / b` (a quotient is not an integer), and `sum`, `mean` (a count of a
  mask, a masked mean's divisor: `sum(x * mask) / sum(mask)`).
- neither (the default, `exp(y)`, `y @ w`, `max(y)`, `y ** 2`, a registered op): refused,
  naming the argument; a case casts nothing by accident, and an op is opened to integer
  data by one entry here, its engine forms unchanged.
Where float data is made from integer data, the graph builder names the casts and every
interpreter applies them before the op runs (see `graph.Node.casts`): a float result keeps
the case's dtype in every engine, and only the float operands are differentiated.
"""

from __future__ import annotations

import inspect
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Shape = tuple[int, ...]
# The largest integer attribute (stride, pad, size, a reshape entry...) a case may give: a C
# int, what torch and XLA take; numpy's C long overflows further up. Larger is refused.
C_INT_MAX = 2**31 - 1


class ShapeError(ValueError):
    """Raised by a shape rule; the graph builder adds the case, step and position."""


class _Required:
    """The default of an attribute a case must give (`take_along_axis(x, i, axis=1)`)."""

    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED = _Required()

# How an op takes integer data outside its `int_args` (see the module's notes)
INT_KEPT = "kept"  # integer data in, integer data out (+ - * neg max min, moves)
INT_AS_FLOAT = "float"  # integer operands cast to the case's dtype, a float result


@dataclass(frozen=True)
class OpSpec:
    name: str
    arity: int
    shape: Callable[..., Shape]  # shape(*input_shapes, **attrs) -> output shape
    attrs: dict[str, Any] = field(default_factory=dict)  # keyword -> default
    int_args: tuple[int, ...] = ()  # positions that take integer data (never differentiated)
    doc: str = ""
    # clean(attrs, *input_shapes) -> attrs as every engine table receives them: plain Python
    # ints, tuples of non-negative axes, `None` resolved; run once when the graph is built
    clean: Callable[..., dict] | None = None
    variadic: bool = False  # `arity` or more operands (concat, stack, einsum)
    # int_bound(attrs, *input_shapes) -> n: the integer data must lie in 0..n-1 (checked
    # against the values at validate time)
    int_bound: Callable[..., int] | None = None
    form: str = ""  # how a case writes it, when not as a call: "a @ b"
    int_data: str = ""  # INT_KEPT, INT_AS_FLOAT, or "": integer data refused

    def cleaned(self, attrs: dict, *shapes: Shape) -> dict:
        return dict(attrs) if self.clean is None else self.clean(dict(attrs), *shapes)

    def takes(self, count: int) -> bool:
        return count >= self.arity if self.variadic else count == self.arity

    @property
    def signature(self) -> str:
        """`sum(x, axis=None, keepdims=False)`: operand names from the shape rule."""
        if self.form:
            return self.form
        params = inspect.signature(self.shape).parameters.values()
        operands = [
            p.name
            for p in params
            if p.default is p.empty
            and p.name not in self.attrs
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
        ]
        if self.variadic:
            operands = ["a", "b", "..."]
        keywords = [k if v is REQUIRED else f"{k}={v!r}" for k, v in self.attrs.items()]
        return f"{self.name}({', '.join(operands + keywords)})"


# --- attribute checks ---------------------------------------------------------------------


def _int(value, what: str, minimum: int | None = None, maximum: int | None = C_INT_MAX) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or (isinstance(value, float) and not math.isfinite(value))
        or int(value) != value
    ):
        raise ShapeError(f"{what} must be an integer, got {value!r}")
    if minimum is not None and value < minimum:
        raise ShapeError(f"{what} must be >= {minimum}, got {value!r}")
    if maximum is not None and value > maximum:
        raise ShapeError(_too_big(what, value))
    return int(value)


def _too_big(what: str, value) -> str:
    if len(repr(value)) > 30:  # 1e300, written as a number, arrives as a 301-digit int
        value = f"about 10**{len(str(int(value))) - 1}"
    return (
        f"{what} must be at most {C_INT_MAX} (2**31 - 1, the largest integer torch and "
        f"XLA take), got {value}"
    )


def _axis_range(ndim: int) -> str:
    return f"{-ndim}..{ndim - 1}" if ndim else "none (the input is 0-d)"


def one_axis(axis, ndim: int) -> int:
    """One int in -ndim..ndim-1 -> a non-negative axis (softmax, concat, take...)."""
    if isinstance(axis, bool) or not isinstance(axis, (int, float)) or int(axis) != axis:
        raise ShapeError(f"axis must be one integer in {_axis_range(ndim)}, got {axis!r}")
    if not -ndim <= axis < ndim:
        raise ShapeError(
            f"axis {int(axis)} is out of range: a {ndim}-d input takes {_axis_range(ndim)}"
        )
    return int(axis) % ndim


def normalize_axes(axis, ndim: int) -> tuple[int, ...]:
    """`None`, an int or a non-empty list of ints -> sorted tuple of non-negative axes."""
    if axis is None:
        return tuple(range(ndim))
    if isinstance(axis, (list, tuple)) and not axis:
        raise ShapeError(
            "axis=[] names no axis (torch would read it as every axis, numpy "
            "as none); write axis=None for every axis"
        )
    axes = axis if isinstance(axis, (list, tuple)) else [axis]
    out = [one_axis(a, ndim) for a in axes]
    if len(set(out)) != len(out):
        raise ShapeError(f"repeated axis in {axis!r}")
    return tuple(sorted(out))


def _flag(value, what: str) -> bool:
    if value not in (True, False):  # 0 and 1 compare equal to False and True
        raise ShapeError(f"{what} must be True or False, got {value!r}")
    return bool(value)


def _number(value, what: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ShapeError(f"{what} must be a number or None, got {value!r}")
    return float(value)


# --- clean functions: attrs as every engine table receives them ---------------------------


def clean_reduction(attrs: dict, x: Shape) -> dict:
    return {
        "axis": normalize_axes(attrs["axis"], len(x)),
        "keepdims": _flag(attrs["keepdims"], "keepdims"),
    }


def clean_one_axis(attrs: dict, x: Shape, *rest: Shape) -> dict:
    return {**attrs, "axis": one_axis(attrs["axis"], len(x))}


def clean_one_axis_reduction(attrs: dict, x: Shape) -> dict:
    return {
        "axis": one_axis(attrs["axis"], len(x)),
        "keepdims": _flag(attrs["keepdims"], "keepdims"),
    }


def clean_transpose(attrs: dict, x: Shape) -> dict:
    axes = attrs["axes"]
    return {
        "axes": tuple(reversed(range(len(x))))
        if axes is None
        else tuple(one_axis(a, len(x)) for a in axes)
    }


def clean_reshape(attrs: dict, x: Shape) -> dict:
    return {"shape": reshape_shape(x, attrs["shape"])}


def clean_slope(attrs: dict, x: Shape) -> dict:
    return {k: float(v) for k, v in attrs.items()}


def clean_clip(attrs: dict, x: Shape) -> dict:
    return {k: _number(v, k) for k, v in attrs.items()}


# --- shape rules --------------------------------------------------------------------------


def same_shape(x: Shape) -> Shape:
    return x


def broadcast(a: Shape, b: Shape) -> Shape:
    try:
        return tuple(np.broadcast_shapes(a, b))
    except ValueError:
        raise ShapeError(f"shapes {list(a)} and {list(b)} do not broadcast") from None


def matmul_shape(a: Shape, b: Shape) -> Shape:
    """numpy matmul at any rank: a 1-d operand gains an axis that the result drops again;
    the axes before the last two broadcast (a batch)."""
    if not a or not b:
        raise ShapeError(f"@ takes operands of at least 1 axis, got {list(a)} and {list(b)}")
    a2, b2 = ((1,) + a if len(a) == 1 else a), (b + (1,) if len(b) == 1 else b)
    if a2[-1] != b2[-2]:
        raise ShapeError(f"@ inner dimensions differ: {list(a)} @ {list(b)}")
    batch = broadcast(a2[:-2], b2[:-2])
    return batch + a2[-2:-1] * (len(a) > 1) + b2[-1:] * (len(b) > 1)


def reduce_shape(x: Shape, axis=None, keepdims=False) -> Shape:
    axes = normalize_axes(axis, len(x))
    if _flag(keepdims, "keepdims"):
        return tuple(1 if i in axes else d for i, d in enumerate(x))
    return tuple(d for i, d in enumerate(x) if i not in axes)


def nonempty_reduce_shape(x: Shape, axis=None, keepdims=False) -> Shape:
    """mean, max, min, var: a reduction over an empty axis has no value (a mean of nothing
    is 0 / 0, NaN in every engine)."""
    out = reduce_shape(x, axis, keepdims)
    axes = normalize_axes(axis, len(x))
    if math.prod(x[a] for a in axes) == 0:
        raise ShapeError(
            f"axis {list(axes) if len(axes) != 1 else axes[0]} of shape {list(x)} "
            f"is empty: reduces over nothing, which has no value"
        )
    return out


def transpose_shape(x: Shape, axes=None) -> Shape:
    if axes is None:
        return x[::-1]
    if not isinstance(axes, (list, tuple)):
        raise ShapeError(f"axes must be a list, got {axes!r}")
    perm = [one_axis(a, len(x)) for a in axes]
    if sorted(perm) != list(range(len(x))):
        raise ShapeError(
            f"axes {axes!r} is not a permutation of the {len(x)} axes "
            f"(each of {_axis_range(len(x))} once)"
        )
    return tuple(x[p] for p in perm)


def reshape_shape(x: Shape, shape=None) -> Shape:
    if not isinstance(shape, (list, tuple)):
        raise ShapeError("reshape needs shape=[...]")
    dims = [_int(d, "shape entry", minimum=-1, maximum=None) for d in shape]
    size = math.prod(x)  # exact Python ints: a huge shape cannot wrap around
    if dims.count(-1) > 1:
        raise ShapeError("reshape takes at most one -1")
    known = math.prod(d for d in dims if d != -1)
    if -1 in dims:
        if known == 0 or size % known:
            raise ShapeError(f"cannot reshape {list(x)} to {dims}")
        dims[dims.index(-1)] = size // known
    if math.prod(dims) != size:
        raise ShapeError(
            f"cannot reshape {list(x)} ({size} elements) to "
            f"{dims if len(str(dims)) < 200 else 'that shape'}"
        )
    big = [d for d in dims if d > C_INT_MAX]  # only with 0 elements: [0, 10**16]
    if big:
        raise ShapeError(
            f"shape entry {big[0]} is larger than {C_INT_MAX} (2**31 - 1, the "
            f"largest integer torch and XLA take)"
        )
    return tuple(dims)


def softmax_shape(x: Shape, axis=-1) -> Shape:
    if not x:
        raise ShapeError("softmax needs at least a 1-d input")
    if x[one_axis(axis, len(x))] == 0:
        raise ShapeError(f"axis {axis} of shape {list(x)} is empty: nothing to normalise")
    return x


def logsumexp_shape(x: Shape, axis=-1, keepdims=False) -> Shape:
    softmax_shape(x, axis)
    return reduce_shape(x, one_axis(axis, len(x)), keepdims)


def cross_entropy_shape(scores: Shape, labels: Shape) -> Shape:
    if len(scores) != 2 or labels != scores[:1]:
        raise ShapeError(
            f"softmax_cross_entropy takes scores N x C and labels N, "
            f"got {list(scores)} and {list(labels)}"
        )
    if scores[1] == 0:
        raise ShapeError("softmax_cross_entropy needs at least one class")
    if scores[0] == 0:
        raise ShapeError(
            f"axis 0 of shape {list(scores)} is empty: no rows to take the mean loss over"
        )
    return ()


def slope_shape(x: Shape, slope=0.01) -> Shape:
    if _number(slope, "slope") is None:
        raise ShapeError("slope must be a number, got None")
    return x


def elu_shape(x: Shape, alpha=1.0) -> Shape:
    if _number(alpha, "alpha") is None:
        raise ShapeError("alpha must be a number, got None")
    return x


def clip_shape(x: Shape, low=None, high=None) -> Shape:
    low, high = _number(low, "low"), _number(high, "high")
    if low is None and high is None:
        raise ShapeError("clip needs low=, high= or both")
    if low is not None and high is not None and low > high:
        raise ShapeError(f"clip needs low <= high, got low={low}, high={high}")
    return x


def einsum_terms(subscripts) -> tuple[list[str], str]:
    """'ij,jk->ik' -> (['ij', 'jk'], 'ik'); without '->', numpy's implicit output (the
    letters that appear once, in alphabetical order)."""
    if not isinstance(subscripts, str):
        raise ShapeError('einsum takes its subscripts string first: einsum("ij,jk->ik", a, b)')
    text = subscripts.replace(" ", "")
    if not EINSUM_SUBSCRIPTS.match(text):
        raise ShapeError(
            f"einsum subscripts take letters, commas and at most one '->', got {subscripts!r}"
        )
    inputs, arrow, out = text.partition("->")
    if not arrow:
        out = "".join(sorted(c for c in set(inputs) - {","} if inputs.count(c) == 1))
    return inputs.split(","), out


EINSUM_SUBSCRIPTS = re.compile(r"^[A-Za-z]*(,[A-Za-z]*)*(->[A-Za-z]*)?$")


def einsum_shape(*shapes: Shape, subscripts=None) -> Shape:
    terms, out = einsum_terms(subscripts)
    if len(terms) != len(shapes):
        raise ShapeError(
            f"subscripts {subscripts!r} name {len(terms)} operand(s), got {len(shapes)}"
        )
    sizes: dict[str, int] = {}
    for term, shape in zip(terms, shapes):
        if len(term) != len(shape):
            raise ShapeError(
                f"term {term!r} has {len(term)} letter(s) for an operand of shape {list(shape)}"
            )
        if len(set(term)) != len(term):
            raise ShapeError(f"term {term!r} repeats a letter (a diagonal): not supported")
        for letter, size in zip(term, shape):
            if sizes.setdefault(letter, size) != size:
                raise ShapeError(f"letter {letter!r} has sizes {sizes[letter]} and {size}")
    if len(set(out)) != len(out) or not set(out) <= set(sizes):
        raise ShapeError(f"output {out!r} must use input letters, each at most once")
    return tuple(sizes[c] for c in out)


def clean_einsum(attrs: dict, *shapes: Shape) -> dict:
    terms, out = einsum_terms(attrs["subscripts"])
    return {"subscripts": ",".join(terms) + "->" + out}


def _index_key(key) -> tuple:
    entries = tuple(key) if isinstance(key, (list, tuple)) else (key,)
    for k in entries:
        if not (
            k is None
            or k is Ellipsis
            or isinstance(k, slice)
            or (isinstance(k, int) and not isinstance(k, bool))
        ):
            raise ShapeError(f"an index takes constant integers, slices, ... and None, got {k!r}")
    return entries


def index_shape(x: Shape, key=()) -> Shape:
    # numpy's own basic indexing on a zero-stride view: the exact result shape, and the
    # exact errors, without allocating anything
    try:
        return np.broadcast_to(np.zeros((), np.int8), x)[_index_key(key)].shape
    except (IndexError, ValueError) as e:
        raise ShapeError(f"cannot index shape {list(x)}: {e}") from None


def clean_index(attrs: dict, x: Shape) -> dict:
    """Ellipsis expanded, negative integers and slice bounds resolved against the shape."""
    key = _index_key(attrs["key"])
    fill = (slice(None),) * (len(x) - sum(k is not None and k is not Ellipsis for k in key))
    at = next((i for i, k in enumerate(key) if k is Ellipsis), len(key))
    key = key[:at] + fill + key[at + 1 :]
    out, axis = [], 0
    for k in key:
        if k is not None:
            k = k % x[axis] if isinstance(k, int) else _resolved(k, x[axis])
            axis += 1
        out.append(k)
    return {"key": tuple(out)}


def _resolved(s: slice, n: int) -> slice:
    start, stop, step = s.indices(n)
    if not range(start, stop, step):
        return slice(0, 0, 1)
    step = max(-n, min(step, n))  # a step past the axis picks one item: torch takes a C int
    # slice.indices gives stop -1 for "down to index 0", which as a stop would mean n - 1
    return slice(start, None if stop < 0 else stop, step)


def concat_shape(*shapes: Shape, axis=0) -> Shape:
    first = shapes[0]
    if not first:
        raise ShapeError("concat takes operands of at least 1 axis")
    ax = one_axis(axis, len(first))
    for shape in shapes[1:]:
        if len(shape) != len(first) or shape[:ax] + shape[ax + 1 :] != first[:ax] + first[ax + 1 :]:
            raise ShapeError(
                f"operands differ outside axis {ax}: {', '.join(str(list(s)) for s in shapes)}"
            )
    return first[:ax] + (sum(s[ax] for s in shapes),) + first[ax + 1 :]


def stack_shape(*shapes: Shape, axis=0) -> Shape:
    if any(s != shapes[0] for s in shapes):
        raise ShapeError(
            f"operands must have one shape, got {', '.join(str(list(s)) for s in shapes)}"
        )
    ax = one_axis(axis, len(shapes[0]) + 1)
    return shapes[0][:ax] + (len(shapes),) + shapes[0][ax:]


def clean_stack(attrs: dict, x: Shape, *rest: Shape) -> dict:
    return {"axis": one_axis(attrs["axis"], len(x) + 1)}


def _new_axes(axis, ndim: int) -> tuple[int, ...]:
    count = len(axis) if isinstance(axis, (list, tuple)) else 1
    return normalize_axes(axis, ndim + count)


def expand_dims_shape(x: Shape, axis=REQUIRED) -> Shape:
    out = list(x)
    for a in _new_axes(axis, len(x)):
        out.insert(a, 1)
    return tuple(out)


def clean_expand_dims(attrs: dict, x: Shape) -> dict:
    return {"axis": _new_axes(attrs["axis"], len(x))}


def _squeezed(axis, x: Shape) -> tuple[int, ...]:
    if axis is None:
        return tuple(i for i, d in enumerate(x) if d == 1)
    axes = normalize_axes(axis, len(x))
    for a in axes:
        if x[a] != 1:
            raise ShapeError(
                f"cannot squeeze axis {a} of shape {list(x)}: its size is {x[a]}, not 1"
            )
    return axes


def squeeze_shape(x: Shape, axis=None) -> Shape:
    axes = _squeezed(axis, x)
    return tuple(d for i, d in enumerate(x) if i not in axes)


def clean_squeeze(attrs: dict, x: Shape) -> dict:
    return {"axis": _squeezed(attrs["axis"], x)}


def take_shape(x: Shape, indices: Shape, axis=0) -> Shape:
    if not x:
        raise ShapeError("take needs x of at least 1 axis")
    ax = one_axis(axis, len(x))
    return x[:ax] + indices + x[ax + 1 :]


def take_along_axis_shape(x: Shape, indices: Shape, axis=REQUIRED) -> Shape:
    if len(indices) != len(x) or not x:
        raise ShapeError(
            f"indices need as many axes as x (at least 1), got x {list(x)} "
            f"and indices {list(indices)}"
        )
    ax = one_axis(axis, len(x))
    others = broadcast(x[:ax] + x[ax + 1 :], indices[:ax] + indices[ax + 1 :])
    return others[:ax] + (indices[ax],) + others[ax:]


# --- integer data: the exclusive upper bound its values must respect -----------------------


def labels_bound(attrs: dict, scores: Shape, labels: Shape) -> int:
    return scores[-1]


def axis_bound(attrs: dict, x: Shape, indices: Shape) -> int:
    return x[attrs["axis"]]


def _window(size: int, kernel: int, stride: int, pad: int, what: str) -> int:
    out = (size + 2 * pad - kernel) // stride + 1
    if out < 1:
        raise ShapeError(f"{what}: window {kernel} does not fit input {size} with pad {pad}")
    return out


# --- layers: conv2d, pooling, normalization, recurrent cells -------------------------------


def _clamped_stride(stride: int, extents, reaches) -> int:
    """A stride past every window's last start gives one window per axis, as the smallest
    such stride does: every engine gets that one (an engine may overflow on 2**31 - 1)."""
    return min(stride, max(1, *(e - r + 1 for e, r in zip(extents, reaches))))


def clean_conv2d(attrs: dict, *shapes: Shape) -> dict:
    a = {
        "stride": _int(attrs["stride"], "stride", 1),
        "pad": _int(attrs["pad"], "pad", 0),
        "dilation": _int(attrs["dilation"], "dilation", 1),
        "groups": _int(attrs["groups"], "groups", 1),
    }
    if len(shapes) == 3 and len(shapes[0]) == 4 and len(shapes[1]) == 4:
        x, w = shapes[0], shapes[1]
        if all(k == 1 for k in w[2:]):
            a["dilation"] = 1  # a 1 x 1 kernel's reach is 1 at any dilation
        reaches = [a["dilation"] * (k - 1) + 1 for k in w[2:]]
        a["stride"] = _clamped_stride(a["stride"], [s + 2 * a["pad"] for s in x[2:]], reaches)
    return a


def conv2d_shape(x: Shape, w: Shape, b: Shape, **attrs) -> Shape:
    a = clean_conv2d({**CONV2D_ATTRS, **attrs})
    if len(x) != 4 or len(w) != 4 or len(b) != 1:
        raise ShapeError(
            f"conv2d takes x N x C x H x W, w F x C x KH x KW and b F, "
            f"got {list(x)}, {list(w)}, {list(b)}"
        )
    if x[1] != w[1] * a["groups"] or b[0] != w[0] or w[0] % a["groups"]:
        raise ShapeError(
            f"conv2d channels differ: x {list(x)}, w {list(w)}, b {list(b)}, "
            f"groups {a['groups']} (x has w.shape[1] * groups channels, "
            f"F divisible by groups)"
        )
    if a["pad"] > max(x[2:]):
        raise ShapeError(
            f"pad {a['pad']} is larger than the input's height and width "
            f"{x[2]} x {x[3]} (at most {max(x[2:])}): its windows would see "
            f"only padding"
        )
    kh, kw = (a["dilation"] * (k - 1) + 1 for k in w[2:])  # the dilated kernel's reach
    return (
        x[0],
        w[0],
        _window(x[2], kh, a["stride"], a["pad"], "conv2d height"),
        _window(x[3], kw, a["stride"], a["pad"], "conv2d width"),
    )


def clean_pool2d(attrs: dict, *shapes: Shape) -> dict:
    a = {"size": _int(attrs["size"], "size", 1), "stride": _int(attrs["stride"], "stride", 1)}
    if len(shapes) == 1 and len(shapes[0]) == 4:
        a["stride"] = _clamped_stride(a["stride"], shapes[0][2:], [a["size"]] * 2)
    return a


def pool2d_shape(x: Shape, **attrs) -> Shape:
    a = clean_pool2d({**POOL2D_ATTRS, **attrs})
    if len(x) != 4:
        raise ShapeError(f"pooling takes x N x C x H x W, got {list(x)}")
    return (
        x[0],
        x[1],
        _window(x[2], a["size"], a["stride"], 0, "pool height"),
        _window(x[3], a["size"], a["stride"], 0, "pool width"),
    )


def clean_norm(attrs: dict, *shapes: Shape) -> dict:
    eps = attrs["eps"]
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ShapeError(f"eps must be a positive number, got {eps!r}")
    return {"eps": float(eps)}


def _affine_params(op: str, size: int, gamma: Shape, beta: Shape) -> None:
    if gamma != (size,) or beta != (size,):
        raise ShapeError(
            f"{op} takes gamma and beta of shape [{size}], got {list(gamma)} and {list(beta)}"
        )


def batchnorm_shape(x: Shape, gamma: Shape, beta: Shape, eps=1e-5) -> Shape:
    clean_norm({"eps": eps})
    if len(x) not in (2, 4):
        raise ShapeError(f"batchnorm takes x N x D or N x C x H x W, got {list(x)}")
    if x[0] * math.prod(x[2:]) == 0:
        raise ShapeError(
            f"x of shape {list(x)} has no rows to normalise over (N"
            f"{' x H x W' if len(x) == 4 else ''} is 0): a mean of nothing"
        )
    _affine_params("batchnorm", x[1], gamma, beta)
    return x


def layernorm_shape(x: Shape, gamma: Shape, beta: Shape, eps=1e-5) -> Shape:
    clean_norm({"eps": eps})
    if not x or x[-1] < 1:
        raise ShapeError(f"layernorm needs a non-empty last axis, got {list(x)}")
    _affine_params("layernorm", x[-1], gamma, beta)
    return x


def _recurrent_shape(
    op: str, gates: int, x: Shape, states: list[Shape], wx: Shape, wh: Shape, b: Shape
) -> Shape:
    """Shapes of a cell with `gates` H-blocks: x N x T x D, states N x H, wx D x gH, ..."""
    if len(x) != 3 or any(len(s) != 2 for s in states) or len(wx) != 2 or len(b) != 1:
        raise ShapeError(
            f"{op} takes x N x T x D, states N x H, wx D x {gates}H, wh H x {gates}H, b {gates}H"
        )
    (n, t, d), h = x, states[0][1]
    if (
        any(s != (n, h) for s in states)
        or wx != (d, gates * h)
        or wh != (h, gates * h)
        or b != (gates * h,)
    ):
        raise ShapeError(
            f"{op} shapes disagree: x {list(x)}, states "
            f"{[list(s) for s in states]}, wx {list(wx)}, wh {list(wh)}, "
            f"b {list(b)}"
        )
    return (n, t, h)


def rnn_shape(x: Shape, h0: Shape, wx: Shape, wh: Shape, b: Shape) -> Shape:
    return _recurrent_shape("rnn", 1, x, [h0], wx, wh, b)


def lstm_shape(x: Shape, h0: Shape, c0: Shape, wx: Shape, wh: Shape, b: Shape) -> Shape:
    return _recurrent_shape("lstm", 4, x, [h0, c0], wx, wh, b)


CONV2D_ATTRS = {"stride": 1, "pad": 0, "dilation": 1, "groups": 1}
POOL2D_ATTRS = {"size": 2, "stride": 2}
NORM_ATTRS = {"eps": 1e-5}

LAYER_OPS = [
    OpSpec(
        "conv2d",
        3,
        conv2d_shape,
        dict(CONV2D_ATTRS),
        clean=clean_conv2d,
        doc="NCHW cross-correlation with zero padding, dilation and groups (torch semantics)",
    ),
    OpSpec(
        "maxpool2d",
        1,
        pool2d_shape,
        dict(POOL2D_ATTRS),
        clean=clean_pool2d,
        doc="NCHW max over each window, no padding",
    ),
    OpSpec(
        "avgpool2d",
        1,
        pool2d_shape,
        dict(POOL2D_ATTRS),
        clean=clean_pool2d,
        doc="NCHW mean over each window, no padding",
    ),
    OpSpec(
        "batchnorm",
        3,
        batchnorm_shape,
        dict(NORM_ATTRS),
        clean=clean_norm,
        doc="training-mode batch norm, biased variance: N x D over axis 0, "
        "N x C x H x W over axes 0, 2, 3",
    ),
    OpSpec(
        "layernorm",
        3,
        layernorm_shape,
        dict(NORM_ATTRS),
        clean=clean_norm,
        doc="(x - mean) / sqrt(var + eps) * gamma + beta over the last axis",
    ),
    OpSpec(
        "rnn", 5, rnn_shape, doc="h_t = tanh(x_t @ wx + h_{t-1} @ wh + b); every h as N x T x H"
    ),
    OpSpec(
        "lstm",
        6,
        lstm_shape,
        doc="CS231n LSTM, gates i, f, o, g in that order; every h as N x T x H",
    ),
]


# --- the registry -------------------------------------------------------------------------


def _elementwise(name: str, doc: str) -> OpSpec:
    return OpSpec(name, 1, same_shape, doc=doc)


def _binary(name: str, doc: str, form: str = "", int_data: str = "") -> OpSpec:
    return OpSpec(name, 2, broadcast, doc=doc, form=form, int_data=int_data)


def _reduction(name: str, doc: str, shape=reduce_shape, int_data: str = "") -> OpSpec:
    return OpSpec(
        name,
        1,
        shape,
        {"axis": None, "keepdims": False},
        doc=doc,
        clean=clean_reduction,
        int_data=int_data,
    )


OPS: dict[str, OpSpec] = {
    spec.name: spec
    for spec in [
        _binary("add", "elementwise sum, numpy broadcasting", "a + b", INT_KEPT),
        _binary("sub", "elementwise difference, numpy broadcasting", "a - b", INT_KEPT),
        _binary("mul", "elementwise product, numpy broadcasting", "a * b", INT_KEPT),
        _binary("div", "elementwise quotient, numpy broadcasting", "a / b", INT_AS_FLOAT),
        _binary("pow", "power, elementwise", "a ** k"),
        _binary("maximum", "elementwise max gate (a tie shares the gradient)", int_data=INT_KEPT),
        _binary("minimum", "elementwise min gate (a tie shares the gradient)", int_data=INT_KEPT),
        OpSpec(
            "matmul",
            2,
            matmul_shape,
            form="a @ b",
            doc="numpy matmul at any rank: batched, leading axes broadcast; 1-d on either side",
        ),
        OpSpec(
            "einsum",
            1,
            einsum_shape,
            {"subscripts": None},
            clean=clean_einsum,
            variadic=True,
            form='einsum("ij,jk->ik", a, b, ...)',
            doc="numpy einsum; the subscripts string is the only string an expression admits",
        ),
        OpSpec("neg", 1, same_shape, doc="negation", form="-x", int_data=INT_KEPT),
        _elementwise("exp", "e ** x"),
        _elementwise("log", "natural logarithm"),
        _elementwise("log1p", "log(1 + x), accurate for small x"),
        _elementwise("sqrt", "square root"),
        _elementwise("square", "x ** 2"),
        _elementwise("sin", "sine"),
        _elementwise("cos", "cosine"),
        _elementwise("tanh", "hyperbolic tangent"),
        _elementwise("sigmoid", "1 / (1 + exp(-x))"),
        _elementwise("softplus", "log(1 + exp(x)), computed stably"),
        _elementwise("gelu", "x * Phi(x), the exact (erf) form"),
        _elementwise("relu", "max(x, 0)"),
        _elementwise("abs", "|x|"),
        OpSpec(
            "leaky_relu",
            1,
            slope_shape,
            {"slope": 0.01},
            clean=clean_slope,
            doc="x where x > 0, else slope * x",
        ),
        OpSpec(
            "elu",
            1,
            elu_shape,
            {"alpha": 1.0},
            clean=clean_slope,
            doc="x where x > 0, else alpha * (exp(x) - 1)",
        ),
        OpSpec(
            "clip",
            1,
            clip_shape,
            {"low": None, "high": None},
            clean=clean_clip,
            doc="x limited to [low, high]; the gradient passes where low <= x <= high",
        ),
        _reduction(
            "sum", "sum over axis (an int, a list, None: every axis)", int_data=INT_AS_FLOAT
        ),
        _reduction("mean", "mean over axis", nonempty_reduce_shape, int_data=INT_AS_FLOAT),
        _reduction("max", "max over axis; ties share the gradient", nonempty_reduce_shape),
        _reduction("min", "min over axis; ties share the gradient", nonempty_reduce_shape),
        _reduction("var", "population variance (ddof 0) over axis", nonempty_reduce_shape),
        OpSpec(
            "logsumexp",
            1,
            logsumexp_shape,
            {"axis": -1, "keepdims": False},
            clean=clean_one_axis_reduction,
            doc="log(sum(exp(x))) along one axis, computed stably",
        ),
        OpSpec(
            "transpose",
            1,
            transpose_shape,
            {"axes": None},
            clean=clean_transpose,
            int_data=INT_KEPT,
            doc="permute axes (reverse them when None)",
        ),
        OpSpec(
            "reshape",
            1,
            reshape_shape,
            {"shape": None},
            clean=clean_reshape,
            int_data=INT_KEPT,
            doc="reshape; one entry may be -1",
        ),
        OpSpec(
            "index",
            1,
            index_shape,
            {"key": ()},
            clean=clean_index,
            form="x[i, 1:3, ..., None]",
            doc="basic indexing by constant ints, slices, ... and None; the gradient scatters back",
            int_data=INT_KEPT,
        ),
        OpSpec(
            "concat",
            2,
            concat_shape,
            {"axis": 0},
            clean=clean_one_axis,
            variadic=True,
            int_data=INT_KEPT,
            doc="numpy concatenate along one axis, two or more operands",
        ),
        OpSpec(
            "stack",
            2,
            stack_shape,
            {"axis": 0},
            clean=clean_stack,
            variadic=True,
            doc="numpy stack along a new axis, two or more operands of one shape",
            int_data=INT_KEPT,
        ),
        OpSpec(
            "expand_dims",
            1,
            expand_dims_shape,
            {"axis": REQUIRED},
            clean=clean_expand_dims,
            int_data=INT_KEPT,
            doc="insert axes of size 1 (axis: an int or a list)",
        ),
        OpSpec(
            "squeeze",
            1,
            squeeze_shape,
            {"axis": None},
            clean=clean_squeeze,
            doc="drop axes of size 1 (all when None; a named axis must have size 1)",
            int_data=INT_KEPT,
        ),
        OpSpec(
            "take",
            2,
            take_shape,
            {"axis": 0},
            int_args=(1,),
            clean=clean_one_axis,
            int_bound=axis_bound,
            int_data=INT_KEPT,
            doc="pick along one axis by integer indices of any shape (an embedding lookup)",
        ),
        OpSpec(
            "take_along_axis",
            2,
            take_along_axis_shape,
            {"axis": REQUIRED},
            int_args=(1,),
            clean=clean_one_axis,
            int_bound=axis_bound,
            int_data=INT_KEPT,
            doc="numpy take_along_axis: pick, e.g., each row's correct-class score",
        ),
        OpSpec(
            "softmax",
            1,
            softmax_shape,
            {"axis": -1},
            clean=clean_one_axis,
            doc="softmax along one axis",
        ),
        OpSpec(
            "log_softmax",
            1,
            softmax_shape,
            {"axis": -1},
            clean=clean_one_axis,
            doc="log softmax along one axis",
        ),
        OpSpec(
            "softmax_cross_entropy",
            2,
            cross_entropy_shape,
            int_args=(1,),
            int_bound=labels_bound,
            doc="mean over the batch of -log softmax(scores)[label]; labels in 0..C-1",
        ),
        *LAYER_OPS,
    ]
}


def int_data_ops() -> str:
    """The ops that take integer data beside their integer slots, as a case writes them."""
    return ", ".join(spec.form or spec.name for spec in OPS.values() if spec.int_data)


def describe_ops() -> list[tuple[str, str, str]]:
    """(name, signature, meaning) of every op, in registry order: `gradcheck ops`, the
    README's op list and the JSON Schema's description of expressions all read this."""
    return [(spec.name, spec.signature, spec.doc) for spec in OPS.values()]


def expression_help() -> str:
    """One paragraph on the expression language, for the JSON Schema's `expr` field."""
    return (
        "An expression, parsed and never evaluated: numbers, input and step names, "
        "constant keyword arguments (numbers, lists of numbers, None, True/False) and "
        "these ops: " + "; ".join(sig for _, sig, _ in describe_ops()) + "."
    )


def ops_markdown() -> str:
    """The op list as a Markdown table (the README holds a copy; a test compares them)."""
    rows = [f"| `{sig}` | {doc} |" for _, sig, doc in describe_ops()]
    return "\n".join(["| op | meaning |", "|----|---------|", *rows]) + "\n"


# Infix and prefix operators of the expression language, by Python AST operator class name.
BINARY_OPERATORS = {
    "Add": "add",
    "Sub": "sub",
    "Mult": "mul",
    "Div": "div",
    "Pow": "pow",
    "MatMult": "matmul",
}
UNARY_OPERATORS = {"USub": "neg"}
