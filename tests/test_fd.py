"""The `fd` engine: accuracy against analytic gradients, its own error estimate, seeded
sampling of big inputs, kink detection, and float64 differencing of float32 cases."""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from gradcheck.engines import FiniteDifferences, NumpyEngine
from helpers import TANH_LAYER, assert_close, engine_vjp, load_one

rng = np.random.default_rng(7)
X, Y = rng.normal(size=(3, 4)), rng.normal(size=(3, 4)) * 0.5
P = rng.uniform(0.5, 2.0, size=(3, 4))


def sigmoid(x):
    return 1 / (1 + np.exp(-x))


# expr, inputs, analytic gradient of the scalar output
SMOOTH = {
    "exp(tanh(x)*y)": (
        "sum(exp(tanh(x) * y))",
        dict(x=X, y=Y),
        lambda x, y: dict(
            x=np.exp(np.tanh(x) * y) * y * (1 - np.tanh(x) ** 2),
            y=np.exp(np.tanh(x) * y) * np.tanh(x),
        ),
    ),
    "tanh(exp(x))": (
        "sum(tanh(exp(x)))",
        dict(x=X),
        lambda x: dict(x=(1 - np.tanh(np.exp(x)) ** 2) * np.exp(x)),
    ),
    "log(p)*sigmoid(x)": (
        "sum(log(p) * sigmoid(x))",
        dict(p=P, x=X),
        lambda p, x: dict(p=sigmoid(x) / p, x=np.log(p) * sigmoid(x) * (1 - sigmoid(x))),
    ),
    "p**y/(1+x*x)": (
        "sum(p ** y / (1 + x * x))",
        dict(p=P, y=Y, x=X),
        lambda p, y, x: dict(
            p=y * p ** (y - 1) / (1 + x * x),
            y=p**y * np.log(p) / (1 + x * x),
            x=-(p**y) * 2 * x / (1 + x * x) ** 2,
        ),
    ),
    "mean(x@x.T)": (
        "mean(x @ transpose(x))",
        dict(x=X),
        lambda x: dict(x=(np.ones((3, 3)) @ x + np.ones((3, 3)).T @ x) / 9),
    ),
}


@pytest.mark.parametrize("name", list(SMOOTH))
def test_fd_matches_analytic_well_within_its_error_estimate(name):
    expr, inputs, analytic = SMOOTH[name]
    _, _, _, out = engine_vjp(FiniteDifferences(), expr, inputs)
    exact = analytic(*inputs.values())
    for k, g in exact.items():
        err = np.abs(out.grads[k] - g)
        est = out.grad_err[k]
        assert out.checked[k].all() and not out.kinks[k].any()
        assert np.all(np.isfinite(est)) and np.all(est > 0)
        # the estimate bounds the actual error...
        assert np.all(err <= est), f"{name} d/d{k}: error {err.max():.3g} above estimate"
        # ...and is itself small next to the gradient's scale: far below the tolerances
        # that pairs with fd are judged with
        assert np.max(est) < 1e-6 * np.max(np.abs(g)), f"{name} d/d{k}: estimate {est.max():.3g}"
        assert_close(out.grads[k], g, rtol=1e-8, atol=1e-10, what=f"{name} d/d{k}")


def test_fd_vjp_with_a_cotangent():
    """A non-scalar output is contracted with the cotangent: the gradient of <g, f(x)>."""
    g = rng.normal(size=(3, 4))
    _, _, _, out = engine_vjp(FiniteDifferences(), "tanh(x) * exp(y)", dict(x=X, y=Y), cotangent=g)
    assert_close(out.value, np.tanh(X) * np.exp(Y), rtol=1e-15)
    assert_close(out.grads["x"], g * (1 - np.tanh(X) ** 2) * np.exp(Y), rtol=1e-8, atol=1e-10)
    assert_close(out.grads["y"], g * np.tanh(X) * np.exp(Y), rtol=1e-8, atol=1e-10)


def test_richardson_is_exact_for_a_cubic():
    x = np.array([-2.0, 0.3, 1.7, 10.0])
    _, _, _, out = engine_vjp(FiniteDifferences(), "sum(x ** 3 - 2 * x * x)", dict(x=x))
    # no truncation error left; what remains is rounding of f (~800) over small steps
    assert_close(out.grads["x"], 3 * x**2 - 4 * x, rtol=1e-10, atol=2e-9)
    assert np.all(np.abs(out.grads["x"] - (3 * x**2 - 4 * x)) <= out.grad_err["x"])


# --- sampling ---------------------------------------------------------------------------------

BIG = rng.normal(size=(20, 30))


def sampled(seed=0, max_elements=50, name="x"):
    engine = FiniteDifferences(max_elements=max_elements, seed=seed)
    _, _, _, out = engine_vjp(engine, f"sum(tanh({name}) * 3)", {name: BIG})
    return out.grads[name], out.checked[name], out.grad_err[name]


def test_big_input_is_sampled_to_max_elements():
    grad, checked, err = sampled()
    assert checked.shape == BIG.shape and checked.dtype == bool
    assert checked.sum() == 50
    assert np.all(np.isnan(grad[~checked])) and np.all(np.isnan(err[~checked]))
    assert_close(grad[checked], 3 * (1 - np.tanh(BIG[checked]) ** 2), rtol=1e-8, atol=1e-10)


def test_sampling_is_seeded():
    first, second = sampled()[1], sampled()[1]
    assert np.array_equal(first, second)
    other_seed = sampled(seed=1)[1]
    assert other_seed.sum() == 50 and not np.array_equal(first, other_seed)


def test_at_most_max_elements_means_every_element():
    small = FiniteDifferences(max_elements=600)
    _, _, _, out = engine_vjp(small, "sum(tanh(x))", dict(x=BIG))
    assert out.checked["x"].all()


def test_case_fd_max_elements_reaches_the_comparison(tmp_path):
    case = load_one(
        tmp_path,
        """\
        name: sampled
        inputs:
          x: {shape: [20, 30], seed: 3}
        expr: sum(tanh(x) ** 2)
        fd_max_elements: 40
        """,
    )
    result = gradcheck.run_case(case, "float64", [NumpyEngine(), FiniteDifferences()])
    [row] = [r for r in result.comparisons if r.param == "x"]
    assert (row.checked, row.elements, row.verdict) == (40, 600, "PASS")
    again = gradcheck.run_case(case, "float64", [NumpyEngine(), FiniteDifferences()])
    assert next(r for r in again.comparisons if r.param == "x").worst_index == row.worst_index


def test_run_option_fd_max_elements(tmp_path):
    case = load_one(
        tmp_path,
        """\
        name: sampled-by-option
        inputs:
          x: {shape: [10, 10], seed: 3}
        expr: sum(exp(x))
        """,
    )
    options = gradcheck.RunOptions(fd_max_elements=7)
    result = gradcheck.run_case(case, "float64", [NumpyEngine(), FiniteDifferences()], options)
    [row] = [r for r in result.comparisons if r.param == "x"]
    assert (row.checked, row.elements) == (7, 100)


def test_sampled_fd_still_catches_a_wrong_gradient(tmp_path):
    import reference_impls

    ops = dict(reference_impls.OPS)
    ops["exp"] = reference_impls.Primitive(ops["exp"].forward, (lambda g, out, x: g * out * 1.01,))
    case = load_one(
        tmp_path,
        """\
        name: sampled-wrong
        inputs:
          x: {shape: [20, 30], seed: 3}
        expr: sum(exp(x))
        fd_max_elements: 10
        """,
    )
    result = gradcheck.run_case(case, "float64", [NumpyEngine(ops), FiniteDifferences()])
    assert result.case.verdict == "FAIL"


# --- dtype ------------------------------------------------------------------------------------


def test_fd_differences_float32_cases_in_float64():
    x32 = X.astype(np.float32)
    _, arrays, _, out = engine_vjp(
        FiniteDifferences(), "sum(exp(tanh(x)))", dict(x=X), dtype="float32"
    )
    assert arrays["x"].dtype == np.float32
    assert out.grads["x"].dtype == np.float64 and np.asarray(out.value).dtype == np.float64
    x = x32.astype(np.float64)  # the same rounded inputs, in float64
    exact = np.exp(np.tanh(x)) * (1 - np.tanh(x) ** 2)
    # float32 differences could not get within 1e-4; these are float64 differences
    assert_close(out.grads["x"], exact, rtol=1e-9, atol=1e-12)
    assert np.max(out.grad_err["x"]) < 1e-6 * np.max(np.abs(exact))


# --- kinks ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "expr, x, kinks",
    [
        ("sum(relu(x))", [-1.0, 0.0, 0.5], [False, True, False]),
        ("sum(abs(x))", [0.0, -2.0, 3.0], [True, False, False]),
        ("max(x)", [1.0, 3.0, 3.0, -1.0], [False, True, True, False]),
        ("sum(maximum(x, 1))", [1.0, 0.5, 2.0], [True, False, False]),
    ],
)
def test_kinks_are_flagged_where_the_function_is_not_differentiable(expr, x, kinks):
    _, _, _, out = engine_vjp(FiniteDifferences(), expr, dict(x=np.array(x)))
    assert out.kinks["x"].tolist() == kinks


@pytest.mark.parametrize(
    "expr, x",
    [
        ("sum(x * x)", [0.0, 1e-3, -2.0]),  # curvature at 0 is not a kink
        ("sum(exp(5 * x))", [1.0, 2.0, -3.0]),
        ("sum(relu(x))", [-1e-2, 1e-2, 5.0]),  # near the kink but not on it
        ("sum(tanh(50 * x))", [0.01, -0.02, 0.3]),
    ],
)
def test_no_false_kinks_on_smooth_points(expr, x):
    _, _, _, out = engine_vjp(FiniteDifferences(), expr, dict(x=np.array(x)))
    assert not out.kinks["x"].any()


def test_a_renamed_sampling_fd_is_judged_as_an_estimate_by_its_output_not_its_name(tmp_path):
    """The role travels with the output: unsampled elements (NaN) are never compared,
    whatever the oracle is called."""
    case = load_one(tmp_path, TANH_LAYER)
    oracle = gradcheck.FiniteDifferences(name="fd-sample", max_elements=4)
    result = gradcheck.run([case], engines=[gradcheck.NumpyEngine(), oracle])
    assert set(result.cases["verdict"]) == {"PASS"}, result.cases["message"].tolist()
    rows = result.comparisons[result.comparisons["param"] == "x"]
    assert rows["checked"].tolist() == [4, 4] and rows["elements"].tolist() == [12, 12]
    assert (rows["fd_err"] > 0).all()


def test_per_case_sample_size_reaches_the_oracle_as_an_argument(tmp_path):
    case = load_one(tmp_path, TANH_LAYER.replace("dtypes:", "fd_max_elements: 3\ndtypes:"))
    oracle = gradcheck.FiniteDifferences()
    result = gradcheck.run([case], engines=[gradcheck.NumpyEngine(), oracle], dtypes=["float64"])
    assert result.comparisons.query("param == 'x'")["checked"].tolist() == [3]
    assert oracle.max_elements is None  # the engine itself is left as it was
