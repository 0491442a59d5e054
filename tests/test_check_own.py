"""`gradcheck.check` on a CS231n-style layer set: each correct backward PASSes, each
realistic bug FAILs on the right input with the blame on the user's code alone, in float64
and float32; a wrong forward FAILs on the value row; in-place backwards are harmless."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import cs231n_layers as L
import gradcheck

DTYPES = ["float64", "float32"]
RNG = np.random.default_rng(231)


def _normal(*shape):
    return RNG.standard_normal(shape)


CONV = {"stride": 2, "pad": 1}
POOL = {"size": 2, "stride": 2}


def conv_forward(x, w, b):
    return L.conv_forward_naive(x, w, b, CONV)


def pool_forward(x):
    return L.max_pool_forward_naive(x, POOL)


# layer -> (forward, correct backward, buggy backward, inputs, reference, inputs the bug breaks)
LAYERS = {
    "affine": (
        L.affine_forward,
        L.affine_backward,
        L.affine_backward_db_mean,
        {"x": _normal(3, 2, 3), "w": _normal(6, 4), "b": _normal(4)},
        "reshape(x, shape=[3, 6]) @ w + b",
        {"b"},
    ),
    "batchnorm": (
        L.batchnorm_forward,
        L.batchnorm_backward,
        L.batchnorm_backward_no_var,
        {"x": _normal(6, 4) * 2 + 1, "gamma": _normal(4), "beta": _normal(4)},
        L.BATCHNORM_REFERENCE,
        {"x"},
    ),
    "conv": (
        conv_forward,
        L.conv_backward_naive,
        L.conv_backward_no_stride_in_dw,
        {"x": _normal(2, 3, 7, 7), "w": _normal(4, 3, 3, 3) * 0.3, "b": _normal(4)},
        "conv2d(x, w, b, stride=2, pad=1)",
        {"w"},
    ),
    "maxpool": (
        pool_forward,
        L.max_pool_backward_naive,
        L.max_pool_backward_first,
        {"x": _normal(2, 2, 4, 4)},
        "maxpool2d(x, size=2, stride=2)",
        {"x"},
    ),
    "rnn-step": (
        L.rnn_step_forward,
        L.rnn_step_backward,
        L.rnn_step_backward_no_tanh_to_h,
        {
            "x": _normal(3, 4),
            "prev_h": _normal(3, 5),
            "wx": _normal(4, 5) * 0.5,
            "wh": _normal(5, 5) * 0.5,
            "b": _normal(5),
        },
        "tanh(x @ wx + prev_h @ wh + b)",
        {"prev_h"},
    ),
}
SOFTMAX_INPUTS = {"x": _normal(5, 4), "y": np.array([0, 3, 1, 1, 2])}


def _failing_params(result, dtype) -> set[str]:
    rows = result.comparisons[result.comparisons["dtype"] == dtype]
    return set(rows[rows["verdict"] == "FAIL"]["param"])


def _verdicts(result) -> dict[str, str]:
    return dict(zip(result.cases["dtype"], result.cases["verdict"]))


def _blames(result) -> set[str]:
    return set(result.cases["blame"])


@pytest.mark.parametrize("layer", LAYERS)
def test_a_correct_backward_passes_against_every_engine(layer):
    forward, backward, _, inputs, reference, _ = LAYERS[layer]
    result = gradcheck.check(forward, backward, inputs, reference=reference, dtypes=DTYPES)
    assert _verdicts(result) == {"float64": "PASS", "float32": "PASS"}, str(result)
    engines = set(result.engines["engine"])
    assert engines == {backward.__name__, "numpy", "fd", "torch", "jax"}
    assert result.ok and (result.engines["status"] == "ok").all()


@pytest.mark.parametrize("layer", LAYERS)
def test_a_buggy_backward_fails_blamed_on_the_user_alone(layer):
    forward, _, buggy, inputs, reference, broken = LAYERS[layer]
    result = gradcheck.check(forward, buggy, inputs, reference=reference, dtypes=DTYPES)
    assert _verdicts(result) == {"float64": "FAIL", "float32": "FAIL"}
    assert _blames(result) == {buggy.__name__}
    for dtype in DTYPES:
        assert _failing_params(result, dtype) == broken
        rows = result.comparisons[result.comparisons["dtype"] == dtype]
        # the four engines running the reference agree with each other everywhere
        others = rows[(rows["engine_a"] != buggy.__name__) & (rows["engine_b"] != buggy.__name__)]
        assert len(others) and (others["verdict"] == "PASS").all()
    assert not result.ok


def test_softmax_loss_value_and_gradient_in_one_call():
    result = gradcheck.check_loss(
        L.softmax_loss, SOFTMAX_INPUTS, reference="softmax_cross_entropy(x, y)", dtypes=DTYPES
    )
    assert _verdicts(result) == {"float64": "PASS", "float32": "PASS"}, str(result)
    assert set(result.comparisons["param"]) == {"(value)", "x"}  # y is data


def test_svm_loss_gradients_as_a_dict_against_fd_of_its_own_value():
    result = gradcheck.check_loss(L.svm_loss, SOFTMAX_INPUTS, dtypes=DTYPES)
    assert _verdicts(result) == {"float64": "PASS", "float32": "PASS"}, str(result)
    assert set(result.engines["engine"]) == {"svm_loss", "fd"}
    grads = result.comparisons.query("param == 'x'")
    assert len(grads) == 2 and (grads["tol_ratio"] < 1).all()


def test_a_loss_not_divided_by_n_fails_on_the_value_row():
    result = gradcheck.check_loss(
        L.softmax_loss_not_divided,
        SOFTMAX_INPUTS,
        reference="softmax_cross_entropy(x, y)",
        dtypes=DTYPES,
    )
    assert _verdicts(result) == {"float64": "FAIL", "float32": "FAIL"}
    assert _blames(result) == {"softmax_loss_not_divided"}
    for dtype in DTYPES:
        assert _failing_params(result, dtype) == {"(value)"}
    value = result.comparisons.query("param == '(value)' and engine_b == 'numpy'")
    n = len(SOFTMAX_INPUTS["y"])
    assert np.allclose(value["value_a"], n * value["value_b"], rtol=1e-5)


def test_a_forward_that_disagrees_with_its_reference_fails_on_the_value_row():
    inputs = LAYERS["affine"][3]
    result = gradcheck.check(
        L.affine_forward_minus_b,
        L.affine_backward_minus_b,
        inputs,
        reference="reshape(x, shape=[3, 6]) @ w + b",
        dtypes=DTYPES,
    )
    # the forward is the finding: the blame names it, the headline is about the value
    assert _blames(result) == {"affine_forward_minus_b"}
    assert all(
        m.startswith("the forward disagrees: (value): affine_backward_minus_b vs ")
        for m in result.cases["message"]
    )
    for dtype in DTYPES:
        assert _failing_params(result, dtype) == {"(value)", "b"}


def test_without_a_reference_fd_differentiates_the_users_own_forward():
    forward, backward, buggy, inputs, _, _ = LAYERS["batchnorm"]
    good = gradcheck.check(forward, backward, inputs, dtypes=DTYPES)
    assert _verdicts(good) == {"float64": "PASS", "float32": "PASS"}
    assert set(good.engines["engine"]) == {"batchnorm_backward", "fd"}
    bad = gradcheck.check(forward, buggy, inputs)
    assert _failing_params(bad, "float64") == {"x"}
    # two sources disagree; the Taylor test of your forward says which converges: the
    # backward's remainder shrinks like eps (rate 1), fd's like eps^2
    assert _blames(bad) == {"batchnorm_backward_no_var"}
    rates = dict(zip(bad.taylor["engine"], bad.taylor["rate"]))
    assert rates["batchnorm_backward_no_var"] < 1.2 and rates["fd"] > 1.8, rates
    good_rates = good.taylor.query("dtype == 'float64'")
    assert set(good_rates["verdict"]) == {"PASS"} and (good_rates["rate"] > 1.8).all()


def test_without_a_reference_a_one_percent_error_is_blamed_on_the_layer_alone():
    forward, backward, _, inputs, _, _ = LAYERS["affine"]

    def affine_backward_dw_off(dout, cache):
        dx, dw, db = backward(dout, cache)
        return dx, dw * 1.01, db

    result = gradcheck.check(forward, affine_backward_dw_off, inputs, dtypes=DTYPES)
    assert _verdicts(result) == {"float64": "FAIL", "float32": "FAIL"}
    assert _blames(result) == {"affine_backward_dw_off"}
    assert set(result.taylor.query("verdict == 'FAIL'")["engine"]) == {"affine_backward_dw_off"}


def test_a_backward_writing_into_dout_and_its_cache_passes_and_changes_nothing():
    x = np.array([[1.5, -0.5, 2.0], [-1.0, 0.25, -3.0]])
    kept = x.copy()
    result = gradcheck.check(
        L.relu_forward, L.relu_backward, {"x": x}, reference="relu(x)", dtypes=DTYPES
    )
    assert _verdicts(result) == {"float64": "PASS", "float32": "PASS"}, str(result)
    assert np.array_equal(x, kept)


def test_gradients_may_come_as_a_dict_and_wrt_picks_inputs():
    forward, _, _, inputs, reference, _ = LAYERS["affine"]

    def affine_grads(dout, cache):
        dx, dw, db = L.affine_backward(dout, cache)
        return {"x": dx, "w": dw, "b": db}

    result = gradcheck.check(
        forward, affine_grads, inputs, reference=reference, wrt=["w"], name="mine"
    )
    assert result.ok
    assert set(result.comparisons["param"]) == {"(value)", "w"}
    assert "mine" in set(result.engines["engine"])


def test_a_backward_without_cache_gets_the_inputs():
    def square(x):
        return x**2

    def square_grad(dout, x):
        return 2 * x * dout

    result = gradcheck.check(square, square_grad, {"x": np.array([0.5, -2.0, 3.0])})
    assert result.ok and _verdicts(result) == {"float64": "PASS"}


def test_the_text_is_the_discrepancy_table():
    forward, _, buggy, inputs, reference, _ = LAYERS["rnn-step"]
    text = str(gradcheck.check(forward, buggy, inputs, reference=reference))
    lines = text.splitlines()
    assert (
        lines[0] == "FAIL: case rnn-step-backward-no-tanh-to-h [float64] "
        "blame: rnn_step_backward_no_tanh_to_h"
    )
    header = next(line for line in lines if line.strip().startswith("input"))
    assert header.split() == [
        "input",
        "pair",
        "verdict",
        "worst",
        "value",
        "a",
        "value",
        "b",
        "tol_ratio",
        "max_abs_err",
    ]
    rows = [line.split() for line in lines if line.split()[:1] == ["prev_h"]]
    assert [r[1:4] for r in rows] == [
        ["rnn_step_backward_no_tanh_to_h", "vs", e] for e in ("numpy", "fd", "torch", "jax")
    ]
    assert all(r[4] == "FAIL" and float(r[-2]) > 1 for r in rows)


def test_assert_gradients_returns_the_result_or_raises_with_the_table():
    forward, backward, buggy, inputs, reference, _ = LAYERS["maxpool"]
    result = gradcheck.assert_gradients(forward, backward, inputs, reference=reference)
    assert result.ok
    with pytest.raises(AssertionError) as failure:
        gradcheck.assert_gradients(forward, buggy, inputs, reference=reference)
    message = str(failure.value)
    assert "FAIL: case max-pool-backward-first [float64] blame: max_pool_backward_first" in message
    assert "x      max_pool_backward_first vs numpy  FAIL" in message


def test_bad_arguments_are_clear_errors():
    def square(x):
        return x**2

    with pytest.raises(ValueError, match="wrt names"):
        gradcheck.check(square, square, {"x": np.ones(2)}, wrt=["y"])
    with pytest.raises(ValueError, match="dtypes"):
        gradcheck.check(square, square, {"x": np.ones(2)}, dtypes=["float8"])
    with pytest.raises(ValueError, match="'numpy' is taken"):
        gradcheck.check(square, square, {"x": np.ones(2)}, name="numpy")
    with pytest.raises(ValueError, match="reference 'x @': "):
        gradcheck.check(square, square, {"x": np.ones(2)}, reference="x @")


def test_a_backward_returning_the_wrong_number_of_gradients_is_its_error():
    result = gradcheck.check(
        L.affine_forward, lambda dout, cache: (dout,), LAYERS["affine"][3], name="short"
    )
    assert list(result.cases["verdict"]) == ["ERROR"] and list(result.cases["blame"]) == ["short"]
    assert "returned 1 gradient(s)" in result.cases["message"][0]


USER_TEST = """
import numpy as np
import gradcheck


def tanh_forward(x):
    out = np.tanh(x)
    return out, out


def tanh_backward_forgot_derivative(dout, cache):
    return dout


def test_my_tanh():
    gradcheck.assert_gradients(tanh_forward, tanh_backward_forgot_derivative,
                               {"x": np.array([0.5, -1.0, 2.0])}, reference="tanh(x)")
"""


def test_pytest_shows_the_table_when_assert_gradients_fails(tmp_path):
    (tmp_path / "test_mine.py").write_text(USER_TEST)
    env = {**os.environ, "PYTHONPATH": str(Path(gradcheck.__file__).parents[1])}
    run = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1 and "1 failed" in run.stdout
    # pytest repeats the whole message in its short summary when CI is set; read the failure only
    failure = run.stdout.split("short test summary info")[0]
    lines = [line.removeprefix("E").strip() for line in failure.splitlines()]
    assert (
        "FAIL: case tanh-backward-forgot-derivative [float64] "
        "blame: tanh_backward_forgot_derivative" in lines
    )
    rows = [line.split() for line in lines if line.startswith("x ")]
    assert [r[3] for r in rows] == ["numpy", "fd", "torch", "jax"]
    # worst element x[2] = 2.0: the backward passes dout on, the others dout * tanh'(2)
    assert all(r[5] == "[2]" for r in rows)
    assert all(abs(float(r[7]) / float(r[6]) - (1 - np.tanh(2.0) ** 2)) < 1e-6 for r in rows)
    assert "RunResult(cases=" not in run.stdout
