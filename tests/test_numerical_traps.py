"""Numerical traps: NaN and Inf are NONFINITE, never PASS; an input on a kink is NONDIFF,
never a false FAIL, and kinks are found from the forward function itself, while smooth
functions are never flagged; float32 cases are differenced in float64; runs repeat exactly."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fault_engines
import reference_impls
from gradcheck import FiniteDifferences, NumpyEngine, run_case
from gradcheck.engines import make_engines
from gradcheck.harness.verdict import Verdict
from gradcheck.loading import load_text
from reference_impls import Primitive

pytestmark = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # log(0) and friends warn


def case_of(expr: str, inputs: str, dtypes: str = "[float64]", name: str = "trap"):
    [case] = load_text(f"name: {name}\ninputs: {inputs}\nexpr: {expr}\ndtypes: {dtypes}\n")
    return case


def run_all(case, engines=None) -> list:
    engines = make_engines() if engines is None else engines
    return [run_case(case, dtype, engines) for dtype in case.dtypes]


def fd_kinks(case, dtype="float64", fd=None) -> dict[str, np.ndarray]:
    fd = fd or FiniteDifferences()
    return fd.vjp(case.graph, case.arrays(dtype), case.wrt, case.cotangent(dtype)).kinks


# --- NaN and Inf ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, inputs",
    [
        ("sum(log(x))", "{x: [0.0, 1.0]}"),  # -inf value, inf gradient
        ("sum(x ** 0.5)", "{x: [0.0, 4.0]}"),  # finite value, infinite gradient
        ("sum(log(x) * 0)", "{x: [-1.0, 1.0]}"),  # nan from a negative log
        ("sum(exp(x))", "{x: [800.0]}"),  # overflow
    ],
)
def test_nan_or_inf_is_nonfinite_never_pass(expr, inputs):
    for result in run_all(case_of(expr, inputs, "[float64, float32]")):
        assert result.case.verdict == "NONFINITE", result.case
        assert "NONFINITE" in {r.verdict for r in result.comparisons if r.param == "x"}


def test_an_engine_with_nan_gradients_is_nonfinite_and_blamed():
    engines = [NumpyEngine(), FiniteDifferences(), fault_engines.NanGrads()]
    [result] = run_all(case_of("sum(tanh(x) * y)", "{x: [0.5, 1.0], y: [2.0, 3.0]}"), engines)
    assert result.case.verdict == "NONFINITE"
    assert result.case.blame == "nan-grads"
    bad = {
        r.verdict
        for r in result.comparisons
        if "nan-grads" in (r.engine_a, r.engine_b) and r.param != "(value)"
    }
    assert bad == {"NONFINITE"}


# --- kinks ----------------------------------------------------------------------------------

POOL = (
    "[[[[1.0, 1.0, 0.0, 2.0], [0.5, 1.0, 2.0, 2.0], [0.0, 3.0, 1.0, 1.0], [3.0, 0.0, 1.0, 1.0]]]]"
)
KINKS = {  # expr, inputs, the input and elements where fd must see a kink
    "relu at 0": ("sum(relu(x) * w)", "{x: [-1.0, 0.0, 2.0], w: [1.0, 2.0, 3.0]}", "x", [1]),
    "abs at 0": ("sum(abs(x))", "{x: [-1.0, 0.0, 2.0]}", "x", [1]),
    "relu after a shift": ("sum(relu(x - 1) * exp(x))", "{x: [1.0, 2.0]}", "x", [0]),
    "maximum tie": (
        "sum(maximum(a, b) ** 2)",
        "{a: [1.0, 2.0, 3.0], b: [1.0, 0.0, 3.0]}",
        "a",
        [0, 2],
    ),
    "minimum tie": (
        "sum(minimum(a, b) * 3)",
        "{a: [1.0, 2.0, 3.0], b: [1.0, 0.0, 3.0]}",
        "b",
        [0, 2],
    ),
    "max tie, all axes": ("max(x) * 2", "{x: [[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]]}", "x", [1, 2]),
    "max tie, one axis": (
        "sum(max(x, axis=1) ** 2)",
        "{x: [[1.0, 3.0, 3.0], [2.0, 2.0, 0.5]]}",
        "x",
        [1, 2, 3, 4],
    ),
    "maxpool tie": (
        "sum(maxpool2d(x, size=2, stride=2) ** 2)",
        f"{{x: {POOL}}}",
        "x",
        [0, 1, 3, 5, 6, 7, 9, 10, 11, 12, 14, 15],
    ),
}


@pytest.mark.parametrize("name", list(KINKS))
def test_an_input_on_a_kink_is_nondiff_never_fail(name):
    expr, inputs, param, where = KINKS[name]
    case = case_of(expr, inputs, "[float64, float32]")
    for result in run_all(case):
        assert result.case.verdict == "NONDIFF", result.case
        assert {r.verdict for r in result.comparisons} <= {"PASS", "NONDIFF"}
    flagged = np.flatnonzero(fd_kinks(case)[param])
    assert flagged.tolist() == where


NEAR_KINKS = {  # within fd's first stencil of a kink, but not on it: differentiable there
    "relu just above 0": ("sum(relu(x) * exp(x))", "{x: [1.0e-6, 2.0e-7, -3.0e-6]}"),
    "abs just off 0": ("sum(abs(x - 0.3) * x)", "{x: [0.300003, 0.2999999, 1.0]}"),
    "maximum almost tied": ("sum(maximum(a, b) ** 2)", "{a: [1.0, 2.0], b: [1.000001, 1.9999995]}"),
}


@pytest.mark.parametrize("name", list(NEAR_KINKS))
def test_an_input_near_a_kink_passes_neither_flagged_nor_failed(name):
    expr, inputs = NEAR_KINKS[name]
    case = case_of(expr, inputs, "[float64, float32]")
    for result in run_all(case):
        assert result.case.verdict == "PASS", result.case
    assert not any(k.any() for k in fd_kinks(case).values())


def test_kinks_come_from_the_forward_function_not_op_names():
    """Swap forwards in fd's table: `tanh` computing |x| has a kink at 0, `relu` computing
    softplus has none. fd knows nothing about op names."""
    ops = dict(reference_impls.OPS)
    ops["tanh"] = Primitive(np.abs, ops["abs"].grads)
    ops["relu"] = Primitive(lambda x: np.logaddexp(x, 0), ops["sigmoid"].grads)
    fd = FiniteDifferences(ops)
    assert fd_kinks(case_of("sum(tanh(x))", "{x: [-1.0, 0.0]}"), fd=fd)["x"].tolist() == [
        False,
        True,
    ]
    assert not fd_kinks(case_of("sum(relu(x))", "{x: [-1.0, 0.0]}"), fd=fd)["x"].any()


SMOOTH_UNARY = [
    "tanh({})",
    "sigmoid({})",
    "exp(tanh({}))",
    "log(1 + {} * {})",
    "softmax({})",
    "log_softmax({})",
    "{} * {}",
    "-{}",
]
SMOOTH_BINARY = ["{} + {}", "{} - {}", "{} * {}", "{} / (1 + {} * {})"]


@st.composite
def smooth_expr(draw, depth=0):
    if depth >= 4 or draw(st.booleans()):
        return draw(st.sampled_from(["x", "y", "(x * 0.5)", "(y + 1.5)"]))
    if draw(st.booleans()):
        template = draw(st.sampled_from(SMOOTH_UNARY))
        inner = f"({draw(smooth_expr(depth + 1))})"
        return template.format(*[inner] * template.count("{}"))
    template = draw(st.sampled_from(SMOOTH_BINARY))
    a, b = (f"({draw(smooth_expr(depth + 1))})" for _ in range(2))
    return template.format(a, *[b] * (template.count("{}") - 1))


def yaml_list(values) -> str:
    return "[" + ", ".join(f"{v:.17e}" for v in values) + "]"  # YAML 1.1 floats need a dot


VALUES = st.lists(st.floats(-3, 3, allow_subnormal=False), min_size=3, max_size=3)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(expr=smooth_expr(), x=VALUES, y=VALUES)
def test_smooth_functions_are_never_flagged_as_kinks(expr, x, y):
    case = case_of(
        f'"sum(({expr}) * w)"', f"{{x: {yaml_list(x)}, y: {yaml_list(y)}, w: [0.3, -1.2, 0.7]}}"
    )
    kinks = fd_kinks(case)
    assert not any(k.any() for k in kinks.values()), (expr, kinks)
    [result] = run_all(case, [NumpyEngine(), FiniteDifferences()])
    assert result.case.verdict == "PASS", (expr, result.case.message)


# --- float32 --------------------------------------------------------------------------------


def test_float32_cases_are_differenced_in_float64():
    case = case_of("sum(tanh(x) * y)", "{x: {shape: [3, 4]}, y: {shape: [3, 4]}}", "[float32]")
    arrays = case.arrays("float32")
    assert arrays["x"].dtype == np.float32
    out = FiniteDifferences().vjp(case.graph, arrays, case.wrt, case.cotangent("float32"))
    assert all(g.dtype == np.float64 for g in out.grads.values())
    assert out.value.dtype == np.float64
    # the same rounded inputs, handed over in float64, give exactly the same differences
    again = FiniteDifferences().vjp(
        case.graph,
        {k: v.astype(np.float64) for k, v in arrays.items()},
        case.wrt,
        case.cotangent("float32").astype(np.float64),
    )
    for name in case.wrt:
        np.testing.assert_array_equal(out.grads[name], again.grads[name])


# --- determinism ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, inputs",
    [
        ("sum(tanh(x @ w) ** 2)", "{x: {shape: [4, 5]}, w: {shape: [5, 3], init: uniform}}"),
        ("sum(maximum(a, b) * relu(a))", "{a: [1.0, 0.0, -2.0], b: [1.0, 0.5, 3.0]}"),
        ("sum(softmax(x) * y)", "{x: {shape: [20, 30]}, y: {shape: [20, 30]}}"),  # fd samples
    ],
)
def test_run_case_twice_gives_identical_comparison_rows(expr, inputs):
    case = case_of(expr, inputs, "[float64, float32]")
    for dtype in case.dtypes:
        first, second = (run_case(case, dtype, make_engines()) for _ in range(2))
        assert pd.DataFrame(first.comparisons).equals(pd.DataFrame(second.comparisons))
        assert {k: v for k, v in vars(first.case).items() if k != "seconds"} == {
            k: v for k, v in vars(second.case).items() if k != "seconds"
        }
        assert first.errors.keys() == second.errors.keys()
        for key in first.errors:
            np.testing.assert_array_equal(first.errors[key], second.errors[key])


# --- a function that bends inside the stencil -----------------------------------------------

CHAOTIC_RNN = """\
name: rnn-00597
inputs:
  x: {shape: [3, 15, 4], init: normal, scale: 0.368, seed: 1497052504}
  h0: {shape: [3, 6], init: normal, scale: 2.6698, seed: 1394509268}
  wx: {shape: [4, 6], init: normal, scale: 0.2926, seed: 1416044000}
  wh: {shape: [6, 6], init: normal, scale: 2.9444, seed: 1610504373}
  b: {shape: [6], init: normal, scale: 0.7393, seed: 24140042}
expr: rnn(x, h0, wx, wh, b)
"""


def test_a_chaotic_recurrence_is_differenced_at_the_scale_where_it_is_smooth():
    """(Found by benchmarks/false_alarms.py; the name seeds the cotangent.) 15 steps with
    recurrent weights of scale 3: at the first stencil (h = 2^-9) the four
    points of wh[0, 5] agree on a slope of -1134 with an error estimate of 348, where the
    tangent's slope is 4858. The estimate's truncation error is 30% of it, so the element goes
    round again; the estimates of the two stencils disagree by far more than the wider one
    claimed, which is then its error, and the narrower rounds win."""
    [case] = load_text(CHAOTIC_RNN)
    cotangent = case.cotangent("float64")
    exact = NumpyEngine().vjp(case.graph, case.arrays("float64"), case.wrt, cotangent).grads["wh"]
    found = FiniteDifferences().vjp(case.graph, case.arrays("float64"), case.wrt, cotangent)
    assert exact[0, 5] == pytest.approx(4858.0459, rel=1e-6)
    assert abs(found.grads["wh"][0, 5] - exact[0, 5]) <= found.grad_err["wh"][0, 5]
    np.testing.assert_allclose(found.grads["wh"], exact, rtol=1e-3)
    for dtype in ("float64", "float32"):
        result = run_case(case, dtype, make_engines(["numpy", "fd", "torch"]))
        assert result.case.verdict == "PASS", result.case.message


# --- a dtype that overflows ----------------------------------------------------------------

OVERFLOW = "sum(1 / (1 + exp(-100 * x)))"  # exp(100) is inf in float32


def test_an_overflow_every_exact_engine_shares_is_the_dtypes_not_fds():
    """In float32 numpy, torch and jax all give NaN for d/dx at x = -1 (inf / inf); fd, in
    float64, a finite 0-ish slope. NONFINITE, and no engine to blame: the exact engines
    agree, and fd is right about the float64 function."""
    case = case_of(OVERFLOW, "{x: [-1.0, 0.5, -0.2]}", "[float32, float64]")
    float32, float64 = run_all(case)
    assert (float32.case.verdict, float32.case.blame) == ("NONFINITE", "")
    assert (float64.case.verdict, float64.case.blame) == ("PASS", "")


def test_one_engine_alone_with_the_non_finite_numbers_is_blamed():
    """A backward that returns NaN where fd is finite, with no other exact engine in the same
    places: the NaN is that engine's, beside fd alone as beside fd and torch."""
    case = case_of(OVERFLOW, "{x: [-1.0, 0.5, -0.2]}", "[float64]")
    for others in (["fd"], ["fd", "torch"]):
        result = run_case(case, "float64", [fault_engines.NanGrads(), *make_engines(others)])
        assert result.case.verdict == "NONFINITE"
        assert "nan-grads" in result.case.blame.split()
    assert result.case.blame == "nan-grads"


# --- float32 underflow ------------------------------------------------------------------------

UNDERFLOW = {  # values among float32's subnormals, where a rounding step errs absolutely
    "product": ("a * b * c", "{a: 3.0e-45, b: 0.3, c: 0.7}"),
    # found by `gradcheck fuzz cases/lstm/lstm-hand.yaml --dtypes float64,float32`: the cell
    # state 0.5 * tanh(1.4e-45) rounds to 0 in float32
    "lstm": (
        "sum(lstm(x, h0, c0, wx, wh, b))",
        "{x: [[[0.0]]], h0: [[0.0]], c0: [[0.0]], wx: [[0.0, 0.0, 0.0, 0.0]], "
        "wh: [[0.0, 0.0, 0.0, 0.0]], b: [2.2e-45, 2.2e-45, 2.2e-45, 2.2e-45]}",
    ),
}


@pytest.mark.parametrize("name", UNDERFLOW)
def test_float32_underflow_is_rounding_not_a_failure(name):
    case = case_of(*UNDERFLOW[name], dtypes="[float32]")
    [result] = run_all(case, make_engines(["numpy", "fd", "torch"]))
    assert {r.verdict for r in result.comparisons} == {Verdict.PASS}, [
        (r.param, r.engine_a, r.engine_b, r.message) for r in result.comparisons
    ]


# --- a forward that rounds far above eps ----------------------------------------------------

IDENTICAL_ROWS = """\
name: bn-identical-rows
inputs:
  x: {value: [[0.3, -1.2, 0.8], [0.3, -1.2, 0.8], [0.3, -1.2, 0.8],
              [0.3, -1.2, 0.8], [0.3, -1.2, 0.8]]}
  w: {shape: [3, 4], init: normal}
  gamma: {shape: [4], init: uniform, low: 0.5, high: 2}
  beta: {shape: [4], init: normal, scale: 0.5}
expr: sum(relu(batchnorm(x @ w, gamma, beta)) ** 2)
"""


def test_a_batch_norm_over_identical_rows_is_not_blamed_on_fd():
    """Every row of x equal: the variance is 0 and x - mean is pure rounding, amplified by
    the batch norm far beyond fd's modelled few eps of |f|. The true gradient of x is 0;
    fd's estimate carried that noise with too small an error estimate (FAIL blamed on fd,
    tol ratio 1.23, found by `gradcheck fuzz`). fd now measures f's noise beside x."""
    [case] = load_text(IDENTICAL_ROWS)
    result = run_case(case, "float64", [NumpyEngine(), FiniteDifferences()])
    [row] = [r for r in result.comparisons if r.param == "x"]
    assert result.case.verdict == "PASS" and abs(row.value_a) < 1e-12  # numpy: 0, up to rounding
