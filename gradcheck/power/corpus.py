"""The mutant corpus: realistic backprop bugs, each one small variant of one numpy gradient
rule or of the backprop executor, keyed by the op it breaks.

A mutant of an op that this build does not have (or of an attribute its op lacks) is kept
in the table and reported as not applicable, so the corpus can name every op of the
vocabulary before each op exists. Broken rules that need the correct rule look it up in
`reference_impls.OPS` when called, never at import.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from functools import partial

import numpy as np

import reference_impls
from reference_impls import backprop

from ..engines import NumpyEngine
from ..ir.ops import OPS as REGISTRY
from ..ir.ops import normalize_axes

EXECUTOR = "(executor)"  # the key of mutants of the backprop executor itself


@dataclass(frozen=True)
class Mutant:
    name: str
    op: str  # the op whose rule is broken, or EXECUTOR
    description: str  # the mistake it models, in one line
    rules: Mapping[int, Callable] = field(default_factory=dict)  # argument -> broken rule
    executor: Callable | None = None  # a broken `backprop`, for executor mutants
    needs_attrs: tuple[str, ...] = ()  # attributes of `op` the mutant relies on
    equivalent: bool = False  # a valid subgradient at a kink: not a bug
    tangents: Mapping[int, Callable] = field(default_factory=dict)  # argument -> broken
    # tangent rule (forward mode): every VJP stays right, only cases run in `fwd` mode see it

    def applicable(self, ops=None) -> bool:
        """Whether this build has the op (and the attributes) the mutant breaks."""
        ops = reference_impls.OPS if ops is None else ops
        if self.op == EXECUTOR:
            return True
        spec = REGISTRY.get(self.op)
        return self.op in ops and spec is not None and set(self.needs_attrs) <= set(spec.attrs)

    def exercised_by(self, case) -> bool:
        """A case that uses the op; for a tangent rule's mutant, in forward mode."""
        if self.tangents and "fwd" not in case.modes:
            return False
        return self.op == EXECUTOR or self.op in case.graph.ops()

    def engine(self, ops=None, name: str = "numpy") -> NumpyEngine:
        ops = dict(reference_impls.OPS if ops is None else ops)
        if self.rules:
            ops[self.op] = replace(ops[self.op], grads=_replaced(ops[self.op].grads, self.rules))
        if self.tangents:
            tangents = _replaced(ops[self.op].tangents, self.tangents)
            ops[self.op] = replace(ops[self.op], tangents=tangents)
        executor = self.executor or backprop
        if isinstance(executor, type):  # a stateful executor: fresh state per engine
            executor = executor()
        return NumpyEngine(ops, name=name, executor=executor)


def _replaced(rules: tuple, broken: Mapping[int, Callable]) -> tuple:
    return tuple(broken.get(i, rule) for i, rule in enumerate(rules))


# --- helpers: the correct rule, called with one thing changed -------------------------------


def _correct(op: str, index: int) -> Callable:
    rule = reference_impls.OPS[op].grads[index]
    if rule is None:
        raise ValueError(f"{op}: argument {index} has no gradient rule to mutate")
    return rule


def _with_attrs(op: str, index: int, **override) -> Callable:
    """The correct rule of `op`, called with some attributes overridden (a backward that
    ignores the forward's stride, padding or axis)."""
    return partial(_call_with_attrs, op, index, override)


def _call_with_attrs(op, index, override, g, out, *args, **attrs):
    return _correct(op, index)(g, out, *args, **{**attrs, **override})


def _without_upstream(op: str, index: int) -> Callable:
    return partial(_call_without_upstream, op, index)


def _call_without_upstream(op, index, g, out, *args, **attrs):
    # the local derivative alone: right only when this node is the graph's output
    return _correct(op, index)(np.ones_like(g), out, *args, **attrs)


def _scaled_by(op: str, index: int, factor: Callable) -> Callable:
    return partial(_call_scaled, op, index, factor)


def _call_scaled(op, index, factor, g, out, *args, **attrs):
    return _correct(op, index)(g, out, *args, **attrs) * factor(*args)


def _expand(g, x, axis, keepdims):
    return g if keepdims else np.expand_dims(g, normalize_axes(axis, x.ndim))


# --- elementwise --------------------------------------------------------------------------


def _ones_like_upstream(g, out, *args):
    return np.ones_like(g)


def _plus_g(g, out, *args):
    return g


def _mul_by_self(g, out, a, b):
    return g * a


def _div_b_positive(g, out, a, b):
    return g * a / (b * b)


def _div_b_unsquared(g, out, a, b):
    return -g * a / b


def _pow_base_same_exponent(g, out, a, k):
    return g * k * np.power(a, k)


def _pow_exponent_no_out(g, out, a, k):
    with np.errstate(divide="ignore", invalid="ignore"):
        return g * np.log(a)


def _to_loser(g, out, a, b):
    return g * (a < b)


def _to_larger(g, out, a, b):
    return g * (a > b)


def _maximum_ties_to_a(g, out, a, b):
    return g * (a >= b)


def _exp_of_input(g, out, x):
    return g * x


def _log_over_out(g, out, x):
    return g / out


def _tanh_unsquared(g, out, x):
    return g * (1 - out)


def _sigmoid_of_input(g, out, x):
    return g * x * (1 - x)


def _relu_gated_by_upstream(g, out, x):
    return g * (g > 0)


def _relu_one_at_zero(g, out, x):
    return g * (x >= 0)


def _abs_no_sign(g, out, x):
    return g


def _abs_one_at_zero(g, out, x):
    return g * np.where(x >= 0, 1.0, -1.0)


# --- second vocabulary: elementwise ---------------------------------------------------------


def _sqrt_no_half(g, out, x):
    return g / out


def _square_no_two(g, out, x):
    return g * x


def _sin_of_out(g, out, x):
    return g * np.cos(out)


def _cos_no_minus(g, out, x):
    return g * np.sin(x)


def _log1p_no_one(g, out, x):
    return g / x


def _softplus_sign(g, out, x):
    return g / (1 + np.exp(x))


_erf = np.vectorize(math.erf, otypes=[np.float64])


def _gelu_no_density(g, out, x):
    return g * 0.5 * (1 + _erf(x / np.sqrt(2)))


def _leaky_relu_no_slope(g, out, x, slope=0.01):
    return g * (x > 0)


def _elu_no_alpha(g, out, x, alpha=1.0):
    return g * np.where(x > 0, 1.0, out)


def _clip_passes_all(g, out, x, low=None, high=None):
    return g


def _min_routes_to_max(g, out, x, axis=None, keepdims=False):
    winners = x == np.max(x, axis=normalize_axes(axis, x.ndim), keepdims=True)
    share = winners / np.sum(winners, axis=normalize_axes(axis, x.ndim), keepdims=True)
    return share * _expand(g, x, axis, keepdims)


def _var_grad(g, x, axis, keepdims, center=True, factor=2.0, ddof=0):
    axes = normalize_axes(axis, x.ndim)
    count = np.prod([x.shape[a] for a in axes]) - ddof
    centered = x - np.mean(x, axis=axes, keepdims=True) if center else x
    return factor * centered / count * _expand(g, x, axis, keepdims)


def _var_no_two(g, out, x, axis=None, keepdims=False):
    return _var_grad(g, x, axis, keepdims, factor=1.0)


def _var_not_centered(g, out, x, axis=None, keepdims=False):
    return _var_grad(g, x, axis, keepdims, center=False)


def _var_ddof_one(g, out, x, axis=None, keepdims=False):
    return _var_grad(g, x, axis, keepdims, ddof=1)


def _logsumexp_unnormalised(g, out, x, axis=-1, keepdims=False):
    return np.exp(x) * _expand(g, x, axis, keepdims)


def _logsumexp_last_axis(g, out, x, axis=-1, keepdims=False):
    p = np.exp(x - np.max(x, axis=-1, keepdims=True))
    return p / np.sum(p, axis=-1, keepdims=True) * _expand(g, x, axis, keepdims)


def _einsum_sorted_letters(i, g, out, *operands, subscripts):
    """The gradient written to operand i's letters in sorted order, not its own order (a
    transposed gradient wherever an operand's letters are not alphabetical)."""
    terms, result = subscripts.split("->")
    terms = terms.split(",")
    others = [t for j, t in enumerate(terms) if j != i]
    kept = "".join(sorted(terms[i]))
    return np.einsum(
        ",".join([result] + others) + "->" + kept,
        g,
        *(op for j, op in enumerate(operands) if j != i),
    )


# --- second vocabulary: indexing and assembling ---------------------------------------------


def _index_to_first_elements(g, out, x, key=()):
    dx = np.zeros_like(x)
    dx.flat[: g.size] = np.ravel(g)
    return dx


def _concat_equal_parts(i, g, out, *xs, axis=0):
    return np.array_split(g, len(xs), axis=axis)[i]


def _concat_axis0(i, g, out, *xs, axis=0):
    return _correct("concat", 0)(i, g, out, *xs, axis=0)


def _stack_axis0(i, g, out, *xs, axis=0):
    return np.take(g, i, axis=0)


def _expand_dims_squeeze_all(g, out, x, axis=()):
    return np.squeeze(g)


def _squeeze_axes_at_end(g, out, x, axis=()):
    return np.reshape(g, g.shape + (1,) * (x.ndim - g.ndim))


def _take_overwrites_repeats(g, out, x, indices, axis=0):
    k = np.ndim(indices)
    dx = np.zeros_like(np.moveaxis(x, axis, 0))
    dx[indices] = np.moveaxis(g, range(axis, axis + k), range(k))
    return np.moveaxis(dx, 0, axis)


def _take_along_axis_overwrites(g, out, x, indices, axis=0):
    dx = np.zeros(
        np.broadcast_shapes(x.shape[:axis] + (1,) + x.shape[axis + 1 :], g.shape)[:axis]
        + x.shape[axis : axis + 1]
        + g.shape[axis + 1 :],
        g.dtype,
    )
    np.put_along_axis(dx, np.broadcast_to(indices, g.shape), g, axis=axis)
    return dx


# --- second vocabulary: normalisation layers and lstm ---------------------------------------


def _norm_axes(x):
    return (0,) if x.ndim < 4 else (0, 2, 3)


def _per_channel(p, x):
    return p if x.ndim < 4 else p[:, None, None]


def _standardized(x, axes, eps):
    inv_std = 1 / np.sqrt(np.var(x, axis=axes, keepdims=True) + eps)
    return (x - np.mean(x, axis=axes, keepdims=True)) * inv_std, inv_std


def _batchnorm_dx_constant_stats(g, out, x, gamma, beta, eps=1e-5):
    # the mean and variance treated as constants: only the direct path x -> xhat
    return g * _per_channel(gamma, x) * _standardized(x, _norm_axes(x), eps)[1]


def _batchnorm_dgamma_raw_x(g, out, x, gamma, beta, eps=1e-5):
    return np.sum(g * x, axis=_norm_axes(x))


def _batchnorm_dbeta_mean(g, out, x, gamma, beta, eps=1e-5):
    return np.mean(g, axis=_norm_axes(x))


def _layernorm_dx_batch_axis(g, out, x, gamma, beta, eps=1e-5):
    """The batch-norm backward pasted in: sums over the batch axis, not the feature axis."""
    xhat, inv_std = _standardized(x, (-1,), eps)
    dxhat, m = g * gamma, x.shape[0]
    total = np.sum(dxhat, axis=0, keepdims=True)
    along = np.sum(dxhat * xhat, axis=0, keepdims=True)
    return inv_std / m * (m * dxhat - total - xhat * along)


def _layernorm_dx_constant_stats(g, out, x, gamma, beta, eps=1e-5):
    return g * gamma * _standardized(x, (-1,), eps)[1]


def _zeros_for(index: int) -> Callable:
    return partial(_zeros_like_arg, index)


def _zeros_like_arg(index, g, out, *args, **attrs):
    return np.zeros_like(args[index])


def _lstm_torch_gate_order(index: int) -> Callable:
    return partial(_call_lstm_torch_order, index)


def _call_lstm_torch_order(index, g, out, *args, **attrs):
    """A weight gradient with its gate blocks laid out i, f, g, o (torch's order) while the
    forward reads them i, f, o, g."""
    grad = _correct("lstm", index)(g, out, *args, **attrs)
    i, f, o, c = np.split(grad, 4, axis=-1)
    return np.concatenate([i, f, c, o], axis=-1)


# --- matmul --------------------------------------------------------------------------------


def _matmul_a_untransposed(g, out, a, b):
    return g @ b if b.ndim == 2 else _correct("matmul", 0)(g, out, a, b)


def _matmul_b_transposed(g, out, a, b):
    return (a.T @ g).T if a.ndim == 2 else _correct("matmul", 1)(g, out, a, b)


def _matmul_a_vector_as_elementwise(g, out, a, b):
    # a matrix times a vector: the outer product g b^T written as g * b
    return g * b if b.ndim == 1 else _correct("matmul", 0)(g, out, a, b)


def _matmul_b_vector_as_elementwise(g, out, a, b):
    return g * a if a.ndim == 1 else _correct("matmul", 1)(g, out, a, b)


def _matmul_b_outer_swapped(g, out, a, b):
    if a.ndim == 1 and b.ndim == 2:
        return np.multiply.outer(g, a)
    return _correct("matmul", 1)(g, out, a, b)


def _matmul_dot_ignores_upstream(g, out, a, b):
    return b if a.ndim == b.ndim == 1 else _correct("matmul", 0)(g, out, a, b)


# --- reductions and shape ops ---------------------------------------------------------------


def _sum_axis_not_reinserted(g, out, x, axis=None, keepdims=False):
    return np.broadcast_to(g, x.shape).copy()


def _mean_over_size(g, out, x, axis=None, keepdims=False):
    return _correct("sum", 0)(g, out, x, axis, keepdims) / x.size


def _mean_over_first_axis(g, out, x, axis=None, keepdims=False):
    return _correct("sum", 0)(g, out, x, axis, keepdims) / x.shape[0]


def _mean_not_divided(g, out, x, axis=None, keepdims=False):
    return _correct("sum", 0)(g, out, x, axis, keepdims)


def _max_axis_not_reinserted(g, out, x, axis=None, keepdims=False):
    return (x == out) * g


def _max_ties_to_all(g, out, x, axis=None, keepdims=False):
    # the mask of every element equal to the maximum, not divided by their count
    return (x == _expand(out, x, axis, keepdims)) * _expand(g, x, axis, keepdims)


def _max_unmasked(g, out, x, axis=None, keepdims=False):
    return _correct("sum", 0)(g, out, x, axis, keepdims)


def _first_winner(x, axes):
    """A mask of the first maximum over `axes` (np.argmax's tie-breaking)."""
    inner = tuple(range(x.ndim - len(axes), x.ndim))
    moved = np.moveaxis(x, axes, inner)
    flat = moved.reshape(moved.shape[: x.ndim - len(axes)] + (-1,))
    onehot = np.arange(flat.shape[-1]) == np.argmax(flat, axis=-1)[..., None]
    return np.moveaxis(onehot.reshape(moved.shape), inner, axes)


def _max_first_winner(g, out, x, axis=None, keepdims=False):
    return _first_winner(x, normalize_axes(axis, x.ndim)) * _expand(g, x, axis, keepdims)


def _transpose_not_inverted(g, out, x, axes=None):
    return np.transpose(g, axes)


def _transpose_reverses_all(g, out, x, axes=None):
    return np.transpose(g)


def _reshape_fortran(g, out, x, shape=None):
    return np.reshape(g, x.shape, order="F")


# --- softmax family -------------------------------------------------------------------------


def _softmax_diagonal_only(g, out, x, axis=-1):
    return g * out * (1 - out)


def _softmax_sum_everything(g, out, x, axis=-1):
    return (g - np.sum(g * out)) * out


def _log_softmax_logp_as_p(g, out, x, axis=-1):
    return g - out * np.sum(g, axis=axis, keepdims=True)


def _log_softmax_no_sum(g, out, x, axis=-1):
    return g - np.exp(out) * g


def _cross_entropy_batch_size(scores, labels):
    return scores.shape[-2]


def _cross_entropy_sign(g, out, scores, labels):
    return -_correct("softmax_cross_entropy", 0)(g, out, scores, labels)


# --- conv2d, pools, rnn ---------------------------------------------------------------------


def _conv_dw_flipped(g, out, x, w, b, **attrs):
    return np.flip(_correct("conv2d", 1)(g, out, x, w, b, **attrs), axis=(-2, -1))


def _conv_dx_kernel_flipped(g, out, x, w, b, **attrs):
    return _correct("conv2d", 0)(g, out, x, np.flip(w, axis=(-2, -1)), b, **attrs)


def _conv_db_batch_mean(g, out, x, w, b, **attrs):
    return _correct("conv2d", 2)(g, out, x, w, b, **attrs) / x.shape[0]


def _pool_scatter(g, x, size, stride, window_share, accumulate=True):
    """A plain loop over pooling windows: each window's gradient, spread by
    `window_share(window)`, added (or, when `accumulate` is off, written) back."""
    dx = np.zeros_like(x)
    for i in range(g.shape[-2]):
        for j in range(g.shape[-1]):
            rows, cols = slice(i * stride, i * stride + size), slice(j * stride, j * stride + size)
            part = window_share(x[..., rows, cols]) * g[..., i, j, None, None]
            if accumulate:
                dx[..., rows, cols] += part
            else:
                dx[..., rows, cols] = np.where(part != 0, part, dx[..., rows, cols])
    return dx


def _first_max_of_window(window):
    return _first_winner(window, (window.ndim - 2, window.ndim - 1))


def _last_max_of_window(window):
    flipped = np.flip(window, axis=(-2, -1))
    return np.flip(_first_winner(flipped, (window.ndim - 2, window.ndim - 1)), axis=(-2, -1))


def _maxpool_routes_to_all(g, out, x, size=2, stride=2):
    return _pool_scatter(g, x, size, stride, np.ones_like)


def _every_max_of_window(window):
    return window == np.max(window, axis=(-2, -1), keepdims=True)


def _maxpool_ties_to_all(g, out, x, size=2, stride=2):
    return _pool_scatter(g, x, size, stride, _every_max_of_window)


def _maxpool_overwrites_overlaps(g, out, x, size=2, stride=2):
    return _pool_scatter(g, x, size, stride, _first_max_of_window, accumulate=False)


def _maxpool_last_winner(g, out, x, size=2, stride=2):
    return _pool_scatter(g, x, size, stride, _last_max_of_window)


def _maxpool_stride_is_size(g, out, x, size=2, stride=2):
    return _correct("maxpool2d", 0)(g, out, x, size=size, stride=size)


def _avgpool_divides_by_size(g, out, x, size=2, stride=2):
    return _pool_scatter(g, x, size, stride, np.ones_like) / size


def _rnn_bptt_variant(g, out, x, h0, wx, wh, b, tanh_prime=True, carry=True, lag=1):
    """Backprop through time with one step switched off: the tanh derivative, the
    gradient carried from h_{t+1} back to h_t, or the lag of the hidden state that the
    recurrent weight saw."""
    da, dh = np.empty_like(out), np.zeros_like(h0)
    for t in reversed(range(x.shape[1])):
        da[:, t] = (g[:, t] + dh) * ((1 - out[:, t] ** 2) if tanh_prime else 1)
        dh = da[:, t] @ wh.T if carry else np.zeros_like(h0)
    dh0 = da[:, 0] @ wh.T
    prev = np.concatenate([h0[:, None], out[:, :-1]], axis=1) if lag else out
    return (
        da @ wx.T,
        dh0,
        np.tensordot(x, da, axes=([0, 1], [0, 1])),
        np.tensordot(prev, da, axes=([0, 1], [0, 1])),
        np.sum(da, axis=(0, 1)),
    )


def _rnn_pick(switches: dict, index: int, g, out, *args):
    return _rnn_bptt_variant(g, out, *args, **switches)[index]


def _rnn_rules(**switches) -> dict[int, Callable]:
    return {i: partial(_rnn_pick, switches, i) for i in range(5)}


# --- the executor ---------------------------------------------------------------------------


def _overwrite(old, new):
    return new


def _keep_first(old, new):
    return old


def _unbroadcast_mean(g, shape):
    """Reduces broadcast axes by their mean instead of their sum."""
    g = np.asarray(g)
    while g.ndim > len(shape):
        g = g.mean(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.mean(axis=axis, keepdims=True)
    return g


def _unbroadcast_leading_only(g, shape):
    """Sums the leading axes that broadcasting added, but not the size-1 axes it stretched."""
    g = np.asarray(g)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    return g


def _seeded_with_ones(graph, ops, env, wrt, cotangent):
    return backprop(graph, ops, env, wrt, np.ones_like(cotangent))


class _NeverZeroed:
    """An executor whose gradient buffers outlive a backward pass, as a training loop that
    forgets to zero them: each call returns the sum of every call so far."""

    def __init__(self):
        self.buffers: dict = {}

    def __call__(self, graph, ops, env, wrt, cotangent):
        value, grads = backprop(graph, ops, env, wrt, cotangent)
        for name, g in grads.items():
            key = (name, np.shape(g))
            self.buffers[key] = self.buffers.get(key, 0) + g
            grads[name] = np.asarray(self.buffers[key], dtype=g.dtype)
        return value, grads


# --- the table ------------------------------------------------------------------------------


def _m(op, name, description, rules=None, **kw) -> Mutant:
    return Mutant(f"{op}.{name}", op, description, rules or {}, **kw)


_E = EXECUTOR
CORPUS: dict[str, tuple[Mutant, ...]] = {
    _E: (
        _m(
            _E,
            "fanout-overwrite",
            "a value used twice keeps only the last path's gradient (= instead of +=)",
            executor=partial(backprop, combine=_overwrite),
        ),
        _m(
            _E,
            "fanout-first-wins",
            "a value used twice keeps only the first path's gradient",
            executor=partial(backprop, combine=_keep_first),
        ),
        _m(
            _E,
            "broadcast-mean",
            "broadcast axes reduced by their mean instead of their sum",
            executor=partial(backprop, reduce=_unbroadcast_mean),
        ),
        _m(
            _E,
            "broadcast-leading-only",
            "size-1 axes stretched by broadcasting are not summed back (keepdims operands)",
            executor=partial(backprop, reduce=_unbroadcast_leading_only),
        ),
        _m(
            _E,
            "seed-ones",
            "the backward pass starts from ones, ignoring the output's cotangent",
            executor=_seeded_with_ones,
        ),
        _m(
            _E,
            "never-zeroed",
            "gradient buffers are not zeroed between backward passes",
            executor=_NeverZeroed,
        ),
    ),
    "add": (
        _m(
            "add",
            "no-chain-rule",
            "d(a+b)/db taken as 1, dropping the upstream gradient",
            {1: _ones_like_upstream},
        ),
    ),
    "sub": (_m("sub", "b-sign", "d(a-b)/db taken as +1", {1: _plus_g}),),
    "mul": (_m("mul", "a-by-self", "d(a*b)/da taken as a instead of b", {0: _mul_by_self}),),
    "div": (
        _m("div", "b-sign", "d(a/b)/db missing its minus sign", {1: _div_b_positive}),
        _m("div", "b-unsquared", "d(a/b)/db = -a/b instead of -a/b^2", {1: _div_b_unsquared}),
    ),
    "pow": (
        _m(
            "pow",
            "base-exponent-kept",
            "d(a^k)/da = k a^k, the exponent not decremented",
            {0: _pow_base_same_exponent},
        ),
        _m(
            "pow",
            "exponent-no-out",
            "d(a^k)/dk = log a, without the factor a^k",
            {1: _pow_exponent_no_out},
        ),
    ),
    "maximum": (
        _m(
            "maximum",
            "to-loser",
            "maximum's gradient routed to the smaller operand",
            {0: _to_loser},
        ),
        _m(
            "maximum",
            "ties-to-a",
            "a tie gives the whole gradient to a (a valid subgradient)",
            {0: _maximum_ties_to_a},
            equivalent=True,
        ),
    ),
    "minimum": (
        _m(
            "minimum",
            "to-larger",
            "minimum's gradient routed to the larger operand",
            {0: _to_larger},
        ),
    ),
    "matmul": (
        _m(
            "matmul", "a-untransposed", "dA = G @ B instead of G @ B^T", {0: _matmul_a_untransposed}
        ),
        _m(
            "matmul",
            "b-transposed",
            "dB = (A^T G)^T: the weight gradient transposed",
            {1: _matmul_b_transposed},
        ),
        _m(
            "matmul",
            "matrix-vector-elementwise",
            "A @ v: dA written as G * v instead of the outer product",
            {0: _matmul_a_vector_as_elementwise},
        ),
        _m(
            "matmul",
            "vector-matrix-elementwise",
            "v @ B: dB written as G * v instead of the outer product",
            {1: _matmul_b_vector_as_elementwise},
        ),
        _m(
            "matmul",
            "vector-matrix-outer-swapped",
            "v @ B: dB = outer(G, v) instead of outer(v, G)",
            {1: _matmul_b_outer_swapped},
        ),
        _m(
            "matmul",
            "dot-ignores-upstream",
            "u @ v (1-d both): du = v, dropping the upstream gradient",
            {0: _matmul_dot_ignores_upstream},
        ),
    ),
    "neg": (_m("neg", "no-minus", "d(-a)/da taken as +1", {0: _plus_g}),),
    "exp": (_m("exp", "of-input", "d exp(x) taken as x instead of exp(x)", {0: _exp_of_input}),),
    "log": (_m("log", "over-out", "d log(x) = 1/log(x) instead of 1/x", {0: _log_over_out}),),
    "tanh": (
        _m("tanh", "unsquared", "tanh' = 1 - tanh instead of 1 - tanh^2", {0: _tanh_unsquared}),
    ),
    "sigmoid": (
        _m(
            "sigmoid",
            "of-input",
            "sigmoid' = x (1 - x) on the input instead of the output",
            {0: _sigmoid_of_input},
        ),
    ),
    "relu": (
        _m(
            "relu",
            "gated-by-upstream",
            "relu's mask taken from the upstream gradient instead of the input",
            {0: _relu_gated_by_upstream},
        ),
        _m(
            "relu",
            "one-at-zero",
            "relu'(0) = 1 (a valid subgradient)",
            {0: _relu_one_at_zero},
            equivalent=True,
        ),
    ),
    "abs": (
        _m("abs", "no-sign", "d|x| taken as 1, without sign(x)", {0: _abs_no_sign}),
        _m(
            "abs",
            "one-at-zero",
            "d|x| at 0 taken as 1 (a valid subgradient)",
            {0: _abs_one_at_zero},
            equivalent=True,
        ),
    ),
    "sum": (
        _m(
            "sum",
            "axis-not-reinserted",
            "the reduced axis not re-inserted before broadcasting back",
            {0: _sum_axis_not_reinserted},
        ),
    ),
    "mean": (
        _m(
            "mean",
            "over-size",
            "divided by the input's size, not the reduced count",
            {0: _mean_over_size},
        ),
        _m(
            "mean",
            "over-first-axis",
            "divided by the first axis's length, whatever the axis",
            {0: _mean_over_first_axis},
        ),
        _m(
            "mean",
            "not-divided",
            "the gradient of mean taken as that of sum",
            {0: _mean_not_divided},
        ),
    ),
    "max": (
        _m(
            "max",
            "axis-not-reinserted",
            "max's output compared with x without re-inserting the reduced axis",
            {0: _max_axis_not_reinserted},
        ),
        _m(
            "max",
            "ties-to-all",
            "a tie gives the whole gradient to every maximum (x == max, not shared among them)",
            {0: _max_ties_to_all},
        ),
        _m(
            "max",
            "unmasked",
            "max's gradient sent to every element, not the maximum",
            {0: _max_unmasked},
        ),
        _m(
            "max",
            "ties-first",
            "a tie gives the whole gradient to the first maximum (a valid subgradient)",
            {0: _max_first_winner},
            equivalent=True,
        ),
    ),
    "transpose": (
        _m(
            "transpose",
            "not-inverted",
            "the gradient permuted by axes instead of their inverse",
            {0: _transpose_not_inverted},
        ),
        _m(
            "transpose",
            "reverses-all",
            "the gradient's axes reversed, ignoring axes",
            {0: _transpose_reverses_all},
        ),
    ),
    "reshape": (
        _m(
            "reshape",
            "fortran-order",
            "the gradient reshaped in column-major order",
            {0: _reshape_fortran},
        ),
    ),
    "softmax": (
        _m(
            "softmax",
            "last-axis",
            "softmax's gradient over the last axis, whatever its axis",
            {0: _with_attrs("softmax", 0, axis=-1)},
        ),
        _m(
            "softmax",
            "diagonal-only",
            "softmax's Jacobian taken as its diagonal p (1 - p)",
            {0: _softmax_diagonal_only},
        ),
        _m(
            "softmax",
            "sum-everything",
            "the sum in J^T g taken over every axis, not the softmax axis",
            {0: _softmax_sum_everything},
        ),
    ),
    "log_softmax": (
        _m(
            "log_softmax",
            "last-axis",
            "log_softmax's gradient over the last axis, whatever its axis",
            {0: _with_attrs("log_softmax", 0, axis=-1)},
        ),
        _m(
            "log_softmax",
            "logp-as-p",
            "log p used where p belongs: g - log p sum g",
            {0: _log_softmax_logp_as_p},
        ),
        _m(
            "log_softmax",
            "no-sum",
            "the sum over classes dropped: g - p g",
            {0: _log_softmax_no_sum},
        ),
    ),
    "softmax_cross_entropy": (
        _m(
            "softmax_cross_entropy",
            "ignores-upstream",
            "the loss's gradient (p - y)/N without its upstream gradient",
            {0: _without_upstream("softmax_cross_entropy", 0)},
        ),
        _m(
            "softmax_cross_entropy",
            "no-batch-mean",
            "(p - y) not divided by the batch size",
            {0: _scaled_by("softmax_cross_entropy", 0, _cross_entropy_batch_size)},
        ),
        _m("softmax_cross_entropy", "sign", "y - p instead of p - y", {0: _cross_entropy_sign}),
    ),
    "conv2d": (
        _m(
            "conv2d",
            "dx-ignores-stride",
            "dx scattered back as if the stride were 1",
            {0: _with_attrs("conv2d", 0, stride=1)},
        ),
        _m(
            "conv2d",
            "dx-ignores-pad",
            "dx computed as if the input were not padded",
            {0: _with_attrs("conv2d", 0, pad=0)},
        ),
        _m(
            "conv2d",
            "dw-ignores-stride",
            "dw correlated as if the stride were 1",
            {1: _with_attrs("conv2d", 1, stride=1)},
        ),
        _m(
            "conv2d",
            "dw-flipped",
            "dw flipped spatially (convolution for correlation)",
            {1: _conv_dw_flipped},
        ),
        _m(
            "conv2d",
            "dx-kernel-flipped",
            "dx computed with the kernel flipped",
            {0: _conv_dx_kernel_flipped},
        ),
        _m(
            "conv2d",
            "db-batch-mean",
            "db averaged over the batch instead of summed",
            {2: _conv_db_batch_mean},
        ),
        _m(
            "conv2d",
            "dx-ignores-dilation",
            "dx scattered back as if the dilation were 1",
            {0: _with_attrs("conv2d", 0, dilation=1)},
            needs_attrs=("dilation",),
        ),
        _m(
            "conv2d",
            "dw-ignores-dilation",
            "dw correlated as if the dilation were 1",
            {1: _with_attrs("conv2d", 1, dilation=1)},
            needs_attrs=("dilation",),
        ),
        _m(
            "conv2d",
            "dx-ignores-groups",
            "dx computed as if every filter saw every channel",
            {0: _with_attrs("conv2d", 0, groups=1)},
            needs_attrs=("groups",),
        ),
    ),
    "maxpool2d": (
        _m(
            "maxpool2d",
            "routes-to-all",
            "each window's gradient sent to all its elements",
            {0: _maxpool_routes_to_all},
        ),
        _m(
            "maxpool2d",
            "ties-to-all",
            "a tie in a window gives the whole gradient to every maximum, not one of them",
            {0: _maxpool_ties_to_all},
        ),
        _m(
            "maxpool2d",
            "overlaps-overwrite",
            "overlapping windows overwrite instead of adding up",
            {0: _maxpool_overwrites_overlaps},
        ),
        _m(
            "maxpool2d",
            "stride-is-size",
            "the backward assumes stride = size",
            {0: _maxpool_stride_is_size},
        ),
        _m(
            "maxpool2d",
            "ties-last",
            "a tie in a window routed to its last maximum (a valid subgradient)",
            {0: _maxpool_last_winner},
            equivalent=True,
        ),
    ),
    "rnn": (
        _m(
            "rnn",
            "no-tanh-prime",
            "BPTT without the tanh derivative 1 - h^2",
            _rnn_rules(tanh_prime=False),
        ),
        _m(
            "rnn",
            "no-carry",
            "dh not carried from h_{t+1} back to h_t (truncated BPTT)",
            _rnn_rules(carry=False),
        ),
        _m("rnn", "dwh-same-step", "dwh paired with h_t instead of h_{t-1}", _rnn_rules(lag=0)),
    ),
    # --- the second vocabulary ---
    "sqrt": (_m("sqrt", "no-half", "d sqrt(x) = 1/sqrt(x), the 1/2 dropped", {0: _sqrt_no_half}),),
    "square": (_m("square", "no-two", "d x^2 = x, the 2 dropped", {0: _square_no_two}),),
    "sin": (_m("sin", "of-out", "d sin(x) = cos(sin x), cos of the output", {0: _sin_of_out}),),
    "cos": (_m("cos", "no-minus", "d cos(x) = sin(x), the minus dropped", {0: _cos_no_minus}),),
    "log1p": (_m("log1p", "no-one", "d log(1+x) = 1/x", {0: _log1p_no_one}),),
    "softplus": (
        _m(
            "softplus", "sign", "softplus' = sigmoid(-x) instead of sigmoid(x)", {0: _softplus_sign}
        ),
    ),
    "gelu": (
        _m(
            "gelu", "no-density", "gelu' = Phi(x), the x phi(x) term dropped", {0: _gelu_no_density}
        ),
    ),
    "leaky_relu": (
        _m(
            "leaky_relu",
            "no-slope",
            "the negative side's slope dropped (relu's rule)",
            {0: _leaky_relu_no_slope},
        ),
    ),
    "elu": (
        _m(
            "elu",
            "no-alpha",
            "elu' = out on the negative side, instead of out + alpha",
            {0: _elu_no_alpha},
        ),
    ),
    "clip": (
        _m(
            "clip",
            "passes-all",
            "clip's gradient not zeroed outside the bounds",
            {0: _clip_passes_all},
        ),
    ),
    "min": (
        _m(
            "min",
            "routes-to-max",
            "min's gradient sent to the maximum (copied from max)",
            {0: _min_routes_to_max},
        ),
    ),
    "var": (
        _m("var", "no-two", "d var = (x - mean)/n, the 2 dropped", {0: _var_no_two}),
        _m("var", "not-centered", "d var = 2x/n, the mean not subtracted", {0: _var_not_centered}),
        _m("var", "ddof-one", "divided by n - 1 (the sample variance's count)", {0: _var_ddof_one}),
    ),
    "logsumexp": (
        _m(
            "logsumexp",
            "unnormalised",
            "d logsumexp = exp(x), not softmax(x)",
            {0: _logsumexp_unnormalised},
        ),
        _m(
            "logsumexp",
            "last-axis",
            "the softmax taken over the last axis, whatever the axis",
            {0: _logsumexp_last_axis},
        ),
    ),
    "avgpool2d": (
        _m(
            "avgpool2d",
            "divides-by-size",
            "each window's gradient divided by size, not size^2",
            {0: _avgpool_divides_by_size},
        ),
    ),
    "einsum": (
        _m(
            "einsum",
            "sorted-letters",
            "an operand's gradient written in alphabetical letter order, not its own (transposed)",
            {0: _einsum_sorted_letters},
        ),
    ),
    "index": (
        _m(
            "index",
            "first-elements",
            "the picked gradient written to x's first elements, not where the key picked",
            {0: _index_to_first_elements},
        ),
    ),
    "concat": (
        _m(
            "concat",
            "equal-parts",
            "the gradient split into equal parts, whatever each operand's size",
            {0: _concat_equal_parts},
        ),
        _m(
            "concat",
            "axis-0",
            "the gradient split along axis 0, whatever the axis",
            {0: _concat_axis0},
        ),
    ),
    "stack": (
        _m(
            "stack",
            "axis-0",
            "each operand's gradient taken along axis 0, whatever the axis",
            {0: _stack_axis0},
        ),
    ),
    "expand_dims": (
        _m(
            "expand_dims",
            "squeeze-all",
            "np.squeeze(g) without the axis: other size-1 axes lost too",
            {0: _expand_dims_squeeze_all},
        ),
    ),
    "squeeze": (
        _m(
            "squeeze",
            "axes-at-end",
            "the squeezed axes put back at the end, not where they were",
            {0: _squeeze_axes_at_end},
        ),
    ),
    "take": (
        _m(
            "take",
            "overwrite-repeats",
            "a repeated index keeps one gradient (dx[idx] = g, not np.add.at)",
            {0: _take_overwrites_repeats},
        ),
    ),
    "take_along_axis": (
        _m(
            "take_along_axis",
            "overwrite-repeats",
            "np.put_along_axis: a repeated index keeps one gradient",
            {0: _take_along_axis_overwrites},
        ),
    ),
    "batchnorm": (
        _m(
            "batchnorm",
            "dx-constant-stats",
            "dx without the paths through the batch mean and variance",
            {0: _batchnorm_dx_constant_stats},
        ),
        _m(
            "batchnorm",
            "dgamma-raw-x",
            "dgamma = sum(g x) instead of sum(g xhat)",
            {1: _batchnorm_dgamma_raw_x},
        ),
        _m(
            "batchnorm",
            "dbeta-mean",
            "dbeta averaged over the batch, not summed",
            {2: _batchnorm_dbeta_mean},
        ),
    ),
    "layernorm": (
        _m(
            "layernorm",
            "dx-batch-axis",
            "batch norm's backward pasted in: sums over the batch axis",
            {0: _layernorm_dx_batch_axis},
        ),
        _m(
            "layernorm",
            "dx-constant-stats",
            "dx without the paths through the mean and variance",
            {0: _layernorm_dx_constant_stats},
        ),
    ),
    "lstm": (
        _m(
            "lstm",
            "dc0-dropped",
            "the cell state's gradient not carried back to c0",
            {2: _zeros_for(2)},
        ),
        _m(
            "lstm",
            "torch-gate-order",
            "weight gradients laid out i, f, g, o against a forward that reads i, f, o, g",
            {i: _lstm_torch_gate_order(i) for i in (3, 4, 5)},
        ),
    ),
}


def tangent_mutants() -> list[Mutant]:
    """Per op, a sign error in the tangent rule of its first differentiable argument: a
    wrong JVP beside right VJPs, which only forward mode (and its dot-product test) sees."""
    return [
        Mutant(
            f"{op}.tangent-sign",
            op,
            f"the tangent rule of argument {index + 1} returns minus its contribution",
            tangents={index: partial(_negated_tangent, op, index)},
        )
        for op, prim in sorted(reference_impls.OPS.items())
        if (index := _first_tangent(prim)) is not None
    ]


def _first_tangent(prim) -> int | None:
    return next((i for i, rule in enumerate(prim.tangents) if rule is not None), None)


def _negated_tangent(op: str, index: int, *args, **attrs):
    rule = reference_impls.OPS[op].tangents[index]
    assert rule is not None  # chosen by `_first_tangent`
    return -rule(*args, **attrs)


def all_mutants() -> list[Mutant]:
    return [m for mutants in CORPUS.values() for m in mutants] + tangent_mutants()
