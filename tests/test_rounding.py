"""Tolerances that know the numbers: exact pairs are judged against each element's rounding
bound, which follows the terms that cancel (no false alarm where a gradient is zero by
symmetry) and stays tight where nothing cancels (smaller bugs are caught than a fixed rtol
could catch)."""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck
import reference_impls
from gradcheck.harness.rounding import ENGINE_FACTOR, rounding_scale
from gradcheck.harness.runner import RunOptions, run_case
from helpers import TANH_LAYER, engine_vjp, graph_of, load_one
from reference_impls import Primitive

# softmax over axis 0 does not change when b (one shift per column) is added: the gradient
# of b is zero, computed as a sum of terms that cancel; a fixed rtol on the element's own
# (zero) size fails it by a factor of ten million
SYMMETRIC = """\
name: softmax-axis0-bias
tags: [softmax]
inputs:
  x: {shape: [4, 3], init: normal, seed: 5}
  w: {shape: [3, 5], init: normal, seed: 6}
  b: {shape: [5], init: normal, seed: 7}
expr: softmax(x @ w + b, axis=0)
dtypes: [float64, float32]
"""
EXACT_PAIR = [gradcheck.NumpyEngine(), gradcheck.TorchEngine()]
NO_TAYLOR = RunOptions(taylor=False)


def scaled_tanh(factor: float) -> gradcheck.NumpyEngine:
    ops = dict(reference_impls.OPS)
    rule = ops["tanh"].grads[0]
    ops["tanh"] = Primitive(ops["tanh"].forward, (lambda g, out, x: factor * rule(g, out, x),))
    return gradcheck.NumpyEngine(ops)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_cancelling_terms_pass_and_the_bound_is_reported(tmp_path, dtype):
    case = load_one(tmp_path, SYMMETRIC)
    result = run_case(case, dtype, EXACT_PAIR, NO_TAYLOR)
    assert result.case.verdict == "PASS"
    [row] = [r for r in result.comparisons if r.param == "b"]
    assert abs(row.value_a) < 10 * np.finfo(dtype).eps  # zero, up to rounding
    assert 0 < row.round_err <= row.bound
    assert abs(row.value_a - row.value_b) <= row.bound


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_case_tolerance_wins_over_the_rounding_bound(tmp_path, dtype):
    text = SYMMETRIC.replace("dtypes:", "tolerance: {rtol: 1.0e-7}\ndtypes:")
    result = run_case(load_one(tmp_path, text), dtype, EXACT_PAIR, NO_TAYLOR)
    [row] = [r for r in result.comparisons if r.param == "b"]
    assert row.round_err == 0 and row.rtol == 1e-7
    assert result.case.verdict == "FAIL"  # the fixed rtol cannot see the cancellation


@pytest.mark.parametrize("dtype,factor", [("float32", 1 + 3e-5), ("float64", 1 + 3e-9)])
def test_errors_below_the_old_fixed_rtol_are_caught(tmp_path, dtype, factor):
    """The old exact-pair rtol (1e-4 in float32, 1e-7 in float64) let these through."""
    case = load_one(tmp_path, TANH_LAYER)
    right = run_case(case, dtype, EXACT_PAIR, NO_TAYLOR)
    wrong = run_case(case, dtype, [scaled_tanh(factor), gradcheck.TorchEngine()], NO_TAYLOR)
    assert right.case.verdict == "PASS"
    assert wrong.case.verdict == "FAIL"


def test_the_scale_follows_the_terms_that_cancel_not_the_element():
    """1 - tanh^2 at saturation: the gradient is tiny, but its rounding is that of 1."""
    inputs = {"x": np.array([0.5, 9.0])}
    graph, arrays, cotangent, _exact = engine_vjp(
        gradcheck.NumpyEngine(), "sum(tanh(x))", inputs, "float32"
    )
    scale = rounding_scale(graph, arrays, ["x"], cotangent, "float32", "t").grads["x"]
    eps = np.finfo(np.float32).eps
    grad = 1 - np.tanh(arrays["x"].astype(np.float64)) ** 2
    assert scale[0] < 4 * eps * grad[0]  # nothing cancels: a few eps of itself
    assert scale[1] > 1e3 * eps * grad[1]  # cancels: far above its own size
    assert scale[1] < 4 * eps  # ... and within a few eps of 1
    torch_grad = engine_vjp(gradcheck.TorchEngine(), "sum(tanh(x))", inputs, "float32")[3]
    error = np.abs(torch_grad.grads["x"] - grad)
    assert np.all(error <= 2 * ENGINE_FACTOR * scale)


@pytest.mark.parametrize(
    "expr, out_shape",
    [
        ("x * w + b", (64, 3)),  # b broadcast over 64 rows: its gradient is their sum
        ("b + b", (3,)),  # b used twice: the two gradients add up
    ],
)
def test_the_executors_own_sums_are_rounded_too(expr, out_shape):
    """The sums the backprop executor does itself (a broadcast input's gradient summed back
    to its shape; the gradients of a value that fans out, added) round like any op's: a
    float32 engine errs there, and a bound of 0 failed a correct float32 layer norm's beta
    (benchmarks/false_alarms.py, family norms)."""
    rng = np.random.default_rng(3)
    inputs = {
        "x": rng.standard_normal((64, 3)),
        "w": rng.standard_normal(3),
        "b": rng.standard_normal(3),
    }
    inputs = {k: v for k, v in inputs.items() if k in expr}
    graph, arrays, cotangent, exact = engine_vjp(
        gradcheck.NumpyEngine(), expr, inputs, "float32", rng.standard_normal(out_shape)
    )
    scale = rounding_scale(graph, arrays, list(arrays), cotangent, "float32", "s").grads["b"]
    eps = float(np.finfo(np.float32).eps)
    assert np.all(scale > 0.1 * eps * np.abs(exact.grads["b"]))


def test_the_scale_is_seeded_and_the_same_on_every_call():
    inputs = {"x": np.linspace(-2, 2, 6).reshape(2, 3), "w": np.ones((3, 2))}
    graph = graph_of("sum(tanh(x @ w))", inputs)
    one = rounding_scale(graph, inputs, ["x", "w"], np.ones(()), "float32", "seed")
    two = rounding_scale(graph, inputs, ["x", "w"], np.ones(()), "float32", "seed")
    np.testing.assert_array_equal(one.grads["w"], two.grads["w"])
    assert one.value > 0


def test_a_sum_of_terms_of_one_sign_rounds_with_its_partial_sums():
    """A float32 matmul sums its terms in order, and each partial sum rounds at its own size:
    with 20,000 positive terms the partial sums grow to the total, and torch's error grows
    with them (about 30 eps of the total), far above what the terms' own sizes give. Taken
    as rounding of the terms alone, the bound failed torch against jax (tol ratio 1.17)."""
    rng = np.random.default_rng(4)
    inputs = {"x": rng.uniform(0, 1, (2, 20_000)), "w": rng.uniform(0, 1, (20_000, 3))}
    cotangent = np.ones((2, 3))
    graph, arrays, cotangent, torch_out = engine_vjp(
        gradcheck.TorchEngine(), "x @ w", inputs, "float32", cotangent
    )
    scale = rounding_scale(graph, arrays, ["x", "w"], cotangent, "float32", "p").value
    exact = arrays["x"].astype(np.float64) @ arrays["w"].astype(np.float64)
    error = np.abs(torch_out.value - exact)
    assert np.all(error <= ENGINE_FACTOR * scale)
    assert np.max(error / np.abs(exact)) > 10 * np.finfo(np.float32).eps  # it does err so


def _value_scale(expr: str, inputs: dict, dtype: str = "float32", seeds: int = 12) -> np.ndarray:
    """The value's rounding scale, as a root-mean-square over `seeds` seeds (one seed's
    8 samples make a scale that varies by a quarter from seed to seed)."""
    graph = graph_of(expr, inputs)
    cotangent = np.ones(graph.output_shape)
    scales = [
        rounding_scale(graph, inputs, list(inputs), cotangent, dtype, f"e{s}").value
        for s in range(seeds)
    ]
    return np.sqrt(np.mean(np.square(scales), axis=0))


def test_an_einsum_that_contracts_rounds_as_a_sum_of_its_terms():
    """einsum("ij,ij->") of terms that cancel (each row's products, negated in the next
    row): its total is 0 up to float64 rounding, and its partial sums round with the
    terms, as those of sum(a * b) do. Rounded only as a product, its bound followed the
    zero total: correct einsums failed at tol ratios up to 18 (benchmarks/false_alarms.py,
    family einsum)."""
    rng = np.random.default_rng(5)
    u, v = rng.standard_normal(8), rng.standard_normal(8)
    inputs = {"a": np.stack([u, u]), "b": np.stack([v, -v])}
    terms = inputs["a"] * inputs["b"]
    assert abs(terms.sum()) < 1e-15 * np.abs(terms).sum()
    einsum = _value_scale('einsum("ij,ij->", a, b)', inputs)
    written_out = _value_scale("sum(a * b)", inputs)
    eps = float(np.finfo(np.float32).eps)
    assert einsum > 0.5 * eps * np.sqrt(np.sum(terms**2))  # the terms', not the total's
    assert written_out / 2 < einsum < 2 * written_out


def test_an_einsum_that_does_not_cancel_keeps_a_bound_near_its_value():
    """Terms of one sign: the scale stays about eps of the result, that of the same matmul
    (its partial sums grow to the total: about twice the eps / sqrt(3) of one rounding)."""
    rng = np.random.default_rng(6)
    inputs = {"x": rng.uniform(0.5, 1.0, (3, 5)), "w": rng.uniform(0.5, 1.0, (5, 4))}
    exact = inputs["x"] @ inputs["w"]
    eps = float(np.finfo(np.float32).eps)
    einsum = _value_scale('einsum("ij,jk->ik", x, w)', inputs)
    assert np.all(einsum > 0.5 * eps * exact) and np.all(einsum < 2 * eps * exact)
    matmul = _value_scale("x @ w", inputs)
    assert np.all(matmul / 2 < einsum) and np.all(einsum < 2 * matmul)


@pytest.mark.parametrize(
    "expr, shapes",
    [
        ('einsum("ijk->kji", x)', {"x": (2, 3, 4)}),
        ('einsum("ij,jk", x, y)', {"x": (3, 1), "y": (1, 4)}),
    ],
)
def test_an_einsum_that_sums_nothing_rounds_at_most_once(expr, shapes):
    """An einsum of one operand that contracts nothing only moves values (exact, as a
    transpose is); one of several operands whose contracted letter has size 1 is a lone
    product: it rounds once, with no partial sums."""
    rng = np.random.default_rng(7)
    inputs = {name: rng.standard_normal(shape) for name, shape in shapes.items()}
    scale = _value_scale(expr, inputs, seeds=4)
    if len(inputs) == 1:
        assert np.all(scale == 0)
    else:
        product = inputs["x"] @ inputs["y"]
        assert np.all(scale < np.finfo(np.float32).eps * np.abs(product))
