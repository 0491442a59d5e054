"""check_torch / check_jax on framework code with hand-written gradients (tests/framework_code.py):
every correct item PASSes in float64, float32, bfloat16 and float16 through one call; every
buggy one FAILs blamed on the user's code alone. CPU only (tests/test_gpu.py: the same on a GPU).
About 15 s on 2 cores; the jax items take the most (jit of the reference engines)."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")

import framework_code as fc  # noqa: E402
import gradcheck  # noqa: E402
from helpers import CATALOG  # noqa: E402

ALL = ["float64", "float32", "bfloat16", "float16"]


def _verdicts(result) -> dict:
    return {
        d: (str(v), b)
        for d, v, b in zip(result.cases.dtype, result.cases.verdict, result.cases.blame)
    }


def test_the_suite_has_what_it_promises():
    torch_items = [i for i in fc.SUITE if i.framework == "torch"]
    jax_items = [i for i in fc.SUITE if i.framework == "jax"]
    assert len(torch_items) >= 14 and len(jax_items) >= 5
    assert {i.kind for i in fc.SUITE} == {
        "torch Function",
        "nn.Module",
        "plain torch",
        "jax custom_vjp",
        "jax custom_jvp",
    }
    assert {i.bug for i in fc.BUGGY} == fc.GROSS | {fc.SCALE}
    assert all(i.bug == "" for i in fc.CORRECT) and all(i.reference for i in fc.BUGGY)


@pytest.mark.parametrize("item", fc.CORRECT, ids=lambda i: i.label)
def test_correct_code_passes_in_every_dtype_in_one_call(item):
    result = fc.check(item, ALL)
    assert result.ok, str(result)
    assert _verdicts(result) == dict.fromkeys(ALL, ("PASS", ""))
    engines = set(result.comparisons.engine_a) | set(result.comparisons.engine_b)
    # against the reference's four engines, or against fd of the function itself
    assert engines == (
        {item.engine, "numpy", "fd", "torch", "jax"} if item.reference else {item.engine, "fd"}
    )


@pytest.mark.parametrize("item", fc.BUGGY, ids=lambda i: i.label)
def test_a_bug_fails_blamed_on_the_users_code_alone(item):
    verdicts = _verdicts(fc.check(item, ALL))
    for dtype in ["float64", "float32"]:
        assert verdicts[dtype] == ("FAIL", item.engine), dtype
    if item.bug in fc.GROSS:
        for dtype in ["bfloat16", "float16"]:
            assert verdicts[dtype] == ("FAIL", item.engine), dtype
    else:
        # a 0.1% scale is below bfloat16's eps (0.78%) and at float16's (0.098%): measured
        # worst tol_ratio 0.12 (bfloat16) and 0.21 (float16) for the torch Softplus, 0.16 and
        # 0.20 for jax's; float32 sees it at ~460x its tolerance
        assert verdicts["bfloat16"] == verdicts["float16"] == ("PASS", "")


def test_a_bug_without_a_reference_is_blamed_on_the_code_alone():
    # two sources (your code and fd of your forward) disagree; the Taylor test of your own
    # forward says which gradient converges: yours at rate 1, fd's at rate 2
    result = gradcheck.check_torch(fc.SquaredNormSignBug.apply, fc.x_only(3)())
    assert _verdicts(result) == {"float64": ("FAIL", "SquaredNormSignBug")}
    rates = dict(zip(result.taylor["engine"], result.taylor["rate"]))
    assert rates["SquaredNormSignBug"] < 1.2 and rates["fd"] > 1.8, rates


def test_a_float32_reduction_over_20000_terms_passes_in_float32():
    rng = np.random.default_rng(0)
    x = torch.tensor(rng.uniform(0, 1, 20_000), dtype=torch.float32)
    w = torch.tensor(rng.uniform(0, 1, 20_000), dtype=torch.float32)
    result = gradcheck.check_torch(fc.Sum.apply, {"x": x}, reference="sum(x)")
    assert _verdicts(result) == {"float32": ("PASS", "")}, str(result)
    value = result.comparisons[result.comparisons.param == "(value)"]
    assert value.tol_ratio.max() < 0.1  # the float32 sum's rounding is in the bound
    result = gradcheck.check_torch(fc.DotSum.apply, {"x": x, "w": w}, reference="sum(x * w)")
    assert _verdicts(result) == {"float32": ("PASS", "")}, str(result)
    result = gradcheck.check_torch(fc.DotSum.apply, {"x": x, "w": w})  # fd of itself
    assert _verdicts(result) == {"float32": ("PASS", "")}, str(result)


def test_module_parameters_are_checked_under_their_names():
    result = gradcheck.check_torch(fc.MyLinear(), fc.x_only(4)(), reference="x @ weight + bias")
    assert result.ok
    assert set(result.comparisons.param) == {"(value)", "x", "weight", "bias"}
    result = gradcheck.check_torch(fc.TwoLayer(), fc.x_only(5)(), dtypes=["float32"])
    assert result.ok
    assert set(result.comparisons.param) == {
        "(value)",
        "x",
        "fc1_weight",
        "fc1_bias",
        "fc2_weight",
        "fc2_bias",
    }
    sequential = torch.nn.Sequential(torch.nn.Linear(5, 3), torch.nn.Tanh())
    result = gradcheck.check_torch(sequential, fc.x_only(6)())  # float32 parameters
    assert _verdicts(result) == {"float32": ("PASS", "")}
    assert set(result.comparisons.param) == {"(value)", "x", "_0_weight", "_0_bias"}


def test_module_bug_is_in_the_bias_row_only():
    result = fc.check(
        next(i for i in fc.BUGGY if i.label == "MyLinear module bias mean"), ["float64"]
    )
    rows = result.comparisons[result.comparisons.engine_a == "MyLinearBiasMean"]
    failed = set(rows[rows.verdict.astype(str) == "FAIL"].param)
    assert failed == {"bias"}


def test_a_float32_only_kernel():
    x = fc.x_only(0)()
    result = gradcheck.check_torch(fc.Float32Only.apply, x, reference="tanh(x)", dtypes=["float32"])
    assert _verdicts(result) == {"float32": ("PASS", "")}, str(result)
    # without a reference, fd would differentiate the kernel in float64, which it refuses
    result = gradcheck.check_torch(fc.Float32Only.apply, x, dtypes=["float32"])
    engines = result.engines.set_index("engine")
    assert engines.loc["fd", "status"] == "SKIP"
    assert "fd differentiates your code in float64, which failed" in engines.loc["fd", "message"]
    assert "expected float32, got torch.float64" in engines.loc["fd", "message"]
    assert str(result.cases.verdict[0]) == "SKIP" and not result.ok


def test_two_outputs_each_get_a_cotangent():
    result = gradcheck.check_torch(fc.lstm_cell, fc.lstm_inputs()(), dtypes=["float64", "float32"])
    assert _verdicts(result) == {"float64": ("PASS", ""), "float32": ("PASS", "")}, str(result)
    assert set(result.comparisons.param) == {"(value)", "x", "h", "c", "w"}

    def lstm_dropping_c_grad(x, h, c, w):  # c's gradient path cut: a wrong backward
        h_new, c_new = fc.lstm_cell(x, h, c.detach(), w)
        return h_new, c_new

    result = gradcheck.check_torch(lstm_dropping_c_grad, fc.lstm_inputs()())
    rows = result.comparisons
    assert set(rows[rows.verdict.astype(str) == "FAIL"].param) == {"c"}


def test_a_jitted_jax_function():
    result = gradcheck.check_jax(
        jax.jit(fc.jax_tanh), fc.x_only(7)(), reference="tanh(x)", dtypes=["float64", "float32"]
    )
    assert result.ok, str(result)
    result = gradcheck.check_jax(
        jax.jit(fc.jax_linear_transposed), fc.linear_inputs(8)(), reference=fc.LINEAR_REF
    )
    assert _verdicts(result) == {"float64": ("FAIL", "jax_linear_transposed")}
    rows = result.comparisons
    assert set(rows[rows.verdict.astype(str) == "FAIL"].param) == {"w"}


def test_a_compiled_torch_function():
    compiled = torch.compile(fc.mlp_layer, backend="eager")
    result = gradcheck.check_torch(
        compiled, fc.linear_inputs(6)(), reference="tanh(x @ w + b)", dtypes=["float64", "float32"]
    )
    assert result.ok, str(result)


def test_assert_torch_gradients_raises_with_the_table():
    item = next(i for i in fc.BUGGY if i.label == "Linear transposed dW")
    with pytest.raises(AssertionError) as raised:
        gradcheck.assert_torch_gradients(item.fn, item.inputs(), reference=item.reference)
    message = str(raised.value)
    assert "FAIL: case lineartransposedw [float64] blame: LinearTransposedW" in message
    assert "LinearTransposedW vs numpy" in message and "tol_ratio" in message
    ok = fc.CORRECT[0]
    assert gradcheck.assert_torch_gradients(ok.fn, ok.inputs(), reference=ok.reference).ok


def test_assert_jax_gradients_raises_with_the_table():
    with pytest.raises(AssertionError, match="blame: jax_tanh_sign"):
        gradcheck.assert_jax_gradients(fc.jax_tanh_sign, fc.x_only(7)(), reference="tanh(x)")


def test_name_renames_the_engine():
    result = gradcheck.check_torch(
        fc.SigmoidSignBug.apply, fc.x_only(0)(), reference="sigmoid(x)", name="my_sigmoid"
    )
    assert _verdicts(result) == {"float64": ("FAIL", "my_sigmoid")}


def test_a_reference_keeps_the_users_tf32_flag():
    """The torch reference engine runs with TF32 off, then gives the user's setting back."""
    saved = torch.backends.cuda.matmul.allow_tf32
    try:
        torch.backends.cuda.matmul.allow_tf32 = True
        gradcheck.check_torch(
            fc.Linear.apply, fc.linear_inputs()(), reference=fc.LINEAR_REF, dtypes=["float32"]
        )
        assert torch.backends.cuda.matmul.allow_tf32 is True
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def test_the_report_says_where_tf32_was_on(tmp_path):
    """TF32 changes nothing on the CPU, but a run that asked for it says so."""
    result = gradcheck.check_torch(
        fc.Linear.apply, fc.linear_inputs()(), reference=fc.LINEAR_REF, dtypes=["float32"]
    )
    assert result.metadata["engine_options"]["Linear"] == {"device": "cpu", "tf32": False}
    assert not str(result).startswith("TF32")
    case = result.cases.iloc[0]
    tf32 = gradcheck.run(
        gradcheck.load_cases([CATALOG / "l2-wx"])[:1],
        engines=[gradcheck.NumpyEngine(), gradcheck.TorchEngine(allow_tf32=True)],
    )
    assert str(tf32).splitlines()[0] == "TF32 on for: torch"
    tf32.write_reports(tmp_path)
    assert "torch: cpu, TF32 on" in (tmp_path / "report.html").read_text()
    assert case.verdict == "PASS"
