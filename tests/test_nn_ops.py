"""The neural-network ops on all three tables: softmax, log_softmax, softmax_cross_entropy,
conv2d (with dilation and groups), maxpool2d, avgpool2d, batchnorm, layernorm, rnn, lstm.

Hand-worked numbers first (numpy forward and every gradient rule), then the numpy backprop
of a one-op graph against torch autograd on seeded float64 inputs, then the jax table
against torch, then deliberately broken gradient rules that the same comparison must catch.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
jax.config.update("jax_enable_x64", True)  # before any jax array is made
import jax.numpy as jnp  # noqa: E402

import reference_impls  # noqa: E402
from gradcheck.engines import jax_ops, torch_ops  # noqa: E402
from gradcheck.ir.graph import FLOAT, INT, Leaf, build_graph  # noqa: E402
from reference_impls import Primitive  # noqa: E402

NP = reference_impls.OPS
RTOL = 1e-10
ATOL = 1e-12


# --- helpers ------------------------------------------------------------------------------


def rel_err(a, b) -> float:
    """Worst |a - b| / (atol + rtol * max(|a|, |b|)); at most 1 means close."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = ATOL + RTOL * np.maximum(np.abs(a), np.abs(b))
    return float(np.max(np.abs(a - b) / scale, initial=0.0))


def assert_close(a, b, what: str) -> None:
    assert np.shape(a) == np.shape(b), f"{what}: shape {np.shape(a)} != {np.shape(b)}"
    ratio = rel_err(a, b)
    assert ratio <= 1, f"{what}: tolerance ratio {ratio:.3g} (rtol {RTOL}, atol {ATOL})"


def leaf(name, array) -> Leaf:
    kind = INT if np.issubdtype(np.asarray(array).dtype, np.integer) else FLOAT
    return Leaf(name, np.shape(array), kind)


def call_text(op, names, attrs) -> str:
    kwargs = [f"{k}={v}" for k, v in attrs.items()]
    return f"{op}({', '.join(list(names) + kwargs)})"


def numpy_vjp(op, inputs, attrs, cot, wrt, ops=NP):
    """Our backprop over a one-op graph built from the expression language."""
    graph = build_graph(
        [("out", call_text(op, inputs, attrs))], {k: leaf(k, v) for k, v in inputs.items()}
    )
    env = {**inputs, **{k: np.asarray(v, dtype=np.float64) for k, v in graph.consts.items()}}
    value, grads = reference_impls.backprop(graph, ops, env, wrt, cot)
    return value, [grads[w] for w in wrt]


def torch_vjp(op, inputs, attrs, cot, wrt):
    tensors = {k: torch.tensor(v, requires_grad=k in wrt) for k, v in inputs.items()}
    out = torch_ops.OPS[op](*tensors.values(), **attrs)
    grads = torch.autograd.grad(out, [tensors[w] for w in wrt], torch.tensor(cot))
    return out.detach().numpy(), [g.numpy() for g in grads]


def jax_vjp(op, inputs, attrs, cot, wrt):
    fixed = {k: jnp.asarray(v) for k, v in inputs.items() if k not in wrt}

    def f(*arrays):
        env = {**fixed, **dict(zip(wrt, arrays))}
        return jax_ops.OPS[op](*(env[k] for k in inputs), **attrs)

    out, pullback = jax.vjp(f, *(jnp.asarray(inputs[w]) for w in wrt))
    return np.asarray(out), [np.asarray(g) for g in pullback(jnp.asarray(cot))]


def rule(op, i, g, *args, **attrs):
    """Apply one gradient rule of the numpy table directly (forward recomputed for `out`)."""
    prim = NP[op]
    return prim.grads[i](
        np.asarray(g, dtype=np.float64), prim.forward(*args, **attrs), *args, **attrs
    )


# --- seeded random cases --------------------------------------------------------------------


def _rng(seed):
    return np.random.default_rng(seed)


def _normal(seed, *shape, scale=1.0):
    return scale * _rng(seed).standard_normal(shape)


def _case(op, inputs, **attrs):
    wrt = [k for k, v in inputs.items() if np.issubdtype(v.dtype, np.floating)]
    return op, inputs, attrs, wrt


def _conv(seed, x_shape, w_shape, **attrs):
    return _case(
        "conv2d",
        {
            "x": _normal(seed, *x_shape),
            "w": _normal(seed + 1, *w_shape, scale=0.3),
            "b": _normal(seed + 2, w_shape[0]),
        },
        **attrs,
    )


def _rnn(seed, n, t, d, h):
    return _case(
        "rnn",
        {
            "x": _normal(seed, n, t, d),
            "h0": _normal(seed + 1, n, h),
            "wx": _normal(seed + 2, d, h, scale=0.5),
            "wh": _normal(seed + 3, h, h, scale=0.5),
            "b": _normal(seed + 4, h),
        },
    )


def _lstm(seed, n, t, d, h):
    return _case(
        "lstm",
        {
            "x": _normal(seed, n, t, d),
            "h0": _normal(seed + 1, n, h),
            "c0": _normal(seed + 2, n, h),
            "wx": _normal(seed + 3, d, 4 * h, scale=0.5),
            "wh": _normal(seed + 4, h, 4 * h, scale=0.5),
            "b": _normal(seed + 5, 4 * h),
        },
    )


def _norm(op, seed, x_shape, features, **attrs):
    return _case(
        op,
        {
            "x": _normal(seed, *x_shape, scale=2),
            "gamma": _normal(seed + 1, features),
            "beta": _normal(seed + 2, features),
        },
        **attrs,
    )


CASES = {
    "softmax-rows": _case("softmax", {"x": _normal(0, 3, 5, scale=3)}),
    "softmax-axis1": _case("softmax", {"x": _normal(1, 4, 3, 2)}, axis=1),
    "softmax-axis0": _case("softmax", {"x": _normal(2, 4, 3)}, axis=0),
    "log_softmax-rows": _case("log_softmax", {"x": _normal(3, 3, 5, scale=3)}),
    "log_softmax-axis1": _case("log_softmax", {"x": _normal(4, 4, 3, 2)}, axis=1),
    "cross_entropy": _case(
        "softmax_cross_entropy",
        {"scores": _normal(5, 6, 4, scale=2), "labels": _rng(6).integers(0, 4, 6)},
    ),
    "conv-s1-p0": _conv(10, (2, 3, 7, 9), (4, 3, 3, 2), stride=1, pad=0),
    "conv-s1-p1": _conv(20, (2, 3, 7, 9), (4, 3, 3, 2), stride=1, pad=1),
    "conv-s2-p0": _conv(30, (2, 3, 7, 9), (4, 3, 3, 2), stride=2, pad=0),
    "conv-s2-p1": _conv(40, (2, 3, 8, 8), (5, 3, 3, 3), stride=2, pad=1),
    "conv-s2-p1-wide": _conv(45, (2, 3, 7, 9), (4, 3, 2, 3), stride=2, pad=1),
    "conv-1x1": _conv(50, (3, 2, 4, 5), (6, 2, 1, 1)),
    "maxpool-2-2": _case("maxpool2d", {"x": _normal(60, 2, 3, 6, 8)}, size=2, stride=2),
    "maxpool-3-2": _case("maxpool2d", {"x": _normal(61, 2, 3, 7, 9)}, size=3, stride=2),
    "maxpool-odd": _case("maxpool2d", {"x": _normal(62, 1, 2, 5, 7)}, size=2, stride=2),
    "rnn-T1": _rnn(70, 3, 1, 4, 5),
    "rnn-T5": _rnn(80, 3, 5, 4, 5),
    "conv-dilated": _conv(90, (2, 3, 9, 8), (4, 3, 3, 2), stride=1, pad=2, dilation=2),
    "conv-groups": _conv(95, (2, 4, 7, 6), (6, 2, 3, 3), stride=2, pad=1, groups=2),
    "conv-depthwise": _conv(100, (3, 3, 6, 5), (3, 1, 2, 3), stride=1, pad=1, dilation=2, groups=3),
    "avgpool-2-2": _case("avgpool2d", {"x": _normal(105, 2, 3, 6, 8)}, size=2, stride=2),
    "avgpool-3-2": _case("avgpool2d", {"x": _normal(106, 2, 3, 7, 9)}, size=3, stride=2),
    "batchnorm-2d": _norm("batchnorm", 110, (6, 4), 4),
    "batchnorm-spatial": _norm("batchnorm", 115, (2, 3, 4, 5), 3, eps=1e-3),
    "layernorm-2d": _norm("layernorm", 120, (4, 7), 7),
    "layernorm-3d": _norm("layernorm", 125, (2, 3, 5), 5, eps=1e-3),
    "lstm-T1": _lstm(130, 3, 1, 4, 2),
    "lstm-T5": _lstm(140, 2, 5, 3, 4),
}


def cotangent(op, inputs, attrs, seed=99):
    shape = np.shape(NP[op].forward(*inputs.values(), **attrs))
    return _normal(seed, *shape)


# --- hand-worked examples -----------------------------------------------------------------

LN2 = math.log(2)


def test_softmax_hand():
    x = np.array([0.0, LN2])
    np.testing.assert_allclose(NP["softmax"].forward(x), [1 / 3, 2 / 3], rtol=1e-14)
    # g = e_0: (g - p.g) p = (1 - 1/3, -1/3) * (1/3, 2/3)
    np.testing.assert_allclose(rule("softmax", 0, [1.0, 0.0], x), [2 / 9, -2 / 9], rtol=1e-14)
    # the Jacobian's rows sum to zero: a constant cotangent has no effect
    np.testing.assert_allclose(rule("softmax", 0, [5.0, 5.0], x), [0, 0], atol=1e-15)


def test_softmax_axis_and_stability():
    x = np.array([[0.0, 1000.0], [LN2, 1000.0]])  # softmax down each column
    np.testing.assert_allclose(
        NP["softmax"].forward(x, axis=0), [[1 / 3, 0.5], [2 / 3, 0.5]], rtol=1e-14
    )
    big = np.array([1000.0, 1000.0 + LN2])  # exp(1000) would overflow
    np.testing.assert_allclose(NP["softmax"].forward(big), [1 / 3, 2 / 3], rtol=1e-12)
    np.testing.assert_allclose(
        NP["log_softmax"].forward(-big), [math.log(2 / 3), math.log(1 / 3)], rtol=1e-12
    )


def test_log_softmax_hand():
    x = np.array([0.0, LN2])
    np.testing.assert_allclose(
        NP["log_softmax"].forward(x), [math.log(1 / 3), math.log(2 / 3)], rtol=1e-14
    )
    # g - p * sum(g) with g = e_0
    np.testing.assert_allclose(rule("log_softmax", 0, [1.0, 0.0], x), [2 / 3, -2 / 3], rtol=1e-14)


def test_cross_entropy_hand():
    n, c = 2, 3
    scores, labels = np.zeros((n, c)), np.array([0, 2])
    assert NP["softmax_cross_entropy"].forward(scores, labels) == pytest.approx(math.log(c), 1e-14)
    onehot = np.array([[1.0, 0, 0], [0, 0, 1]])
    np.testing.assert_allclose(
        rule("softmax_cross_entropy", 0, 1.0, scores, labels), (1 / c - onehot) / n, rtol=1e-14
    )
    # the upstream gradient scales the whole thing
    np.testing.assert_allclose(
        rule("softmax_cross_entropy", 0, 3.0, scores, labels), 3 * (1 / c - onehot) / n, rtol=1e-14
    )
    # p = (1/3, 2/3) and the label is class 1: -log(2/3)
    one = NP["softmax_cross_entropy"].forward(np.array([[0.0, LN2]]), np.array([1]))
    assert one == pytest.approx(math.log(1.5), rel=1e-14)
    assert NP["softmax_cross_entropy"].grads[1] is None  # labels are data


def test_conv2d_hand():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w = np.array([[[[1.0, 0.0], [0.0, -1.0]]]])  # x[i, j] - x[i+1, j+1]
    b = np.array([0.5])
    np.testing.assert_allclose(NP["conv2d"].forward(x, w, b), np.full((1, 1, 2, 2), -3.5))
    g = np.ones((1, 1, 2, 2))
    np.testing.assert_allclose(
        rule("conv2d", 0, g, x, w, b)[0, 0], [[1, 1, 0], [1, 0, -1], [0, -1, -1]]
    )
    # dw[a, b] = sum of the 2x2 block of x starting at (a, b)
    np.testing.assert_allclose(rule("conv2d", 1, g, x, w, b)[0, 0], [[8, 12], [20, 24]])
    np.testing.assert_allclose(rule("conv2d", 2, g, x, w, b), [4.0])


def test_conv2d_hand_stride_pad():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    w, b = np.ones((1, 1, 3, 3)), np.zeros(1)
    out = NP["conv2d"].forward(x, w, b, stride=2, pad=1)  # windows centred on the corners
    np.testing.assert_allclose(out[0, 0], [[8, 12], [20, 24]])
    # each pixel's gradient counts the windows that cover it
    dx = rule("conv2d", 0, np.ones((1, 1, 2, 2)), x, w, b, stride=2, pad=1)
    np.testing.assert_allclose(dx[0, 0], np.outer([1, 2, 1], [1, 2, 1]))
    # padding contributes zeros: dw is the sum of x under each kernel tap
    dw = rule("conv2d", 1, np.ones((1, 1, 2, 2)), x, w, b, stride=2, pad=1)
    np.testing.assert_allclose(dw[0, 0], [[4, 8, 4], [8, 16, 8], [4, 8, 4]])


POOL_X = np.array([[1.0, 5, 2, 0], [3, 4, 8, 1], [0, 2, 7, 6], [9, 1, 3, 5]]).reshape(1, 1, 4, 4)


def test_maxpool2d_hand():
    np.testing.assert_allclose(NP["maxpool2d"].forward(POOL_X)[0, 0], [[5, 8], [9, 7]])
    dx = rule("maxpool2d", 0, np.array([[[[1.0, 2], [3, 4]]]]), POOL_X)
    want = np.zeros((4, 4))
    want[0, 1], want[1, 2], want[3, 0], want[2, 2] = 1, 2, 3, 4
    np.testing.assert_allclose(dx[0, 0], want)


def test_maxpool2d_overlapping_windows_accumulate():
    out = NP["maxpool2d"].forward(POOL_X, size=3, stride=1)
    np.testing.assert_allclose(out[0, 0], [[8, 8], [9, 8]])
    dx = rule("maxpool2d", 0, np.ones((1, 1, 2, 2)), POOL_X, size=3, stride=1)
    want = np.zeros((4, 4))
    want[1, 2], want[3, 0] = 3, 1  # the 8 wins three windows
    np.testing.assert_allclose(dx[0, 0], want)


def test_maxpool2d_ties_go_to_first_argmax_like_torch_and_jax():
    x = np.array([[1.0, 2, 2], [0, 2, 1], [2, 0, 0]]).reshape(1, 1, 3, 3)
    for size, stride in [(2, 1), (3, 1), (2, 2)]:
        cot = np.ones(np.shape(NP["maxpool2d"].forward(x, size=size, stride=stride)))
        attrs = {"size": size, "stride": stride}
        mine = rule("maxpool2d", 0, cot, x, **attrs)
        assert mine.sum() == cot.sum()  # the whole gradient, once per window
        for other in (torch_vjp, jax_vjp):
            _, (theirs,) = other("maxpool2d", {"x": x}, attrs, cot, ["x"])
            np.testing.assert_array_equal(mine, theirs)


def test_rnn_hand():
    x, h0 = np.array([[[0.5]]]), np.array([[0.0]])
    wx, wh, b = np.array([[2.0]]), np.array([[3.0]]), np.array([0.0])
    h1 = math.tanh(1.0)
    assert NP["rnn"].forward(x, h0, wx, wh, b)[0, 0, 0] == pytest.approx(h1, rel=1e-15)
    da = 1 - h1**2  # dtanh at the only step
    grads = [rule("rnn", i, [[[1.0]]], x, h0, wx, wh, b).item() for i in range(5)]
    assert grads == pytest.approx([2 * da, 3 * da, 0.5 * da, 0.0, da], rel=1e-14)
    # two steps: h2 = tanh(3 h1) with x_2 = 0
    x2 = np.array([[[0.5], [0.0]]])
    np.testing.assert_allclose(
        NP["rnn"].forward(x2, h0, wx, wh, b)[0, :, 0], [h1, math.tanh(3 * h1)], rtol=1e-15
    )
    # d h2 / d x_1 = (1 - h2^2) * 3 * (1 - h1^2) * 2: the gradient went back through time
    dx = rule("rnn", 0, [[[0.0], [1.0]]], x2, h0, wx, wh, b)
    dh2 = 1 - math.tanh(3 * h1) ** 2
    np.testing.assert_allclose(dx[0, :, 0], [dh2 * 3 * da * 2, dh2 * 2], rtol=1e-14)


def test_rnn_single_step_is_one_tanh_layer():
    _op, inputs, _attrs, _wrt = CASES["rnn-T1"]
    x, h0, wx, wh, b = inputs.values()
    want = np.tanh(x[:, 0] @ wx + h0 @ wh + b)
    # the forward adds the three terms in another order: equal up to rounding
    np.testing.assert_allclose(NP["rnn"].forward(x, h0, wx, wh, b)[:, 0], want, rtol=1e-14)


def test_avgpool2d_hand():
    np.testing.assert_allclose(
        NP["avgpool2d"].forward(POOL_X)[0, 0], [[13 / 4, 11 / 4], [12 / 4, 21 / 4]]
    )
    # overlapping 3 x 3 windows, stride 1: each pixel gets 1/9 per window covering it
    dx = rule("avgpool2d", 0, np.ones((1, 1, 2, 2)), POOL_X, size=3, stride=1)
    np.testing.assert_allclose(dx[0, 0] * 9, np.outer([1, 2, 2, 1], [1, 2, 2, 1]))


def test_batchnorm_hand_and_invariances():
    x, gamma, beta = np.array([[1.0], [3.0]]), np.array([2.0]), np.array([0.5])
    # mean 2, biased variance 1, eps 3: 1 / sqrt(1 + 3) = 0.5
    np.testing.assert_allclose(NP["batchnorm"].forward(x, gamma, beta, eps=3.0), [[-0.5], [1.5]])
    g = np.array([[1.0], [3.0]])
    np.testing.assert_allclose(rule("batchnorm", 0, g, x, gamma, beta, eps=3.0), [[-0.75], [0.75]])
    np.testing.assert_allclose(rule("batchnorm", 1, g, x, gamma, beta, eps=3.0), [1.0])
    np.testing.assert_allclose(rule("batchnorm", 2, g, x, gamma, beta, eps=3.0), [4.0])
    # shifting a channel or scaling it (eps aside) changes nothing: dx sums to zero per
    # channel and is orthogonal to the channel's values
    op, inputs, attrs, _ = CASES["batchnorm-spatial"]
    x = inputs["x"]
    dx = rule(op, 0, _normal(7, *x.shape), *inputs.values(), **attrs)
    np.testing.assert_allclose(dx.sum(axis=(0, 2, 3)), 0, atol=1e-12)


def test_layernorm_normalises_each_row():
    op, inputs, attrs, _ = CASES["layernorm-3d"]
    ones, zeros = np.ones(5), np.zeros(5)
    out = NP["layernorm"].forward(inputs["x"], ones, zeros, eps=0.0 + 1e-12)
    np.testing.assert_allclose(out.mean(axis=-1), 0, atol=1e-12)
    np.testing.assert_allclose(out.var(axis=-1), 1, rtol=1e-9)
    dx = rule(op, 0, _normal(8, 2, 3, 5), *inputs.values(), **attrs)
    np.testing.assert_allclose(dx.sum(axis=-1), 0, atol=1e-12)


def test_lstm_hand_one_step():
    zeros4 = np.zeros((1, 4))
    args = (np.ones((1, 1, 1)), np.zeros((1, 1)), np.array([[1.0]]), zeros4, zeros4, np.zeros(4))
    # every pre-activation 0: i = f = o = 1/2, g = 0, c = c0 / 2, h = tanh(c) / 2
    assert NP["lstm"].forward(*args).item() == pytest.approx(0.5 * math.tanh(0.5), rel=1e-15)
    grads = [rule("lstm", k, [[[1.0]]], *args) for k in range(6)]
    dc = 0.5 * (1 - math.tanh(0.5) ** 2)
    # da = (di, df, do, dg) = (dc g i', dc c0 f', tanh(c) o', dc i g') with s' = 1/4, tanh' = 1
    da = [0.0, dc * 0.25, math.tanh(0.5) * 0.25, dc * 0.5]
    np.testing.assert_allclose(grads[3], [da], rtol=1e-14)  # dwx = x da
    np.testing.assert_allclose(grads[5], da, rtol=1e-14)  # db
    assert grads[2].item() == pytest.approx(dc * 0.5, rel=1e-14)  # dc0 = dc f


def test_lstm_single_step_matches_the_cell_formula():
    _op, inputs, _attrs, _wrt = CASES["lstm-T1"]
    x, h0, c0, wx, wh, b = inputs.values()
    a = x[:, 0] @ wx + h0 @ wh + b
    i, f, o, g = np.split(a, 4, axis=1)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    c = sig(f) * c0 + sig(i) * np.tanh(g)
    np.testing.assert_allclose(
        NP["lstm"].forward(*inputs.values())[:, 0], sig(o) * np.tanh(c), rtol=1e-14
    )


# --- numpy backprop vs torch autograd, jax vs torch ---------------------------------------


def _check(name, engine_a, engine_b, labels):
    op, inputs, attrs, wrt = CASES[name]
    cot = cotangent(op, inputs, attrs)
    value_a, grads_a = engine_a(op, inputs, attrs, cot, wrt)
    value_b, grads_b = engine_b(op, inputs, attrs, cot, wrt)
    assert_close(value_a, value_b, f"{name} forward, {labels}")
    for w, ga, gb in zip(wrt, grads_a, grads_b):
        assert_close(ga, gb, f"{name} d/d{w}, {labels}")


@pytest.mark.parametrize("name", sorted(CASES))
def test_numpy_matches_torch(name):
    _check(name, numpy_vjp, torch_vjp, "numpy vs torch")


@pytest.mark.parametrize("name", sorted(CASES))
def test_jax_matches_torch(name):
    _check(name, jax_vjp, torch_vjp, "jax vs torch")


def test_numpy_forwards_keep_float32():
    for name, (op, inputs, attrs, wrt) in CASES.items():
        cast = {k: v.astype(np.float32) if k in wrt else v for k, v in inputs.items()}
        assert NP[op].forward(*cast.values(), **attrs).dtype == np.float32, name


def test_numpy_forwards_tolerate_leading_dims():
    # the batched finite differences will stack perturbed inputs on a new leading axis
    for name, (op, inputs, attrs, wrt) in CASES.items():
        if attrs.get("axis", -1) >= 0:  # counts from the front: moves
            continue
        first = wrt[0]
        stacked = np.stack([inputs[first], 2 * inputs[first]])
        batched = NP[op].forward(
            *(stacked if k == first else v for k, v in inputs.items()), **attrs
        )
        for i, scale in enumerate([1, 2]):
            one = {**inputs, first: scale * inputs[first]}
            np.testing.assert_allclose(
                batched[i], NP[op].forward(*one.values(), **attrs), rtol=1e-13, err_msg=name
            )


def test_engines_agree_on_a_small_network():
    from gradcheck.engines.jax_engine import JaxEngine
    from gradcheck.engines.numpy_engine import NumpyEngine
    from gradcheck.engines.torch_engine import TorchEngine

    inputs = {
        "x": _normal(1, 2, 3, 8, 8),
        "w": _normal(2, 4, 3, 3, 3, scale=0.3),
        "b": _normal(3, 4),
        "w2": _normal(4, 64, 5, scale=0.2),
        "y": np.array([1, 4]),
        "h0": _normal(5, 2, 6),
        "wx": _normal(6, 4, 6, scale=0.3),
        "wh": _normal(7, 6, 6, scale=0.3),
    }
    steps = [
        ("c", "relu(conv2d(x, w, b, stride=1, pad=1))"),
        ("p", "maxpool2d(c, size=2, stride=2)"),  # 2 x 4 x 4 x 4
        ("s", "reshape(p, shape=[2, 64]) @ w2"),
        # p summed over width as a 4-step sequence; wh fans out into the bias
        ("r", "rnn(transpose(sum(p, axis=3), axes=[0, 2, 1]), h0, wx, wh, sum(wh, axis=0))"),
        ("loss", "softmax_cross_entropy(s, y) + sum(log_softmax(r, axis=1) * softmax(r))"),
    ]
    graph = build_graph(steps, {k: leaf(k, v) for k, v in inputs.items()})
    wrt = [k for k in inputs if k != "y"]
    results = [
        as_pair(e.vjp(graph, inputs, wrt, np.array(1.0)))
        for e in (NumpyEngine(), TorchEngine(), JaxEngine())
    ]
    for name, (value, grads) in zip(["torch", "jax"], results[1:]):
        assert_close(results[0][0], value, f"network forward, numpy vs {name}")
        for w in wrt:
            assert_close(results[0][1][w], grads[w], f"network d/d{w}, numpy vs {name}")


def as_pair(output):
    return output.value, output.grads


# --- broken rules are caught --------------------------------------------------------------


def _scaled(good):
    return lambda *args, **attrs: 1.1 * good(*args, **attrs)


def _flipped_kernel(g, out, x, w, b, **attrs):  # convolution, not correlation
    return NP["conv2d"].grads[1](g, out, x, w, b, **attrs)[..., ::-1, ::-1]


def _softmax_no_centering(g, out, x, axis=-1):  # forgot the -p.g term
    return g * out


def _pool_spread(g, out, x, size=2, stride=2):  # average-pool backward instead
    dx = np.zeros_like(x)
    for i in range(g.shape[2]):
        for j in range(g.shape[3]):
            window = np.s_[:, :, i * stride : i * stride + size, j * stride : j * stride + size]
            dx[window] += g[:, :, i, j, None, None] / size**2
    return dx


def _ce_no_mean(g, out, scores, labels):  # sum over the batch, not mean
    return scores.shape[0] * NP["softmax_cross_entropy"].grads[0](g, out, scores, labels)


def _rnn_truncated(g, out, x, h0, wx, wh, b):  # dh not carried back through time
    da = g * (1 - out**2)
    return da @ wx.T


def _batchnorm_no_mean_path(g, out, x, gamma, beta, eps=1e-5):  # forgot x's path via mu
    axes = (0,) if x.ndim == 2 else (0, 2, 3)
    xhat = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    dxhat = g * gamma
    return (dxhat - xhat * np.mean(dxhat * xhat, axis=axes, keepdims=True)) / np.sqrt(
        x.var(axis=axes, keepdims=True) + eps
    )


def _lstm_torch_gate_order(dout, out, x, h0, c0, wx, wh, b):  # i, f, g, o blocks swapped
    dwx = NP["lstm"].grads[3](dout, out, x, h0, c0, wx, wh, b)
    i, f, o, g = np.split(dwx, 4, axis=1)
    return np.concatenate([i, f, g, o], axis=1)


# (case, argument index, broken rule); every differentiable argument gets a scaled rule
MUTANTS = [
    (name, i, "scaled", None)
    for name, i in [
        ("softmax-rows", 0),
        ("log_softmax-rows", 0),
        ("cross_entropy", 0),
        ("conv-s2-p1", 0),
        ("conv-s2-p1", 1),
        ("conv-s2-p1", 2),
        ("maxpool-3-2", 0),
        ("rnn-T5", 0),
        ("rnn-T5", 1),
        ("rnn-T5", 2),
        ("rnn-T5", 3),
        ("rnn-T5", 4),
        ("conv-groups", 0),
        ("conv-groups", 1),
        ("conv-dilated", 1),
        ("avgpool-3-2", 0),
        ("batchnorm-spatial", 0),
        ("batchnorm-spatial", 1),
        ("batchnorm-spatial", 2),
        ("layernorm-3d", 0),
        ("layernorm-3d", 1),
        ("layernorm-3d", 2),
        ("lstm-T5", 0),
        ("lstm-T5", 1),
        ("lstm-T5", 2),
        ("lstm-T5", 3),
        ("lstm-T5", 4),
        ("lstm-T5", 5),
    ]
] + [
    ("batchnorm-2d", 0, "no path through the mean", _batchnorm_no_mean_path),
    ("lstm-T5", 3, "torch gate order", _lstm_torch_gate_order),
    ("conv-s1-p1", 1, "flipped kernel", _flipped_kernel),
    ("softmax-axis1", 0, "no centering", _softmax_no_centering),
    ("maxpool-2-2", 0, "spread over window", _pool_spread),
    ("cross_entropy", 0, "sum not mean", _ce_no_mean),
    ("rnn-T5", 0, "truncated bptt", _rnn_truncated),
]


@pytest.mark.parametrize(
    "name, i, kind, broken",
    MUTANTS,
    ids=[f"{m[0]}-arg{m[1]}-{m[2].replace(' ', '_')}" for m in MUTANTS],
)
def test_broken_rule_is_detected(name, i, kind, broken):
    op, inputs, attrs, wrt = CASES[name]
    prim = NP[op]
    rules = list(prim.grads)
    rules[i] = _scaled(rules[i]) if broken is None else broken
    mutant = {**NP, op: Primitive(prim.forward, tuple(rules))}
    cot = cotangent(op, inputs, attrs)
    _, bad = numpy_vjp(op, inputs, attrs, cot, wrt, ops=mutant)
    _, good = torch_vjp(op, inputs, attrs, cot, wrt)
    param = list(inputs)[i]
    k = wrt.index(param)
    assert rel_err(bad[k], good[k]) > 1e6  # off by far more than rounding
    with pytest.raises(AssertionError, match=f"d/d{param}"):
        assert_close(bad[k], good[k], f"{name} d/d{param}")
    for j, w in enumerate(wrt):  # the other arguments are untouched
        if j != k:
            assert_close(bad[j], good[j], f"{name} d/d{w}")
