"""Integer data (a 0/1 mask, labels) in arithmetic and shape ops: never differentiated.

The graph builder gives each node a kind and names the casts at the op boundary; every
engine applies them, so `x * mask` is float data of the case's dtype (float32 stays float32
in numpy, where int64 * float32 would be float64), `expand_dims(y, 1)` stays labels, and
only the float operands get gradients.
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck
import reference_impls
from gradcheck.engines import FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from gradcheck.engines.jax_engine import graph_key
from gradcheck.ir.graph import FLOAT, INT, GraphError
from helpers import cast, engine_vjp, graph_of, write_case

ENGINES = ["numpy", "fd", "torch", "jax"]
DTYPES = ["float64", "float32"]
MASK = [[1, 0, 1, 1], [0, 0, 1, 0], [1, 1, 0, 1]]
LABELS = [0, 3, 1]


@pytest.fixture(scope="module")
def engines():
    return [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine(cache_dir=None)]


def load(tmp_path, name: str, expr: str, extra: str = "") -> gradcheck.loading.Case:
    text = f"""\
        name: {name}
        inputs:
          x: {{shape: [3, 4], init: normal, scale: 2.0}}
          y: {{value: {LABELS}, dtype: int64}}
          mask: {{value: {MASK}, dtype: int64}}
        expr: {expr}
        dtypes: [float64, float32]
        {extra}"""
    [case] = gradcheck.load_cases([write_case(tmp_path, f"{name}.yaml", text)])
    return case


def numpy_vjp(case, dtype: str):
    arrays = case.arrays(dtype)
    return arrays, NumpyEngine().vjp(case.graph, arrays, case.wrt, case.cotangent(dtype))


def assert_all_pass(result, engines=ENGINES) -> None:
    assert result.ok, result.cases[["case", "dtype", "verdict", "message"]].to_string()
    assert sorted(result.cases["dtype"]) == sorted(DTYPES)
    assert set(result.cases["verdict"]) == {"PASS"}
    compared = set(result.comparisons["engine_a"]) | set(result.comparisons["engine_b"])
    assert set(engines) <= compared


# --- through the public API: YAML cases, every engine, both dtypes -------------------------


def test_masked_sum_gradient_is_the_mask_exactly(tmp_path, engines):
    case = load(tmp_path, "masked-sum", "sum(x * mask)")
    assert case.wrt == ["x"]  # integer data is never differentiated
    assert_all_pass(gradcheck.run([case], engines=engines))
    for dtype in DTYPES:
        arrays, out = numpy_vjp(case, dtype)
        assert out.grads["x"].dtype == np.dtype(dtype) and out.value.dtype == np.dtype(dtype)
        assert np.array_equal(out.grads["x"], np.asarray(MASK, dtype=dtype))
        assert out.value == np.sum(arrays["x"] * np.asarray(MASK, dtype=dtype), dtype=dtype)


def test_cross_entropy_plus_masked_sum_passes_on_every_engine(tmp_path, engines):
    case = load(tmp_path, "ce-plus-masked", "softmax_cross_entropy(x, y) + sum(x * mask)")
    result = gradcheck.run([case], engines=engines)
    assert_all_pass(result)
    assert len(result.taylor) and set(result.taylor["verdict"]) <= {"PASS", "SKIP"}
    for dtype in DTYPES:
        arrays, out = numpy_vjp(case, dtype)
        x = arrays["x"].astype(np.float64)
        p = np.exp(x - x.max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        want = (p - np.eye(4)[LABELS]) / 3 + np.asarray(MASK)  # seed 004's p - y, over N
        rtol = 1e-12 if dtype == "float64" else 1e-5
        np.testing.assert_allclose(out.grads["x"], want, rtol=rtol, atol=rtol)


def test_masked_mean_divides_by_the_count_of_the_mask(tmp_path, engines):
    case = load(tmp_path, "masked-mean", "sum(x * mask) / sum(mask)")
    assert_all_pass(gradcheck.run([case], engines=engines))
    for dtype in DTYPES:
        _, out = numpy_vjp(case, dtype)
        want = np.asarray(MASK, dtype=dtype) / np.asarray(7, dtype=dtype)
        assert out.grads["x"].dtype == np.dtype(dtype)
        np.testing.assert_array_equal(out.grads["x"], want)


def test_an_integer_input_in_wrt_is_refused(tmp_path):
    with pytest.raises(
        gradcheck.CaseError, match="'mask', an integer input: integer data is never differentiated"
    ):
        load(tmp_path, "wrt-int", "sum(x * mask)", "wrt: [x, mask]")


# --- labels through shape ops stay labels -------------------------------------------------


@pytest.mark.parametrize(
    "engine",
    [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine(cache_dir=None)],
    ids=lambda e: e.name,
)
@pytest.mark.parametrize("dtype", DTYPES)
def test_take_along_axis_of_expanded_labels_matches_the_hand_gradient(engine, dtype):
    s = np.random.default_rng(3).standard_normal((3, 4))
    inputs = {"s": s, "y": np.array(LABELS)}
    expr = "sum(take_along_axis(s, expand_dims(y, 1), 1) ** 2)"
    graph, arrays, _, out = engine_vjp(engine, expr, inputs, dtype)
    assert [n.kind for n in graph.nodes][:1] == [INT]  # expand_dims(y, 1)
    picked = arrays["s"][np.arange(3), LABELS].astype(np.float64)
    want = np.zeros((3, 4))
    want[np.arange(3), LABELS] = 2 * picked  # d/ds of sum(s[i, y_i]^2)
    rtol = 1e-12 if dtype == "float64" else 1e-6
    rtol = max(rtol, 1e-8) if out.numerical else rtol  # fd: an estimate, in float64
    np.testing.assert_allclose(out.value, np.sum(picked**2), rtol=rtol)
    np.testing.assert_allclose(out.grads["s"], want, rtol=rtol, atol=0)


def test_take_along_axis_of_expanded_labels_loads_from_yaml(tmp_path, engines):
    case = load(tmp_path, "take-expanded", "sum(take_along_axis(x, expand_dims(y, 1), 1))")
    assert_all_pass(gradcheck.run([case], engines=engines))


KINDS = {
    "expand_dims(y, 1)": INT,
    "reshape(y, shape=[3, 1])": INT,
    "y[::-1]": INT,
    "concat(y, y)": INT,
    "stack(y, y, axis=1)": INT,
    "transpose(mask)": INT,
    "squeeze(expand_dims(y, 0))": INT,
    "take(y, y)": INT,
    "y - 1": INT,
    "2 * y + 1": INT,
    "-y": INT,
    "y * y": INT,
    "maximum(y, 0)": INT,
    "minimum(mask, y[0])": INT,
    "y * 0.5": FLOAT,
    "y / 2": FLOAT,
    "y / y": FLOAT,
    "sum(mask)": FLOAT,
    "mean(mask)": FLOAT,
    "concat(x[0], y)": FLOAT,
    "x[0] * y[0]": FLOAT,
    "maximum(mask, x)": FLOAT,
}


@pytest.mark.parametrize("expr", KINDS)
def test_the_kind_of_a_result(expr):
    inputs = {"x": np.zeros((3, 4)), "y": np.array(LABELS), "mask": np.array(MASK)}
    assert graph_of(expr, inputs).nodes[-1].kind == KINDS[expr]


@pytest.mark.parametrize("dtype", DTYPES)
def test_integer_arithmetic_stays_int64_and_float_results_keep_the_dtype(dtype):
    """Every value the numpy forward makes: INT nodes int64, FLOAT nodes in the case's dtype."""
    inputs = {"x": np.ones((3, 4)), "y": np.array(LABELS), "mask": np.array(MASK)}
    expr = (
        "softmax_cross_entropy(x * (2 * mask - 1) / sum(mask), (y + 1) - 1)"
        " + sum(take_along_axis(x, expand_dims(y, 1), 1) * reshape(y, shape=[3, 1]))"
    )
    graph = graph_of(expr, inputs)
    env = {**cast(inputs, dtype), **{k: np.asarray(v, dtype) for k, v in graph.consts.items()}}
    env = reference_impls.forward(graph, reference_impls.OPS, env)
    for node in graph.nodes:
        want = np.int64 if node.kind == INT else np.dtype(dtype)
        assert env[node.name].dtype == want, (node.name, node.op, node.kind)


@pytest.mark.parametrize(
    "engine", [NumpyEngine(), TorchEngine(), JaxEngine(cache_dir=None)], ids=lambda e: e.name
)
def test_float32_stays_float32_in_every_engine(engine):
    inputs = {"x": np.linspace(-1, 1, 12).reshape(3, 4), "mask": np.array(MASK)}
    _, _arrays, _, out = engine_vjp(
        engine, "sum(x * mask) / sum(mask) + mean(x / mask[0, 0])", inputs, "float32"
    )
    assert out.value.dtype == np.float32 and out.grads["x"].dtype == np.float32
    want = np.asarray(MASK, np.float32) / np.float32(7) + np.float32(1 / 12)
    np.testing.assert_allclose(out.grads["x"], want, rtol=1e-6)


def test_a_fractional_literal_is_not_cast_to_an_integer():
    """`y * 2` is integer data and `y * 2.5` float data: their graphs differ in the structure
    that keys jax's compiled programs, so neither reuses the other's program."""
    inputs = {"x": np.ones(3), "y": np.array(LABELS)}
    keys = {graph_key(graph_of(f"sum(x * (y * {k}))", inputs)) for k in ("2", "2.5")}
    assert len(keys) == 2
    jax = JaxEngine(cache_dir=None)
    for k in (2, 2.5):
        _, _, _, out = engine_vjp(jax, f"sum(x * (y * {k}))", inputs)
        np.testing.assert_array_equal(out.grads["x"], np.asarray(LABELS) * k)


# --- what stays refused, and says why -----------------------------------------------------


@pytest.mark.parametrize(
    "expr, message",
    [
        (
            "exp(y)",
            "exp argument 1 (y) must be float data, got int: integer data enters only "
            "a + b, a - b, a * b, a / b, maximum, minimum",
        ),
        ("sum(x @ mask)", "matmul argument 2 (mask) must be float data, got int"),
        ("sum(y ** 2)", "pow argument 1 (y) must be float data, got int"),
        (
            "softmax_cross_entropy(x, y * 0.5)",
            "softmax_cross_entropy argument 2 (out#1) must be int data, got float",
        ),
        ("sum(take(x, y / 1))", "take argument 2 (out#1) must be int data, got float"),
    ],
)
def test_still_invalid_uses_name_the_argument(expr, message):
    inputs = {"x": np.zeros((3, 4)), "y": np.array(LABELS), "mask": np.zeros((4, 4), int)}
    with pytest.raises(GraphError) as info:
        graph_of(expr, inputs)
    assert message in str(info.value)
