"""The comparator: judge() numbers and verdicts, tolerances, blame, and the whole path from a
YAML case through `run_case` to a verdict that names the wrong engine."""

from __future__ import annotations

import math

import numpy as np
import pytest

import gradcheck
import reference_impls
from gradcheck.engines import FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from gradcheck.harness.compare import (
    EXACT,
    FD_ERR_FACTOR,
    WITH_FD,
    Tolerance,
    blame,
    judge,
    tolerance_for,
)
from gradcheck.loading.models import Tolerance as CaseTolerance
from helpers import COLAH_E, TANH_LAYER, load_one
from reference_impls import Primitive

TIGHT = Tolerance(rtol=1e-7, atol=0.0)


# --- judge: the numbers ---------------------------------------------------------------------


def test_judge_numbers_follow_the_definition():
    a = np.array([[1.0, -2.0], [4.0, 0.5]])
    b = np.array([[1.0, -2.0 + 3e-6], [4.0 + 1e-6, 0.5]])
    tol = Tolerance(rtol=1e-7, atol=1e-9)
    j = judge(a, b, tol)
    diff = np.abs(a - b)
    scale = np.maximum(np.abs(a), np.abs(b))
    atol = 1e-9 * 4.000001  # atol is relative to the larger magnitude
    ratio = diff / (atol + 1e-7 * scale)
    assert j.verdict == "FAIL"
    assert j.max_abs_err == pytest.approx(diff.max(), rel=1e-12)
    assert j.max_abs_err == pytest.approx(3e-6, rel=1e-6)
    assert j.max_rel_err == pytest.approx((diff / scale).max(), rel=1e-12)
    assert j.tol_ratio == pytest.approx(ratio.max(), rel=1e-12)
    assert j.tol_ratio == pytest.approx(3e-6 / (atol + 1e-7 * 2.0), rel=1e-5)  # ~15
    assert j.worst_index == (0, 1)
    assert j.value_a == -2.0 and j.value_b == -2.0 + 3e-6
    assert j.atol == pytest.approx(atol, rel=1e-12)
    assert j.rtol == 1e-7
    assert j.checked == 4 and j.kinks == 0
    assert "2 of 4" in j.message


def test_worst_index_is_by_tolerance_ratio_not_absolute_error():
    # absolute error is larger at [0], but relative to its magnitude [1] is worse
    a, b = np.array([1000.0, 1.0]), np.array([1000.0 + 1e-3, 1.0 + 1e-5])
    j = judge(a, b, Tolerance(rtol=1e-7, atol=0.0))
    assert j.worst_index == (1,)
    assert j.max_abs_err == pytest.approx(1e-3, rel=1e-6)
    assert j.tol_ratio == pytest.approx(1e-5 / (1e-7 * (1.0 + 1e-5)), rel=1e-6)


def test_tol_ratio_of_one_passes_and_just_above_fails():
    a = np.array([2.0])
    tol = Tolerance(rtol=1e-3, atol=0.0)
    inside = judge(a, a * (1 + 0.999e-3), tol)
    outside = judge(a, a * (1 + 1.01e-3), tol)
    assert inside.verdict == "PASS" and inside.tol_ratio <= 1
    assert inside.tol_ratio == pytest.approx(0.999 / (1 + 0.999e-3), rel=1e-6)
    assert outside.verdict == "FAIL" and outside.tol_ratio > 1


def test_identical_arrays_pass_with_zero_errors():
    a = np.linspace(-3, 3, 7).reshape(7)
    j = judge(a, a.copy(), TIGHT)
    assert (j.verdict, j.max_abs_err, j.max_rel_err, j.tol_ratio) == ("PASS", 0.0, 0.0, 0.0)
    assert j.abs_err is None  # element-wise errors are kept for failures only


def test_zeros_on_both_sides_pass_even_with_zero_tolerance():
    j = judge(np.zeros(3), np.zeros(3), Tolerance(rtol=1e-7, atol=0.0))
    assert j.verdict == "PASS" and j.tol_ratio == 0.0


def test_scalars_are_judged():
    j = judge(6.0, 6.5, Tolerance(rtol=1e-7, atol=1e-9))
    assert j.verdict == "FAIL"
    assert j.max_abs_err == 0.5 and j.worst_index == ()
    assert j.max_rel_err == pytest.approx(0.5 / 6.5)


def test_shape_mismatch_fails_with_infinite_ratio():
    j = judge(np.zeros((2, 3)), np.zeros((3, 2)), TIGHT)
    assert j.verdict == "FAIL" and math.isinf(j.tol_ratio)
    assert "[2, 3]" in j.message and "[3, 2]" in j.message


def test_float32_inputs_are_judged_in_float64():
    a = np.float32([1.0, 2.0])
    b = a.astype(np.float64) + np.array([0.0, 2.0**-30])
    j = judge(a, b, TIGHT)
    assert j.max_abs_err == 2.0**-30


# --- non-finite numbers never pass ----------------------------------------------------------


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("side", ["a", "b", "both"])
def test_non_finite_is_nonfinite(bad, side):
    a, b = np.array([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0])
    if side in ("a", "both"):
        a[1] = bad
    if side in ("b", "both"):
        b[1] = bad
    j = judge(a, b, Tolerance(rtol=1e30, atol=1e30))  # no tolerance can save it
    assert j.verdict == "NONFINITE", j
    assert "1 non-finite" in j.message


def test_nan_in_a_kink_element_is_still_nonfinite():
    a, b = np.array([np.nan, 1.0]), np.array([0.0, 1.0])
    j = judge(a, b, TIGHT, kinks=np.array([True, False]))
    assert j.verdict == "NONFINITE"


def test_nan_outside_the_checked_mask_is_ignored():
    """fd leaves the coordinates it did not sample as NaN; those are not compared."""
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, np.nan, 3.0, np.nan])
    j = judge(a, b, TIGHT, checked=np.array([True, False, True, False]))
    assert j.verdict == "PASS" and j.checked == 2


# --- the checked mask, fd error estimates, kinks ---------------------------------------------


def test_checked_mask_limits_the_comparison():
    a = np.array([1.0, 2.0, 3.0, 4.0])
    b = np.array([1.0, 5.0, 3.0, 4.0 + 1e-3])
    masked = judge(a, b, TIGHT, checked=np.array([True, False, True, True]))
    assert masked.verdict == "FAIL"
    assert masked.max_abs_err == pytest.approx(1e-3)  # the unchecked 3.0 error is out
    assert masked.worst_index == (3,) and masked.checked == 3
    assert judge(a, b, TIGHT, checked=np.array([True, False, True, False])).verdict == "PASS"


def test_fd_error_estimate_widens_the_bound_by_its_factor():
    a, b = np.array([1.0]), np.array([1.0 + 1e-4])
    tol = Tolerance(rtol=1e-12, atol=0.0)
    loose = judge(a, b, tol, fd_err=np.array([0.6e-4]))
    tight = judge(a, b, tol, fd_err=np.array([0.4e-4]))
    assert FD_ERR_FACTOR == 2.0
    assert loose.verdict == "PASS" and tight.verdict == "FAIL"
    bound = 1e-12 * (1 + 1e-4) + FD_ERR_FACTOR * 0.4e-4
    assert tight.tol_ratio == pytest.approx(1e-4 / bound, rel=1e-6)
    assert tight.fd_err == pytest.approx(0.4e-4)


def test_failures_only_at_kinks_are_nondiff():
    a = np.array([0.0, 1.0, 2.0])
    b = np.array([0.5, 1.0, 2.0])  # relu'(0): 0 by backprop, 1/2 by differences
    j = judge(a, b, TIGHT, kinks=np.array([True, False, False]))
    assert j.verdict == "NONDIFF" and j.kinks == 1
    assert j.tol_ratio > 1  # the numbers are still reported
    assert j.max_abs_err == 0.5 and j.worst_index == (0,)


def test_a_failure_away_from_the_kinks_is_still_fail():
    a = np.array([0.0, 1.0, 2.0])
    b = np.array([0.5, 1.0, 2.1])
    j = judge(a, b, TIGHT, kinks=np.array([True, False, False]))
    assert j.verdict == "FAIL"


def test_kinks_outside_the_checked_mask_do_not_count():
    a, b = np.array([0.0, 1.0]), np.array([0.5, 1.0])
    j = judge(a, b, TIGHT, checked=np.array([True, False]), kinks=np.array([False, True]))
    assert j.verdict == "FAIL" and j.kinks == 0 and j.checked == 1
    j = judge(a, b, TIGHT, checked=np.array([True, True]), kinks=np.array([False, True]))
    assert j.verdict == "FAIL" and j.kinks == 1  # a kink elsewhere excuses nothing


# --- tolerances ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "dtype, pair, expected",
    [
        ("float64", ("numpy", "torch"), (1e-7, 1e-9)),
        ("float64", ("numpy", "expect"), (1e-7, 1e-9)),
        ("float64", ("torch", "jax"), (1e-7, 1e-9)),
        ("float64", ("numpy", "fd"), (1e-6, 1e-8)),
        ("float64", ("fd", "expect"), (1e-6, 1e-8)),
        ("float32", ("numpy", "torch"), (1e-4, 2e-5)),
        ("float32", ("fd", "jax"), (1e-4, 2e-5)),
    ],
)
def test_tolerance_for_dtype_and_pair(dtype, pair, expected):
    tol = tolerance_for(dtype, numerical="fd" in pair)
    assert (tol.rtol, tol.atol) == expected


def test_exact_pairs_are_tighter_than_fd_pairs_and_float64_than_float32():
    assert EXACT["float64"].rtol < WITH_FD["float64"].rtol
    assert EXACT["float64"].rtol < EXACT["float32"].rtol


def test_case_override_replaces_only_what_it_names():
    tol = tolerance_for("float64", False, CaseTolerance(rtol=1e-3))
    assert (tol.rtol, tol.atol) == (1e-3, 1e-9)
    tol = tolerance_for("float32", True, CaseTolerance(atol=0.0))
    assert (tol.rtol, tol.atol) == (1e-4, 0.0)
    tol = tolerance_for("float64", True, CaseTolerance(rtol=0.5, atol=0.25))
    assert (tol.rtol, tol.atol) == (0.5, 0.25)


# --- blame: the minimum vertex cover of the disagreement graph --------------------------------

ENGINES5 = ["numpy", "fd", "torch", "jax", "expect"]


@pytest.mark.parametrize(
    "disagreeing, expected",
    [
        (set(), []),
        ({("numpy", "fd"), ("numpy", "torch"), ("numpy", "jax"), ("numpy", "expect")}, ["numpy"]),
        (
            {("numpy", "expect"), ("fd", "expect"), ("torch", "expect"), ("jax", "expect")},
            ["expect"],
        ),
        # one engine disagrees with only some of the others: still that one alone
        ({("numpy", "jax"), ("fd", "jax")}, ["jax"]),
        # two wrong engines that also disagree with each other
        (
            {
                ("numpy", "fd"),
                ("numpy", "torch"),
                ("numpy", "expect"),
                ("jax", "fd"),
                ("jax", "torch"),
                ("jax", "expect"),
                ("numpy", "jax"),
            },
            ["numpy", "jax"],
        ),
        # a lone disagreeing pair: either could be wrong, so both are named
        ({("torch", "jax")}, ["torch", "jax"]),
        # two disjoint disagreeing pairs: four equally small covers, union of all
        ({("numpy", "fd"), ("torch", "jax")}, ["numpy", "fd", "torch", "jax"]),
        # a triangle: every 2-cover works; the union is the three
        ({("numpy", "fd"), ("fd", "torch"), ("numpy", "torch")}, ["numpy", "fd", "torch"]),
        # a path a-b-c: {b} covers it
        ({("numpy", "fd"), ("fd", "torch")}, ["fd"]),
    ],
)
def test_blame_is_the_minimum_cover(disagreeing, expected):
    assert blame(ENGINES5, disagreeing) == expected


def test_blame_keeps_the_engines_order():
    assert blame(["b", "a"], {("a", "b")}) == ["b", "a"]
    assert blame(["x", "y", "z"], {("z", "x"), ("z", "y")}) == ["z"]


def test_blame_with_two_engines_cannot_decide():
    assert blame(["numpy", "torch"], {("numpy", "torch")}) == ["numpy", "torch"]


# --- end to end: a case through run_case ----------------------------------------------------


@pytest.fixture(scope="module")
def engines():
    return [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine()]


def _wrong_tanh_ops():
    """A user's tanh backward with a classic slip: 1 - out instead of 1 - out**2."""
    ops = dict(reference_impls.OPS)
    ops["tanh"] = Primitive(ops["tanh"].forward, (lambda g, out, x: g * (1 - out),))
    return ops


def test_everything_agrees_passes(tmp_path, engines):
    case = load_one(tmp_path, TANH_LAYER)
    for dtype in case.dtypes:
        result = gradcheck.run_case(case, dtype, engines)
        assert result.case.verdict == "PASS", result.case
        assert result.case.blame == "" and result.case.failed == 0
        # (value) + x + w, each with the 6 pairs of 4 engines
        assert len(result.comparisons) == 18
        assert all(r.verdict == "PASS" and r.tol_ratio <= 1 for r in result.comparisons)
        assert {r.param for r in result.comparisons} == {"(value)", "x", "w"}


def test_wrong_tanh_backward_fails_and_is_blamed_on_numpy_alone(tmp_path, engines):
    case = load_one(tmp_path, TANH_LAYER)
    mine = NumpyEngine(_wrong_tanh_ops(), name="numpy")
    for dtype in case.dtypes:
        result = gradcheck.run_case(case, dtype, [mine] + engines[1:])
        assert result.case.verdict == "FAIL"
        assert result.case.blame == "numpy"
        rows = {(r.param, r.engine_a, r.engine_b): r for r in result.comparisons}
        for param in ("x", "w"):
            for other in ("fd", "torch", "jax"):
                assert rows[(param, "numpy", other)].verdict == "FAIL"
                assert rows[(param, "numpy", other)].tol_ratio > 10
        # the forward value is right, and the other engines agree among themselves
        assert all(
            r.verdict == "PASS" for k, r in rows.items() if k[0] == "(value)" or "numpy" not in k
        )


def test_a_custom_engine_is_blamed_by_its_own_name(tmp_path, engines):
    """The same slip in an engine called 'mine' is blamed on 'mine'."""
    case = load_one(tmp_path, TANH_LAYER)
    mine = NumpyEngine(_wrong_tanh_ops(), name="mine")
    result = gradcheck.run_case(case, "float64", engines + [mine])
    assert result.case.verdict == "FAIL" and result.case.blame == "mine"


def test_wrong_expect_is_blamed_on_expect_alone(tmp_path, engines):
    case = load_one(tmp_path, COLAH_E.replace("grad: {a: 2.0, b: 5.0}", "grad: {a: 2.0, b: 4.0}"))
    result = gradcheck.run_case(case, "float64", engines)
    assert result.case.verdict == "FAIL"
    assert result.case.blame == "expect"
    bad = [r for r in result.comparisons if r.verdict != "PASS"]
    assert {(r.param, r.engine_b) for r in bad} == {("b", "expect")}
    assert {r.engine_a for r in bad} == {"numpy", "fd", "torch", "jax"}
    for r in bad:
        assert r.max_abs_err == pytest.approx(1.0, rel=1e-6)
        assert r.value_b == 4.0 and r.value_a == pytest.approx(5.0, rel=1e-8)


def test_right_expect_passes_on_the_seed_numbers(tmp_path, engines):
    case = load_one(tmp_path, COLAH_E)
    result = gradcheck.run_case(case, "float64", engines)
    assert result.case.verdict == "PASS"
    expect_rows = [r for r in result.comparisons if "expect" in (r.engine_a, r.engine_b)]
    assert len(expect_rows) == 4 * 3  # (value), a, b against each of the 4 engines
    assert all(r.max_abs_err < 1e-9 for r in expect_rows)


def test_relu_at_zero_is_nondiff_not_fail(tmp_path, engines):
    case = load_one(
        tmp_path,
        """\
        name: relu-kink
        inputs:
          x: [-1.0, 0.0, 2.0]
        expr: sum(relu(x) * 3)
        """,
    )
    result = gradcheck.run_case(case, "float64", engines)
    assert result.case.verdict == "NONDIFF", result.case
    fd_rows = [r for r in result.comparisons if r.param == "x" and "fd" in (r.engine_a, r.engine_b)]
    assert {r.verdict for r in fd_rows} == {"NONDIFF"}
    assert all(r.kinks == 1 and r.worst_index == (1,) for r in fd_rows)
    assert all(
        getattr(r, "value_a" if r.engine_a == "fd" else "value_b") == pytest.approx(1.5)
        for r in fd_rows
    )  # differences straddle the kink: half of 3


def test_wrong_backward_at_a_kink_input_is_still_fail(tmp_path, engines):
    """A kink elsewhere must not hide a real error: relu' = 1 everywhere is wrong at -1."""
    ops = dict(reference_impls.OPS)
    ops["relu"] = Primitive(ops["relu"].forward, (lambda g, out, x: g,))
    case = load_one(
        tmp_path,
        """\
        name: relu-kink-wrong
        inputs:
          x: [-1.0, 0.0, 2.0]
        expr: sum(relu(x) * 3)
        """,
    )
    result = gradcheck.run_case(case, "float64", [NumpyEngine(ops)] + engines[1:])
    assert result.case.verdict == "FAIL" and result.case.blame == "numpy"


def test_log_of_zero_is_nonfinite(tmp_path, engines):
    case = load_one(
        tmp_path,
        """\
        name: log-zero
        inputs:
          x: [0.0, 1.0]
        expr: sum(log(x))
        """,
    )
    result = gradcheck.run_case(case, "float64", engines)
    assert result.case.verdict == "NONFINITE"
    assert all(r.verdict == "NONFINITE" for r in result.comparisons)


def test_an_engine_that_raises_is_an_error_blamed_on_it(tmp_path, engines):
    class Broken:
        name = "broken"

        def vjp(self, graph, inputs, wrt, cotangent):
            raise RuntimeError("boom")

    case = load_one(tmp_path, COLAH_E)
    result = gradcheck.run_case(case, "float64", engines + [Broken()])
    assert result.case.verdict == "ERROR"
    assert result.case.blame == "broken"
    assert "boom" in result.case.message


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_differences_below_the_smallest_normal_number_are_no_evidence(dtype):
    """An engine may flush subnormal numbers to zero (XLA on CPU does): below the dtype's
    smallest normal number no tolerance can tell a bug from that; above it they still fail."""
    tiny = float(np.finfo(dtype).tiny)
    tol = tolerance_for(dtype, False, rounding_known=True)
    below = judge(np.array([0.3 * tiny, 0.0]), np.zeros(2), tol)
    above = judge(np.array([300 * tiny, 0.0]), np.array([600 * tiny, 0.0]), tol)
    assert (below.verdict, above.verdict) == ("PASS", "FAIL")
    assert below.atol == tiny


def test_a_subnormal_scale_in_a_layer_passes_with_every_engine(tmp_path):
    """Found by `gradcheck fuzz cases/batchnorm/batchnorm-2d-vjp.yaml`: gamma = 2.2e-311 puts
    the gradient of x among float64's subnormals, which each engine rounds its own way and
    jax flushes to zero."""
    case = load_one(
        tmp_path,
        "name: bn-subnormal\ninputs: {x: [[0.0], [0.0]], gamma: [2.225073858507e-311],"
        " beta: [0.0]}\nexpr: batchnorm(x, gamma, beta)\ndtypes: [float64]\n",
    )
    engines = [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine()]
    result = gradcheck.run_case(case, "float64", engines)
    assert {r.verdict for r in result.comparisons} == {"PASS"}, [
        (r.param, r.engine_a, r.engine_b, r.tol_ratio) for r in result.comparisons
    ]
