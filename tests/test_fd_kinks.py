"""Kinks inside fd's stencil but not at the point: a relu input or a max-pool's top two
values closer than the stencil is wide. Such a point is differentiable and must PASS; a
point on the kink is NONDIFF, with how far the kink was."""

from __future__ import annotations

import math

import pytest

import gradcheck
from gradcheck.engines import FiniteDifferences, NumpyEngine
from helpers import load_one

RELU = """\
    name: relu-near-kink
    inputs:
      x: [{x}]
      w: [[0.5, -1.0, 2.0]]
    wrt: [x]
    expr: sum(tanh(w @ relu(x - 1)) * 3)
    """
# the top two values of the max-pool window are `gap` apart
MAXPOOL = """\
    name: maxpool-near-tie
    inputs:
      x: [{x}]
    expr: sum(maxpool2d(reshape(x, shape=[1, 1, 2, 2]), size=2, stride=2) * 3)
    """


def verdict_of(tmp_path, text: str):
    """The case's verdict, and its comparison row of numpy against fd for input x."""
    case = load_one(tmp_path, text)
    result = gradcheck.run_case(case, "float64", [NumpyEngine(), FiniteDifferences()])
    [row] = [r for r in result.comparisons if r.param == "x" and "fd" in (r.engine_a, r.engine_b)]
    return result.case.verdict, row


@pytest.mark.parametrize(
    "x, verdict, kinks, distance",
    [
        ("1.000001, 3.0, 0.2", "PASS", 0, None),  # only x[0]'s stencil straddles the kink
        ("1.0, 3.0, 0.2", "NONDIFF", 1, 0.0),  # x[0] sits on it
        ("1.0000000000001, 3.0, 0.2", "NONDIFF", 1, 1e-13),  # closer than any stencil resolves
    ],
)
def test_relu_one_millionth_from_its_kink(tmp_path, x, verdict, kinks, distance):
    case_verdict, row = verdict_of(tmp_path, RELU.format(x=x))
    assert (case_verdict, row.kinks) == (verdict, kinks)
    if distance is None:
        assert math.isnan(row.kink_distance)
    else:
        # estimated from the slopes: curvature downstream blurs it by about 1e-14
        assert row.kink_distance == pytest.approx(distance, abs=3e-14)


@pytest.mark.parametrize(
    "x, verdict, kinks",
    [
        ("1.0, 0.9999, 0.2, -0.3", "PASS", 0),  # top two 1e-4 apart
        ("1.0, 1.0, 0.2, -0.3", "NONDIFF", 2),  # tied
    ],
)
def test_maxpool_near_a_tie(tmp_path, x, verdict, kinks):
    case_verdict, row = verdict_of(tmp_path, MAXPOOL.format(x=x))
    assert (case_verdict, row.kinks) == (verdict, kinks)
    assert row.kink_distance == 0.0 if kinks else math.isnan(row.kink_distance)


def test_a_kink_whose_jump_is_tiny_beside_f_is_flagged_before_noise_drowns_it():
    """leaky_relu at 0 inside a loss of about 0.7, the slope jumping by 3e-5 (found by
    `gradcheck fuzz cases/elementwise/activations-mlp.yaml`): three stencils see the kink at
    x, the fourth and narrowest would see only its own rounding noise, so the kink is flagged
    where it is still seen, and numpy's and jax's subgradients at 0 (0.05 and 1) are NONDIFF,
    not a FAIL."""
    import numpy as np

    def f(x):
        return 0.7 + 3.2e-5 * float(np.sum(np.where(x > 0, x, 0.05 * x)))

    found = gradcheck.differentiate(f, np.zeros(1))
    assert found.kink.tolist() == [True]
    smooth = gradcheck.differentiate(lambda x: 0.7 + 3.2e-5 * float(np.sum(x)), np.zeros(1))
    assert smooth.kink.tolist() == [False]


# the catalog's svm-classes-first at W = X = 0 (found by `gradcheck fuzz`): every score is
# its bias, b[2] and b[4] sit on a margin's kink, and a second kink is 1e-7 from x
SVM_TWO_KINKS = """\
    name: svm-two-kinks
    inputs:
      X: {shape: [3, 4], init: zeros}
      W: {shape: [4, 5], init: zeros}
      b: {value: [[1.0e-7], [0], [-1], [0], [0]]}
      y: {value: [[4, 0, 2]], dtype: int64}
    graph:
      scores: transpose(W) @ transpose(X) + b
      margins: maximum(scores - take_along_axis(scores, y, axis=0) + 1, 0)
      loss: sum(margins) / 3 - 1
    wrt: [b]
    """


def test_two_kinks_within_the_narrowest_stencil_are_nondiff_not_a_failure(tmp_path):
    """Was FAIL, blamed on fd (tol ratio 6.8e4): fd stepped around the pair as one kink."""
    case = load_one(tmp_path, SVM_TWO_KINKS)
    result = gradcheck.run_case(case, "float64", [NumpyEngine(), FiniteDifferences()])
    [row] = [r for r in result.comparisons if r.param == "b"]
    assert (result.case.verdict, row.kinks) == ("NONDIFF", 2)


# found by `gradcheck fuzz cases/elementwise/activations-mlp.yaml`: w2 = 0 puts elu (alpha
# 0.5) and leaky_relu at 0 together; the slope jumps by 3.1e-5 in a loss of 0.69
ELU_AT_ZERO = """\
    name: activations-mlp-fuzz
    inputs:
      x: {value: [[-2.0], [0.0]]}
      w1: {value: [[2.0]]}
      w2: {value: [[0.0, 0.0]]}
      w3: {value: [[1.0], [1.0]]}
    graph:
      h1: gelu(x @ w1)
      h2: elu(h1 @ w2, alpha=0.5)
      h3: leaky_relu(h2 @ w3, slope=0.05)
      loss: mean(softplus(h3))
    """


def test_a_jump_just_above_the_next_stencils_floor_is_flagged_where_it_is_seen(tmp_path):
    """The third stencil saw the kink, and its jump was 1.02 times the fourth's floor: the
    fourth could not see it, and fd kept its central estimate, the mean of the two slopes
    (FAIL against numpy's right-hand slope, tol ratio 1.01, blamed on fd). A kink is now
    flagged at the last scale that sees it with a margin of two over the next one's floor."""
    case = load_one(tmp_path, ELU_AT_ZERO)
    result = gradcheck.run_case(case, "float64", [NumpyEngine(), FiniteDifferences()])
    [row] = [r for r in result.comparisons if r.param == "w2"]
    assert (result.case.verdict, row.kinks) == ("NONDIFF", 2)
