"""What real student code does to `gradcheck.check`: a forward whose own rounding loses
digits, a forward over the wrong axes, code that raises or returns nothing, gradients of the
wrong shape, several outputs (an LSTM step), references written as steps, non-array
parameters and lambdas. Each is a verdict with a message naming the function."""

from __future__ import annotations

import numpy as np
import pytest

import cs231n_layers as L
import gradcheck


def _one(result, column: str) -> str:
    values = list(result.cases[column])
    assert len(values) == 1, values
    return values[0]


# --- the user's own rounding ----------------------------------------------------------------


def naive_batchnorm_forward(x, gamma, beta):
    mu = x.mean(axis=0)
    var = (x**2).mean(axis=0) - mu**2  # cancels where the mean dwarfs the spread
    std = np.sqrt(var + 1e-5)
    xhat = (x - mu) / std
    return gamma * xhat + beta, (xhat, gamma, std)


def naive_batchnorm_backward(dout, cache):
    xhat, gamma, std = cache
    n = dout.shape[0]
    dxhat = dout * gamma
    dx = (n * dxhat - dxhat.sum(axis=0) - xhat * (dxhat * xhat).sum(axis=0)) / (n * std)
    return dx, (dout * xhat).sum(axis=0), dout.sum(axis=0)


def naive_batchnorm_backward_dx_off(dout, cache):
    dx, dgamma, dbeta = naive_batchnorm_backward(dout, cache)
    return dx * (1 + 1e-6), dgamma, dbeta


def _pixels(seed: int) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "x": 128 + 3 * rng.standard_normal((5, 4)),
        "gamma": rng.standard_normal(4),
        "beta": rng.standard_normal(4),
    }


@pytest.mark.parametrize("seeds", [range(0, 20), range(20, 40)])
def test_a_correct_forward_that_rounds_badly_passes_and_says_what_it_loses(seeds):
    for seed in seeds:
        result = gradcheck.check(
            naive_batchnorm_forward,
            naive_batchnorm_backward,
            _pixels(seed),
            reference="batchnorm(x, gamma, beta)",
        )
        assert _one(result, "verdict") == "PASS", (seed, str(result))
        assert _one(result, "message").startswith("note: naive_batchnorm_forward loses about "), (
            seed,
            _one(result, "message"),
        )


@pytest.mark.parametrize("seed", [0, 7, 29])
def test_a_backward_one_millionth_off_still_fails_on_such_a_forward(seed):
    result = gradcheck.check(
        naive_batchnorm_forward,
        naive_batchnorm_backward_dx_off,
        _pixels(seed),
        reference="batchnorm(x, gamma, beta)",
    )
    assert _one(result, "verdict") == "FAIL"
    assert _one(result, "blame") == "naive_batchnorm_backward_dx_off"
    rows = result.comparisons
    assert set(rows[rows["verdict"] == "FAIL"]["param"]) == {"x"}


def test_the_measured_rounding_scales_with_the_forwards_cancellation():
    """The measurement is the tolerance's: a pixel-like batch (mean 128) gets a value
    tolerance hundreds of times a centred batch's."""

    def value_bound(inputs):
        result = gradcheck.check(
            naive_batchnorm_forward,
            naive_batchnorm_backward,
            inputs,
            reference="batchnorm(x, gamma, beta)",
        )
        row = result.comparisons.query("param == '(value)' and engine_b == 'numpy'")
        return float(row["bound"].iloc[0]) - float(row["atol"].iloc[0])

    pixels = _pixels(3)
    centred = {**pixels, "x": pixels["x"] - 128}
    assert value_bound(pixels) > 100 * value_bound(centred)


# --- a wrong forward is named --------------------------------------------------------------


def batchnorm_over_rows_forward(x, gamma, beta):
    """Normalises each row instead of each column: the wrong axis."""
    mu, std = x.mean(axis=1, keepdims=True), x.std(axis=1, keepdims=True)
    xhat = (x - mu) / np.sqrt(std**2 + 1e-5)
    return gamma * xhat + beta, (x, gamma, beta)


def batchnorm_over_rows_backward(dout, cache):
    return L.batchnorm_backward(dout, L.batchnorm_forward(*cache)[1])


def test_a_forward_over_the_wrong_axes_is_the_finding_and_the_blame():
    result = gradcheck.check(
        batchnorm_over_rows_forward,
        batchnorm_over_rows_backward,
        _pixels(1),
        reference="batchnorm(x, gamma, beta)",
        dtypes=["float64", "float32"],
    )
    assert list(result.cases["verdict"]) == ["FAIL", "FAIL"]
    assert set(result.cases["blame"]) == {"batchnorm_over_rows_forward"}
    for message in result.cases["message"]:
        assert message.startswith("the forward disagrees: (value): "), message
        assert "out of tolerance" in message


def test_outputs_of_another_shape_than_the_references_fail_on_the_forward():
    result = gradcheck.check(
        lambda x: (x.sum(axis=0), x),
        lambda dout, x: dout,
        {"x": np.ones((3, 2))},
        reference="sum(x, axis=1)",
        name="sums",
    )
    assert _one(result, "verdict") == "FAIL"
    assert "returned shape(s) [2], the reference [3]" in _one(result, "message")


# --- every failure of the user's code is a verdict -------------------------------------------


def forward_unfinished(x, w, b):
    raise NotImplementedError("TODO: write the forward pass")


def forward_returning_none(x, w, b):
    out = x.reshape(x.shape[0], -1) @ w + b  # noqa: F841 (forgot to return)


def forward_returning_nones(x, w, b):
    out, cache = None, None
    return out, cache


def backward_unfinished(dout, cache):
    x, w, _b = cache
    return x.T @ dout @ w  # shapes do not fit: raises ValueError


def backward_returning_none(dout, cache):
    return None


AFFINE = {"x": np.arange(6.0).reshape(2, 3) / 7, "w": np.ones((3, 2)) / 3, "b": np.zeros(2)}
BROKEN = {
    "forward raises": (
        forward_unfinished,
        L.affine_backward,
        "forward_unfinished",
        "forward_unfinished raised NotImplementedError: TODO: write the "
        "forward pass (at test_own_code_failures.py:",
    ),
    "forward returns None": (
        forward_returning_none,
        L.affine_backward,
        "forward_returning_none",
        "forward_returning_none returned None; expected out or (out, cache)",
    ),
    "forward returns (None, None)": (
        forward_returning_nones,
        L.affine_backward,
        "forward_returning_nones",
        "forward_returning_nones returned None as output 1",
    ),
    "backward raises": (
        L.affine_forward,
        backward_unfinished,
        "backward_unfinished",
        "backward_unfinished raised ValueError: ",
    ),
    "backward returns None": (
        L.affine_forward,
        backward_returning_none,
        "backward_returning_none",
        "backward_returning_none returned None; expected one gradient per differentiated input",
    ),
}


@pytest.mark.parametrize("broken", BROKEN)
def test_broken_code_is_an_error_naming_the_function_never_an_exception(broken):
    forward, backward, blamed, said = BROKEN[broken]
    result = gradcheck.check(
        forward, backward, AFFINE, reference="reshape(x, shape=[2, 3]) @ w + b"
    )
    assert _one(result, "verdict") == "ERROR"
    assert _one(result, "blame") == blamed
    assert said in _one(result, "message"), _one(result, "message")
    with pytest.raises(AssertionError, match="ERROR: case"):
        gradcheck.assert_gradients(forward, backward, AFFINE)


def test_the_line_named_is_the_users_own():
    result = gradcheck.check(L.affine_forward, backward_unfinished, AFFINE)
    line = backward_unfinished.__code__.co_firstlineno + 2
    assert f"(at test_own_code_failures.py:{line})" in _one(result, "message")


def test_a_gradient_of_the_wrong_shape_fails_naming_both_shapes():
    def batchnorm_backward_keepdims(dout, cache):
        dx, dgamma, dbeta = L.batchnorm_backward(dout, cache)
        return dx, dgamma[None, :], dbeta  # (1, D) for a (D,) parameter

    inputs = {
        "x": np.random.default_rng(0).standard_normal((6, 4)),
        "gamma": np.ones(4),
        "beta": np.zeros(4),
    }
    result = gradcheck.check(
        L.batchnorm_forward, batchnorm_backward_keepdims, inputs, reference=L.BATCHNORM_REFERENCE
    )
    assert _one(result, "verdict") == "FAIL"
    assert _one(result, "blame") == "batchnorm_backward_keepdims"
    failing = result.comparisons[result.comparisons["verdict"] == "FAIL"]
    assert set(failing["param"]) == {"gamma"}
    assert all("[1, 4]" in m and "[4]" in m for m in failing["message"])


# --- several outputs and references with steps -----------------------------------------------


def _sigmoid(z):
    return 1 / (1 + np.exp(-z))


def lstm_step_forward(x, prev_h, prev_c, Wx, Wh, b):
    H = prev_h.shape[1]
    a = x @ Wx + prev_h @ Wh + b
    i, f, o = _sigmoid(a[:, :H]), _sigmoid(a[:, H : 2 * H]), _sigmoid(a[:, 2 * H : 3 * H])
    g = np.tanh(a[:, 3 * H :])
    next_c = f * prev_c + i * g
    next_h = o * np.tanh(next_c)
    return next_h, next_c, (x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c)


def lstm_step_backward(dnext_h, dnext_c, cache, with_dnext_c=True):
    x, prev_h, prev_c, Wx, Wh, i, f, o, g, next_c = cache
    tc = np.tanh(next_c)
    dc = dnext_h * o * (1 - tc**2) + (dnext_c if with_dnext_c else 0)
    da = np.hstack(
        [
            dc * g * i * (1 - i),
            dc * prev_c * f * (1 - f),
            dnext_h * tc * o * (1 - o),
            dc * i * (1 - g**2),
        ]
    )
    return da @ Wx.T, da @ Wh.T, dc * f, x.T @ da, prev_h.T @ da, da.sum(axis=0)


def lstm_step_backward_drops_dnext_c(dnext_h, dnext_c, cache):
    return lstm_step_backward(dnext_h, dnext_c, cache, with_dnext_c=False)


LSTM_STEP = {
    "a": "x @ Wx + prev_h @ Wh + b",
    "i": "sigmoid(a[:, 0:3])",
    "f": "sigmoid(a[:, 3:6])",
    "o": "sigmoid(a[:, 6:9])",
    "g": "tanh(a[:, 9:12])",
    "c": "f * prev_c + i * g",
    "next_h": "o * tanh(c)",
    "next_c": "c",
}


def _lstm_inputs():
    rng = np.random.default_rng(5)
    return {
        "x": rng.standard_normal((2, 4)),
        "prev_h": rng.standard_normal((2, 3)),
        "prev_c": rng.standard_normal((2, 3)),
        "Wx": 0.5 * rng.standard_normal((4, 12)),
        "Wh": 0.5 * rng.standard_normal((3, 12)),
        "b": rng.standard_normal(12),
    }


def test_an_lstm_step_with_two_outputs_is_checked_as_written():
    result = gradcheck.check(
        lstm_step_forward,
        lstm_step_backward,
        _lstm_inputs(),
        reference=LSTM_STEP,
        outputs=2,
        dtypes=["float64", "float32"],
    )
    assert list(result.cases["verdict"]) == ["PASS", "PASS"], str(result)
    assert set(result.engines["engine"]) == {"lstm_step_backward", "numpy", "fd", "torch", "jax"}
    value = result.comparisons.query("param == '(value)' and engine_b == 'numpy'")
    assert (value["elements"] == 12).all()  # next_h and next_c, 6 each


def test_a_bug_in_dnext_cs_path_fails_blamed_on_the_backward():
    result = gradcheck.check(
        lstm_step_forward,
        lstm_step_backward_drops_dnext_c,
        _lstm_inputs(),
        reference=LSTM_STEP,
        outputs=2,
    )
    assert _one(result, "verdict") == "FAIL"
    assert _one(result, "blame") == "lstm_step_backward_drops_dnext_c"
    failing = result.comparisons[result.comparisons["verdict"] == "FAIL"]
    assert "(value)" not in set(failing["param"])
    assert {"prev_c", "x", "Wx"} <= set(failing["param"])


def test_without_a_reference_fd_differentiates_both_outputs():
    result = gradcheck.check(lstm_step_forward, lstm_step_backward, _lstm_inputs(), outputs=2)
    assert _one(result, "verdict") == "PASS", str(result)
    bad = gradcheck.check(
        lstm_step_forward, lstm_step_backward_drops_dnext_c, _lstm_inputs(), outputs=2
    )
    assert _one(bad, "verdict") == "FAIL"


# --- parameters, names, integer data in a reference ----------------------------------------


def test_non_array_parameters_go_to_the_forward_by_keyword():
    rng = np.random.default_rng(2)
    inputs = {
        "x": rng.standard_normal((2, 3, 5, 5)),
        "w": 0.3 * rng.standard_normal((4, 3, 3, 3)),
        "b": rng.standard_normal(4),
    }
    result = gradcheck.check(
        L.conv_forward_naive,
        L.conv_backward_naive,
        inputs,
        params={"conv_param": {"stride": 2, "pad": 1}},
        reference="conv2d(x, w, b, stride=2, pad=1)",
    )
    assert _one(result, "verdict") == "PASS", str(result)


def test_a_lambdas_check_is_named_after_its_caller():
    result = gradcheck.check_loss(
        lambda x, y: L.softmax_loss(x, y), {"x": np.eye(3) * 2.0, "y": np.array([0, 1, 1])}
    )
    assert _one(result, "case") == "test-a-lambdas-check-is-named-after-its-caller"
    assert _one(result, "verdict") == "PASS"


def softmax_loss_with_mask_penalty(x, y, mask):
    loss, dx = L.softmax_loss(x, y)
    return loss + np.sum(x * mask), dx + mask


def test_integer_data_enters_a_references_arithmetic():
    rng = np.random.default_rng(4)
    inputs = {
        "x": rng.standard_normal((5, 3)),
        "y": np.array([0, 2, 1, 1, 0]),
        "mask": rng.integers(0, 2, (5, 3)),
    }
    result = gradcheck.check_loss(
        softmax_loss_with_mask_penalty,
        inputs,
        reference="softmax_cross_entropy(x, y) + sum(x * mask)",
        dtypes=["float64", "float32"],
    )
    assert list(result.cases["verdict"]) == ["PASS", "PASS"], str(result)
    assert set(result.comparisons["param"]) == {"(value)", "x"}
