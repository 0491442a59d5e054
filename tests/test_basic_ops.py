"""Each elementwise, reduction and shape op on each engine, against hand-derived gradients.

Every op is a one-step graph built from the expression language; each engine's `vjp` must
give the forward value and the vector-Jacobian product that the textbook derivative gives
(written out below as numpy formulas, or as literal numbers for scalars). Broadcast
inputs must get their gradient summed back to their own shape. In float32 the exact
engines (numpy, torch, jax) must return float32 arrays; `fd` differences in float64 from
the rounded inputs, so it is held to float64 accuracy in both dtypes.
"""

from __future__ import annotations

import numpy as np
import pytest

from gradcheck.engines import EngineSkip, FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from helpers import assert_close, engine_vjp, graph_of

ENGINES = {
    "numpy": NumpyEngine(),
    "fd": FiniteDifferences(),
    "torch": TorchEngine(),
    "jax": JaxEngine(),
}
EXACT = ("numpy", "torch", "jax")
DTYPES = ("float64", "float32")

# (rtol, atol) for gradients and values, by engine kind and dtype
TOL = {
    ("exact", "float64"): (1e-11, 1e-13),
    ("exact", "float32"): (2e-5, 2e-6),
    ("fd", "float64"): (1e-7, 1e-9),
    ("fd", "float32"): (1e-7, 1e-9),
}

rng = np.random.default_rng(20240607)


def normal(*shape):
    return rng.standard_normal(shape)


def positive(*shape):
    return rng.uniform(0.5, 2.0, shape)


def away_from_zero(*shape):
    """Normal numbers pushed at least 0.2 away from 0: no relu/abs kinks within fd's step."""
    x = rng.standard_normal(shape)
    return np.where(x >= 0, x + 0.2, x - 0.2)


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


def one_hot_max(x, axis):
    """The max reduction's gradient pattern: 1 at the (unique) argmax along `axis`."""
    return (x == np.max(x, axis=axis, keepdims=True)).astype(float)


A31, B14, G34 = normal(3, 1), normal(1, 4), normal(3, 4)
A4, B34, C34, P34, P4 = normal(4), normal(3, 4), normal(3, 4), positive(3, 4), positive(4)
X234, Z34 = normal(2, 3, 4), away_from_zero(3, 4)
M23, M34, V3, V3b, G24, G2, G4 = (
    normal(2, 3),
    normal(3, 4),
    normal(3),
    normal(3),
    normal(2, 4),
    normal(2),
    normal(4),
)

# id: (expr, inputs, cotangent or None for a scalar output, hand(inputs, g) -> (value, grads))
CASES = {
    # --- binary ops, with numpy broadcasting undone by the gradient --------------------
    "add-(3,1)+(1,4)": (
        "a + b",
        dict(a=A31, b=B14),
        G34,
        lambda a, b, g: (a + b, dict(a=g.sum(1, keepdims=True), b=g.sum(0, keepdims=True))),
    ),
    "sub-(3,1)-(1,4)": (
        "a - b",
        dict(a=A31, b=B14),
        G34,
        lambda a, b, g: (a - b, dict(a=g.sum(1, keepdims=True), b=-g.sum(0, keepdims=True))),
    ),
    "mul-(4,)*(3,4)": (
        "a * b",
        dict(a=A4, b=B34),
        G34,
        lambda a, b, g: (a * b, dict(a=(g * b).sum(0), b=g * a)),
    ),
    "div-(3,4)/(4,)": (
        "a / b",
        dict(a=B34, b=P4),
        G34,
        lambda a, b, g: (a / b, dict(a=g / b, b=-(g * a / b**2).sum(0))),
    ),
    "pow-const": ("a ** 3", dict(a=A4), G4, lambda a, g: (a**3, dict(a=g * 3 * a**2))),
    "pow-sqrt": (
        "a ** 0.5",
        dict(a=P34),
        G34,
        lambda a, g: (np.sqrt(a), dict(a=g * 0.5 / np.sqrt(a))),
    ),
    "pow-tensor": (
        "a ** b",
        dict(a=P34, b=B34),
        G34,
        lambda a, b, g: (a**b, dict(a=g * b * a ** (b - 1), b=g * a**b * np.log(a))),
    ),
    "maximum": (
        "maximum(a, b)",
        dict(a=B34, b=C34),
        G34,
        lambda a, b, g: (np.maximum(a, b), dict(a=g * (a > b), b=g * (b > a))),
    ),
    "minimum": (
        "minimum(a, b)",
        dict(a=B34, b=C34),
        G34,
        lambda a, b, g: (np.minimum(a, b), dict(a=g * (a < b), b=g * (b < a))),
    ),
    "maximum-(3,4),(4,)": (
        "maximum(a, b)",
        dict(a=B34, b=A4),
        G34,
        lambda a, b, g: (np.maximum(a, b), dict(a=g * (a > b), b=(g * (b > a)).sum(0))),
    ),
    # --- matmul: numpy semantics for 1-d and 2-d operands -------------------------------
    "matmul-2d@2d": (
        "a @ b",
        dict(a=M23, b=M34),
        G24,
        lambda a, b, g: (a @ b, dict(a=g @ b.T, b=a.T @ g)),
    ),
    "matmul-1d@2d": (
        "a @ b",
        dict(a=V3, b=M34),
        G4,
        lambda a, b, g: (a @ b, dict(a=b @ g, b=np.outer(a, g))),
    ),
    "matmul-2d@1d": (
        "a @ b",
        dict(a=M23, b=V3),
        G2,
        lambda a, b, g: (a @ b, dict(a=np.outer(g, b), b=a.T @ g)),
    ),
    "matmul-1d@1d": (
        "a @ b",
        dict(a=V3, b=V3b),
        None,
        lambda a, b, g: (a @ b, dict(a=g * b, b=g * a)),
    ),
    # --- unary elementwise ----------------------------------------------------------------
    "neg": ("-a", dict(a=B34), G34, lambda a, g: (-a, dict(a=-g))),
    "exp": ("exp(a)", dict(a=B34), G34, lambda a, g: (np.exp(a), dict(a=g * np.exp(a)))),
    "log": ("log(a)", dict(a=P34), G34, lambda a, g: (np.log(a), dict(a=g / a))),
    "tanh": (
        "tanh(a)",
        dict(a=B34),
        G34,
        lambda a, g: (np.tanh(a), dict(a=g * (1 - np.tanh(a) ** 2))),
    ),
    "sigmoid": (
        "sigmoid(a)",
        dict(a=B34),
        G34,
        lambda a, g: (sigmoid(a), dict(a=g * sigmoid(a) * (1 - sigmoid(a)))),
    ),
    "relu": ("relu(a)", dict(a=Z34), G34, lambda a, g: (np.maximum(a, 0), dict(a=g * (a > 0)))),
    "abs": ("abs(a)", dict(a=Z34), G34, lambda a, g: (np.abs(a), dict(a=g * np.sign(a)))),
    # --- scalars with the numbers written out ----------------------------------------------
    "tanh-at-0.5": (
        "tanh(x)",
        dict(x=np.float64(0.5)),
        None,
        lambda x, g: (0.46211715726000974, dict(x=0.7864477329659274)),
    ),
    "sigmoid-at-0.5": (
        "sigmoid(x)",
        dict(x=np.float64(0.5)),
        None,
        lambda x, g: (0.6224593312018546, dict(x=0.2350037122015945)),
    ),
    "exp-at-0.5": (
        "exp(x)",
        dict(x=np.float64(0.5)),
        None,
        lambda x, g: (1.6487212707001282, dict(x=1.6487212707001282)),
    ),
    "log-at-0.5": (
        "log(x)",
        dict(x=np.float64(0.5)),
        None,
        lambda x, g: (np.log(0.5), dict(x=2.0)),
    ),
    "cube-at-2": ("x ** 3", dict(x=np.float64(2.0)), None, lambda x, g: (8.0, dict(x=12.0))),
    "div-at-3,2": (
        "a / b",
        dict(a=np.float64(3.0), b=np.float64(2.0)),
        None,
        lambda a, b, g: (1.5, dict(a=0.5, b=-0.75)),
    ),
    "fan-out-a*a+a-at-3": (
        "a * a + a",
        dict(a=np.float64(3.0)),
        None,
        lambda a, g: (12.0, dict(a=7.0)),
    ),
    "colah-(a+b)*(b+1)": (
        "(a + b) * (b + 1)",
        dict(a=np.float64(2.0), b=np.float64(1.0)),
        None,
        lambda a, b, g: (6.0, dict(a=2.0, b=5.0)),
    ),
    # --- reductions ------------------------------------------------------------------------
    "sum-all": ("sum(x)", dict(x=X234), None, lambda x, g: (x.sum(), dict(x=np.ones_like(x)))),
    "sum-axis-1": (
        "sum(x, axis=1)",
        dict(x=X234),
        G24,
        lambda x, g: (x.sum(1), dict(x=np.broadcast_to(g[:, None, :], x.shape))),
    ),
    "sum-axis--1": (
        "sum(x, axis=-1)",
        dict(x=X234),
        normal(2, 3),
        lambda x, g: (x.sum(-1), dict(x=np.broadcast_to(g[..., None], x.shape))),
    ),
    "sum-axis-[0,2]-keepdims": (
        "sum(x, axis=[0, 2], keepdims=True)",
        dict(x=X234),
        normal(1, 3, 1),
        lambda x, g: (x.sum((0, 2), keepdims=True), dict(x=np.broadcast_to(g, x.shape))),
    ),
    "mean-all": (
        "mean(x)",
        dict(x=X234),
        None,
        lambda x, g: (x.mean(), dict(x=np.full(x.shape, 1 / 24))),
    ),
    "mean-axis-[0,-1]": (
        "mean(x, axis=[0, -1])",
        dict(x=X234),
        normal(3),
        lambda x, g: (x.mean((0, 2)), dict(x=np.broadcast_to(g[None, :, None] / 8, x.shape))),
    ),
    "mean-axis-1-keepdims": (
        "mean(x, axis=1, keepdims=True)",
        dict(x=X234),
        normal(2, 1, 4),
        lambda x, g: (x.mean(1, keepdims=True), dict(x=np.broadcast_to(g / 3, x.shape))),
    ),
    "max-all": (
        "max(x)",
        dict(x=X234),
        None,
        lambda x, g: (x.max(), dict(x=(x == x.max()).astype(float))),
    ),
    "max-axis-1-keepdims": (
        "max(x, axis=1, keepdims=True)",
        dict(x=X234),
        normal(2, 1, 4),
        lambda x, g: (x.max(1, keepdims=True), dict(x=one_hot_max(x, 1) * g)),
    ),
    "max-axis-[1,2]": (
        "max(x, axis=[1, 2])",
        dict(x=X234),
        G2,
        lambda x, g: (x.max((1, 2)), dict(x=one_hot_max(x, (1, 2)) * g[:, None, None])),
    ),
    # --- shape ops -------------------------------------------------------------------------
    "transpose-default": (
        "transpose(x)",
        dict(x=X234),
        normal(4, 3, 2),
        lambda x, g: (x.T, dict(x=g.T)),
    ),
    "transpose-[1,0,2]": (
        "transpose(x, axes=[1, 0, 2])",
        dict(x=X234),
        normal(3, 2, 4),
        lambda x, g: (x.transpose(1, 0, 2), dict(x=g.transpose(1, 0, 2))),
    ),
    "transpose-[-1,0,1]": (
        "transpose(x, axes=[-1, 0, 1])",
        dict(x=X234),
        normal(4, 2, 3),
        lambda x, g: (x.transpose(2, 0, 1), dict(x=g.transpose(1, 2, 0))),
    ),
    "reshape-[-1,2]": (
        "reshape(x, shape=[-1, 2])",
        dict(x=X234),
        normal(12, 2),
        lambda x, g: (x.reshape(12, 2), dict(x=g.reshape(2, 3, 4))),
    ),
    "reshape-[4,-1]": (
        "reshape(x, shape=[4, -1])",
        dict(x=M34),
        normal(4, 3),
        lambda x, g: (x.reshape(4, 3), dict(x=g.reshape(3, 4))),
    ),
}


def run_engine(engine_name, expr, inputs, dtype, cotangent):
    try:
        return engine_vjp(ENGINES[engine_name], expr, inputs, dtype, cotangent)
    except EngineSkip as e:
        pytest.skip(str(e))


@pytest.mark.parametrize("engine_name", list(ENGINES))
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case_id", list(CASES))
def test_op_against_hand_gradient(case_id, dtype, engine_name):
    expr, inputs, cotangent, hand = CASES[case_id]
    graph, arrays, cot, out = run_engine(engine_name, expr, inputs, dtype, cotangent)
    # hand values in float64, at exactly the (rounded) numbers the engine was given
    x64 = {k: v.astype(np.float64) for k, v in arrays.items()}
    value, grads = hand(*x64.values(), cot.astype(np.float64))
    kind = "fd" if engine_name == "fd" else "exact"
    rtol, atol = TOL[(kind, dtype)]
    what = f"{case_id} [{dtype}] on {engine_name}"

    assert np.shape(out.value) == graph.output_shape, f"{what}: value shape"
    assert_close(out.value, np.asarray(value, dtype=np.float64), rtol, atol, f"{what}: value")
    assert set(out.grads) == set(inputs), f"{what}: gradients returned for {set(out.grads)}"
    for name, g in grads.items():
        assert np.shape(out.grads[name]) == np.shape(inputs[name]), (
            f"{what}: gradient of {name} has shape {np.shape(out.grads[name])}"
        )
        assert_close(
            out.grads[name], np.asarray(g, dtype=np.float64), rtol, atol, f"{what}: d/d{name}"
        )
    if kind == "exact":
        assert np.asarray(out.value).dtype == np.dtype(dtype), f"{what}: value dtype"
        for name, g in out.grads.items():
            assert np.asarray(g).dtype == np.dtype(dtype), (
                f"{what}: gradient of {name} is {np.asarray(g).dtype}, expected {dtype}"
            )


@pytest.mark.parametrize("engine_name", EXACT)
def test_max_reduction_tie_shares_gradient_evenly(engine_name):
    """A tie of the max is a kink; the exact engines split the gradient evenly between the
    winners (as torch and jax do), so they agree with each other on it."""
    x = np.array([[1.0, 3.0, 3.0], [2.0, -1.0, 0.0]])
    _, _, _, out = run_engine(
        engine_name, "max(x, axis=1)", dict(x=x), "float64", np.array([2.0, 5.0])
    )
    assert_close(out.value, [3.0, 2.0], 1e-15)
    assert_close(out.grads["x"], [[0.0, 1.0, 1.0], [5.0, 0.0, 0.0]], 1e-15)


@pytest.mark.parametrize("engine_name", EXACT)
def test_maximum_minimum_ties_share_gradient(engine_name):
    a, b = np.array([1.0, 2.0, 5.0]), np.array([1.0, 3.0, 4.0])
    _, _, _, hi = run_engine(engine_name, "sum(maximum(a, b))", dict(a=a, b=b), "float64", None)
    assert_close(hi.grads["a"], [0.5, 0.0, 1.0], 1e-15)
    assert_close(hi.grads["b"], [0.5, 1.0, 0.0], 1e-15)
    _, _, _, lo = run_engine(engine_name, "sum(minimum(a, b))", dict(a=a, b=b), "float64", None)
    assert_close(lo.grads["a"], [0.5, 1.0, 0.0], 1e-15)
    assert_close(lo.grads["b"], [0.5, 0.0, 1.0], 1e-15)


@pytest.mark.parametrize("engine_name", list(ENGINES))
def test_multi_step_graph_sums_gradients_over_paths(engine_name):
    """A value used by several later steps gets the sum of the gradients along each path."""
    steps = [("h", "tanh(x @ w)"), ("u", "h * h + h"), ("out", "sum(u * x2)")]
    x, w, x2 = normal(2, 3), normal(3, 4), normal(2, 4)
    try:
        graph = graph_of(steps, dict(x=x, w=w, x2=x2))
        out = ENGINES[engine_name].vjp(graph, dict(x=x, w=w, x2=x2), ["x", "w", "x2"], np.ones(()))
    except EngineSkip as e:
        pytest.skip(str(e))
    h = np.tanh(x @ w)
    dh = x2 * (2 * h + 1)
    da = dh * (1 - h**2)
    rtol, atol = TOL[("fd" if engine_name == "fd" else "exact", "float64")]
    assert_close(out.value, np.sum((h * h + h) * x2), rtol, atol, "value")
    assert_close(out.grads["x"], da @ w.T, rtol, atol, "d/dx")
    assert_close(out.grads["w"], x.T @ da, rtol, atol, "d/dw")
    assert_close(out.grads["x2"], h * h + h, rtol, atol, "d/dx2")


def test_gradient_of_unused_input_is_zero():
    """An input that the output does not depend on gets a zero gradient of its own shape."""
    a, b = normal(3), normal(2, 2)
    for name in EXACT:
        _, _, _, out = run_engine(name, "sum(a * 2)", dict(a=a, b=b), "float64", None)
        assert_close(out.grads["a"], np.full(3, 2.0), 1e-15, what=name)
        assert np.array_equal(out.grads["b"], np.zeros((2, 2))), name
