"""Your own code in forward mode (modes rev and fwd) and at second order (order=2): a
torch Function's `jvp` and its backward's own derivative, a jax `custom_jvp` rule, a numpy
layer's `jvp`. A right rule PASSes; a wrong one FAILs blamed on your code while the
products it does not touch PASS; a rule that is missing, or a backward that cannot be
differentiated again, is an ERROR saying which; what your kind of code cannot give, or
second order without a reference, is a ValueError. float64 and float32 throughout."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import cs231n_layers as L  # noqa: E402
import framework_code as fc  # noqa: E402
import gradcheck  # noqa: E402

DTYPES = ["float64", "float32"]
BOTH = ("rev", "fwd")


def _verdicts(result) -> dict:
    return {
        d: (str(v), b)
        for d, v, b in zip(result.cases.dtype, result.cases.verdict, result.cases.blame)
    }


def _rows(result, product: str, engine: str):
    """The comparisons of `product` that `engine` takes part in."""
    rows = result.comparisons
    mine = (rows.engine_a == engine) | (rows.engine_b == engine)
    return rows[mine & (rows["product"] == product)]


def _failed_params(result, product: str, engine: str) -> set:
    rows = _rows(result, product, engine)
    return set(rows[rows.verdict.astype(str) != "PASS"].param)


def _messages(result) -> list[str]:
    return list(result.cases.message)


# --- torch: forward mode -------------------------------------------------------------------


@pytest.mark.parametrize(
    "function, inputs, reference",
    [
        (fc.TanhWithJvp, fc.x_only(1), "tanh(x)"),
        (fc.LinearWithJvp, fc.linear_inputs(), fc.LINEAR_REF),
    ],
    ids=["TanhWithJvp", "LinearWithJvp"],
)
def test_a_function_with_a_right_jvp_passes_in_forward_mode(function, inputs, reference):
    result = gradcheck.check_torch(
        function.apply, inputs(), reference=reference, dtypes=DTYPES, modes=BOTH
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    name = function.__name__
    assert set(_rows(result, "jvp", name).param) == set(inputs())
    assert len(_rows(result, "adjoint", name)) == len(DTYPES) * len(inputs())


def test_a_right_jvp_passes_without_a_reference_against_fd_of_the_forward():
    result = gradcheck.check_torch(fc.TanhWithJvp.apply, fc.x_only(1)(), dtypes=DTYPES, modes=BOTH)
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    assert set(_rows(result, "jvp", "TanhWithJvp").engine_b) == {"fd"}


@pytest.mark.parametrize(
    "function, inputs, reference, wrong",
    [
        (fc.TanhJvpSign, fc.x_only(1), "tanh(x)", {"x"}),
        (fc.LinearJvpDropped, fc.linear_inputs(), fc.LINEAR_REF, {"w"}),
    ],
    ids=["sign", "dropped term"],
)
def test_a_wrong_jvp_fails_blamed_on_the_function_its_vjps_passing(
    function, inputs, reference, wrong
):
    name = function.__name__
    result = gradcheck.check_torch(
        function.apply, inputs(), reference=reference, dtypes=DTYPES, modes=BOTH
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("FAIL", name)), str(result)
    assert _failed_params(result, "vjp", name) == set()
    assert _failed_params(result, "jvp", name) == wrong  # each input moves alone
    assert _failed_params(result, "adjoint", name) == wrong  # its two modes disagree
    others = result.comparisons[
        (result.comparisons.engine_a != name) & (result.comparisons.engine_b != name)
    ]
    assert set(others.verdict.astype(str)) == {"PASS"}


def test_a_function_without_a_jvp_is_an_error_naming_forward_mode():
    result = gradcheck.check_torch(
        fc.Tanh.apply, fc.x_only(1)(), reference="tanh(x)", dtypes=DTYPES, modes=BOTH
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("ERROR", "Tanh"))
    for message in _messages(result):
        assert "Tanh has no forward-mode rule (jvp)" in message, message
        assert "(at framework_code.py:" in message, message


def test_a_module_calling_a_function_without_a_jvp_names_that_function():
    result = gradcheck.check_torch(
        fc.MyLinear(), fc.x_only(4)(), reference="x @ weight + bias", modes=BOTH
    )
    assert _verdicts(result) == {"float64": ("ERROR", "MyLinear")}
    assert "MyLinear calls Linear, which has no forward-mode rule (jvp)" in _messages(result)[0]


def test_plain_torch_with_two_outputs_passes_in_forward_mode_against_fd():
    result = gradcheck.check_torch(fc.lstm_cell, fc.lstm_inputs()(), dtypes=DTYPES, modes=BOTH)
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    assert set(_rows(result, "jvp", "lstm_cell").param) == {"x", "h", "c", "w"}


# --- torch: second order -------------------------------------------------------------------


def test_a_twice_differentiable_function_passes_at_order_2():
    result = gradcheck.check_torch(
        fc.XTanh.apply, fc.x_only(1)(), reference="x * tanh(x)", dtypes=DTYPES, order=2
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    assert set(_rows(result, "hvp", "XTanh").engine_b) >= {"torch", "jax"}
    taylor = result.taylor[(result.taylor.engine == "XTanh") & (result.taylor["product"] == "hvp")]
    assert len(taylor) == len(DTYPES) and (taylor.rate > 2.5).all()


def test_forward_mode_and_order_2_together():
    result = gradcheck.check_torch(
        fc.Linear.apply, fc.linear_inputs()(), reference=fc.LINEAR_REF, order=2, dtypes=DTYPES
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    result = gradcheck.check_torch(
        fc.LinearWithJvp.apply,
        fc.linear_inputs()(),
        reference=fc.LINEAR_REF,
        modes=BOTH,
        order=2,
    )
    assert result.ok, str(result)
    assert set(_rows(result, "hvp", "LinearWithJvp").param) == {"x", "w", "b"}
    assert set(_rows(result, "jvp", "LinearWithJvp").param) == {"x", "w", "b"}


def test_a_backward_that_detaches_its_input_fails_at_order_2_on_its_hvp_rows():
    result = gradcheck.check_torch(
        fc.XTanhDetached.apply, fc.x_only(1)(), reference="x * tanh(x)", dtypes=DTYPES, order=2
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("FAIL", "XTanhDetached")), str(result)
    assert _failed_params(result, "vjp", "XTanhDetached") == set()  # its gradient is right
    assert _failed_params(result, "hvp", "XTanhDetached") == {"x"}
    taylor = result.taylor[
        (result.taylor.engine == "XTanhDetached") & (result.taylor["product"] == "hvp")
    ]
    assert (taylor.verdict.astype(str) == "FAIL").all() and len(taylor) == len(DTYPES)


@pytest.mark.parametrize(
    "function", [fc.XTanhOnce, fc.TanhSquaresInPlace], ids=lambda f: f.__name__
)
def test_a_backward_that_cannot_be_differentiated_again_is_an_error(function):
    name = function.__name__
    reference = "x * tanh(x)" if function is fc.XTanhOnce else "tanh(x)"
    result = gradcheck.check_torch(
        function.apply, fc.x_only(1)(), reference=reference, dtypes=DTYPES, order=2
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("ERROR", name))
    for message in _messages(result):
        assert f"{name} does not support double backward: " in message, message
        assert "(at framework_code.py:" in message, message


def test_a_backward_that_writes_into_a_saved_output_still_passes_at_order_1():
    # the forward's value is taken before the backward overwrites the tensor it saved
    result = gradcheck.check_torch(
        fc.TanhSquaresInPlace.apply, fc.x_only(1)(), reference="tanh(x)", dtypes=DTYPES
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)


# --- jax -----------------------------------------------------------------------------------


def test_a_custom_jvp_with_a_right_rule_passes_forward_mode_and_order_2():
    result = gradcheck.check_jax(
        fc.jax_softplus,
        fc.x_only(10)(),
        reference="softplus(x)",
        dtypes=DTYPES,
        modes=BOTH,
        order=2,
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    for product in ("vjp", "jvp", "adjoint", "hvp"):
        assert len(_rows(result, product, "jax_softplus")), product


def test_a_custom_jvp_with_a_wrong_rule_fails_blamed_on_it():
    name = "jax_softplus_chain_dropped"
    result = gradcheck.check_jax(
        fc.jax_softplus_chain_dropped,
        fc.x_only(10)(),
        reference="softplus(x)",
        dtypes=DTYPES,
        modes=BOTH,
        order=2,
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("FAIL", name)), str(result)
    for product in ("vjp", "jvp", "hvp"):  # one rule serves all three
        assert _failed_params(result, product, name) == {"x"}, product


def test_a_custom_vjp_has_no_forward_mode_an_error_saying_so():
    result = gradcheck.check_jax(
        fc.jax_tanh, fc.x_only(7)(), reference="tanh(x)", dtypes=DTYPES, modes=BOTH
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("ERROR", "jax_tanh"))
    for message in _messages(result):
        assert "jax_tanh has no forward-mode rule (jvp)" in message, message


def test_a_custom_vjp_passes_at_order_2_its_backward_differentiated():
    result = gradcheck.check_jax(
        fc.jax_tanh, fc.x_only(7)(), reference="tanh(x)", dtypes=DTYPES, order=2
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)


# --- numpy layers ----------------------------------------------------------------------------


def affine_jvp(t, x, w, b):
    """The affine layer's forward mode: J u = tx @ w + x @ tw + tb, x flattened per row."""
    rows = x.shape[0]
    return t["x"].reshape(rows, -1) @ w + x.reshape(rows, -1) @ t["w"] + t["b"]


def affine_jvp_no_bias(t, x, w, b):
    rows = x.shape[0]
    return t["x"].reshape(rows, -1) @ w + x.reshape(rows, -1) @ t["w"]  # bug: tb forgotten


AFFINE = {
    "x": np.random.default_rng(5).standard_normal((3, 2, 3)),
    "w": np.random.default_rng(6).standard_normal((6, 4)),
    "b": np.random.default_rng(7).standard_normal(4),
}
AFFINE_REF = "reshape(x, shape=[3, 6]) @ w + b"


@pytest.mark.parametrize("reference", [AFFINE_REF, None], ids=["reference", "fd only"])
def test_a_numpy_layer_with_a_right_jvp_passes_in_forward_mode(reference):
    result = gradcheck.check(
        L.affine_forward,
        L.affine_backward,
        AFFINE,
        reference=reference,
        jvp=affine_jvp,
        modes=BOTH,
        dtypes=DTYPES,
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("PASS", "")), str(result)
    assert set(_rows(result, "jvp", "affine_backward").param) == {"x", "w", "b"}


def test_a_numpy_layer_with_a_wrong_jvp_fails_on_that_input_blamed_on_the_layer():
    result = gradcheck.check(
        L.affine_forward,
        L.affine_backward,
        AFFINE,
        reference=AFFINE_REF,
        jvp=affine_jvp_no_bias,
        modes=BOTH,
        dtypes=DTYPES,
    )
    assert _verdicts(result) == dict.fromkeys(DTYPES, ("FAIL", "affine_backward")), str(result)
    assert _failed_params(result, "vjp", "affine_backward") == set()
    assert _failed_params(result, "jvp", "affine_backward") == {"b"}


def test_a_jvp_that_raises_is_an_error_naming_it():
    def affine_jvp_unfinished(t, x, w, b):
        raise NotImplementedError("TODO")

    result = gradcheck.check(
        L.affine_forward, L.affine_backward, AFFINE, jvp=affine_jvp_unfinished, modes=BOTH
    )
    assert _verdicts(result) == {"float64": ("ERROR", "affine_backward")}
    assert "affine_jvp_unfinished raised NotImplementedError: TODO" in _messages(result)[0]


# --- what cannot be asked --------------------------------------------------------------------


def test_what_the_code_cannot_give_is_a_value_error():
    with pytest.raises(ValueError, match="check\\(\\.\\.\\., jvp=\\.\\.\\.\\)"):
        gradcheck.check(L.affine_forward, L.affine_backward, AFFINE, modes=BOTH)
    with pytest.raises(ValueError, match="no second order"):
        gradcheck.check(L.affine_forward, L.affine_backward, AFFINE, reference=AFFINE_REF, order=2)
    with pytest.raises(ValueError, match="no forward mode"):
        gradcheck.check_loss(L.softmax_loss, {"x": AFFINE["w"], "y": np.arange(6) % 4}, modes=BOTH)


def test_order_2_without_a_reference_is_refused():
    with pytest.raises(ValueError, match="order=2 needs a reference"):
        gradcheck.check_torch(fc.XTanh.apply, fc.x_only(1)(), order=2)


@pytest.mark.parametrize(
    "options",
    [{"modes": ("rev", "rev")}, {"modes": ("fwd", "sideways")}, {"modes": ()}, {"order": 3}],
)
def test_modes_and_order_are_checked(options):
    with pytest.raises(ValueError):
        gradcheck.check_torch(fc.Tanh.apply, fc.x_only(1)(), reference="tanh(x)", **options)


def test_the_assert_twins_take_modes_and_order():
    gradcheck.assert_torch_gradients(
        fc.XTanh.apply, fc.x_only(1)(), reference="x * tanh(x)", order=2
    )
    with pytest.raises(AssertionError, match="TanhJvpSign"):
        gradcheck.assert_torch_gradients(
            fc.TanhJvpSign.apply, fc.x_only(1)(), reference="tanh(x)", modes=BOTH
        )
