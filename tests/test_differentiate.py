"""`gradcheck.differentiate` on plain callables: known derivatives, kinks, in place and
batched giving the same numbers, chunking under a tiny memory budget."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

import gradcheck
from gradcheck.engines.fd import accepts_stacks

rng = np.random.default_rng(11)
X = rng.normal(size=(4, 5))


def cubic(x):  # works on one x and on a stack of them (sums the last axes)
    return np.sum(x**3 - 2 * x * x + 0.5 * x, axis=tuple(range(-X.ndim, 0)))


def test_hand_values_of_a_polynomial():
    # d/dx of x^3 - 2x^2 + x/2 at x = 2 is 12 - 8 + 0.5 = 4.5; at x = -1: 3 + 4 + 0.5 = 7.5
    found = gradcheck.differentiate(
        lambda x: float(np.sum(x**3 - 2 * x * x + 0.5 * x)), np.array([2.0, -1.0, 0.0])
    )
    np.testing.assert_allclose(found.grad, [4.5, 7.5, 0.5], rtol=1e-10, atol=1e-10)
    assert found.checked.all() and not found.kink.any()
    assert np.all(np.abs(found.grad - [4.5, 7.5, 0.5]) <= found.err)


def test_exp_and_a_product_of_inputs():
    found = gradcheck.differentiate(lambda x: float(np.exp(x[0]) * np.sin(x[1])), [1.0, 0.5])
    expected = [np.e * np.sin(0.5), np.e * np.cos(0.5)]
    np.testing.assert_allclose(found.grad, expected, rtol=1e-9)
    assert np.all(found.err < 1e-6)


def test_the_callers_array_is_not_changed():
    x = X.copy()
    gradcheck.differentiate(cubic, x)
    assert np.array_equal(x, X)


@pytest.mark.parametrize("vectorized", [True, False])
def test_cubic_is_exact_in_place_and_batched(vectorized):
    found = gradcheck.differentiate(cubic, X, vectorized=vectorized)
    assert found.batched is vectorized
    np.testing.assert_allclose(found.grad, 3 * X**2 - 4 * X + 0.5, rtol=1e-9, atol=1e-9)


def test_batched_and_in_place_give_the_same_numbers():
    batched = gradcheck.differentiate(cubic, X, vectorized=True)
    in_place = gradcheck.differentiate(cubic, X, vectorized=False)
    np.testing.assert_allclose(batched.grad, in_place.grad, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(batched.err, in_place.err, rtol=1e-6, atol=1e-14)


def test_chunks_under_a_tiny_budget_give_the_same_numbers():
    whole = gradcheck.differentiate(cubic, X, vectorized=True)
    # one row (one perturbed input) per call
    tiny = gradcheck.differentiate(cubic, X, vectorized=True, memory_budget=1, row_bytes=1)
    some = gradcheck.differentiate(
        cubic, X, vectorized=True, memory_budget=7 * X.nbytes, row_bytes=X.nbytes
    )
    for other in (tiny, some):
        assert np.array_equal(other.grad, whole.grad) and np.array_equal(other.err, whole.err)


def test_a_stacked_call_is_detected_and_a_full_reduction_is_not():
    assert accepts_stacks(cubic, X)
    assert not accepts_stacks(lambda x: float(np.sum(x**2)), X)  # a scalar for a stack
    assert not accepts_stacks(lambda x: np.sum(x**2, axis=0), X)  # wrong axis: values differ
    found = gradcheck.differentiate(lambda x: float(np.sum(np.exp(x))), X)
    assert not found.batched
    np.testing.assert_allclose(found.grad, np.exp(X), rtol=1e-9)


def test_a_subset_of_elements():
    found = gradcheck.differentiate(cubic, X, indices=[0, 7, 19])
    assert found.checked.sum() == 3 and found.checked.reshape(-1)[[0, 7, 19]].all()
    assert np.isnan(found.grad[~found.checked]).all()
    np.testing.assert_allclose(
        found.grad[found.checked], (3 * X**2 - 4 * X + 0.5)[found.checked], rtol=1e-9, atol=1e-9
    )


def test_abs_kink_on_it_near_it_and_far_from_it():
    x = np.array([0.0, 1e-6, -1e-6, 1e-9, 2.0, 1e-13])
    found = gradcheck.differentiate(lambda v: np.sum(np.abs(v), axis=-1), x)
    assert found.kink.tolist() == [True, False, False, False, False, True]
    np.testing.assert_allclose(found.grad[1:5], [1, -1, 1, 1], rtol=1e-6)
    # a kink 1e-9 away is past the narrowest central stencil: one-sided from the smooth side
    assert abs(found.grad[3] - 1) <= found.err[3] < 1e-4
    # how far the kink was: 0 on it, about 1e-13 where it is closer than anything resolves
    assert found.kink_distance[0] == 0 and 5e-14 < found.kink_distance[5] < 2e-13
    assert np.isnan(found.kink_distance[~found.kink]).all()


def test_a_function_that_computes_as_zero_keeps_an_absolute_noise_floor():
    """(1 + 1e-21 v) - 1 is 0 in float64 for every v near 0, while its derivative is 1e-21:
    a saturated cross-entropy computes 0 alike while its gradient is 1e-21. fd's model of
    f's rounding keeps 64 eps absolute, so its error estimate covers the 1e-21 it cannot
    see (without that floor, 14 of 1,000 random two-layer nets FAILed, blamed on fd). The
    cost: a kink in a function much smaller than 1 (1e-105 |v|) stays unseen."""
    found = gradcheck.differentiate(lambda v: np.sum((1 + 1e-21 * v) - 1, axis=-1), np.zeros(2))
    assert np.all(found.grad == 0) and np.all(found.err >= 1e-21)


def test_two_kinks_closer_than_the_fourth_stencil_one_of_them_at_x():
    """Kinks at 0 and 1e-9 look, to a stencil 2e-9 wide, like one kink beside x = 0 (the
    old fd stepped around it from the left: slope 0, and the engines' subgradients FAILed
    against it); a narrower stencil sees the one at x. A single kink 1e-9 away still
    gives the one-sided slope."""
    two = gradcheck.differentiate(
        lambda v: np.sum(np.abs(v) + np.abs(v - 1e-9), axis=-1), np.zeros(1)
    )
    assert two.kink.tolist() == [True] and two.kink_distance[0] < 1e-10
    one = gradcheck.differentiate(lambda v: np.sum(np.abs(v - 1e-9), axis=-1), np.zeros(1))
    assert not one.kink[0] and abs(one.grad[0] + 1) <= one.err[0] < 1e-4


def noisy_square(v):
    """sum(v^2) plus a rounding-like error of 1e-9: a pseudo-random function of the input's
    bits (as a forward that cancels badly errs), one per row of a stack."""
    rows = np.asarray(v).reshape(-1, np.shape(v)[-1])
    bits = np.array([zlib.crc32(row.tobytes()) for row in rows]) / 2**32 - 0.5
    return np.sum(v * v, axis=-1) + 2e-9 * bits.reshape(np.shape(v)[:-1])


def test_the_error_estimate_covers_a_forward_that_rounds_far_above_eps():
    """fd's model of f's rounding is a few eps of |f|; this f errs by 1e-9, and at the
    narrow stencils that noise, over h, is the whole error. The noise measured beside x
    carries it (a batch norm over equal rows errs so: tests/test_fd_kinks.py)."""
    x = np.linspace(-1.0, 1.5, 8)
    found = gradcheck.differentiate(noisy_square, x)
    assert not found.kink.any()
    assert np.all(np.abs(found.grad - 2 * x) <= found.err)
    assert np.all(found.err < 1e-4)
    clean = gradcheck.differentiate(lambda v: np.sum(v * v, axis=-1), x)
    assert np.all(clean.err < 1e-8)  # a forward that rounds at eps: unchanged


def test_a_kink_downstream_of_the_element():
    # relu(3x - 1.5 + 1e-6) at x = 0.5: the relu input is 1e-6 from its kink
    def f(v):
        return float(np.sum(np.maximum(3 * v - 1.5 + 1e-6, 0) * 2 + v * v))

    found = gradcheck.differentiate(f, np.array([0.5]))
    assert not found.kink[0] and abs(found.grad[0] - (6 + 1)) < 1e-6


@pytest.mark.parametrize("vectorized", [None, False])
def test_directional_derivatives_of_a_callable(vectorized):
    vectors = rng.normal(size=(3,) + X.shape)
    found = gradcheck.differentiate_along(cubic, X, vectors, vectorized=vectorized)
    along = np.tensordot(vectors, 3 * X**2 - 4 * X + 0.5, axes=2)  # <f'(x), v>
    assert found.grad.shape == (3,) and found.batched is (vectorized is None)
    np.testing.assert_allclose(found.grad, along, rtol=1e-9)
    assert np.all(np.abs(found.grad - along) <= found.err)
    wrong = np.tensordot(vectors, 3 * X**2 - 4 * X, axes=2)  # the 0.5 forgotten
    assert np.all(np.abs(found.grad - wrong) > 1000 * found.err)


def test_a_function_that_is_not_scalar_is_refused_clearly():
    with pytest.raises(ValueError, match=r"scalar function; f\(x\) has shape \[4, 5\]"):
        gradcheck.differentiate(np.tanh, X)
