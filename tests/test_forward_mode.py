"""Forward mode and second order in the runner: JVP rows compared across engines, the
dot-product test of each engine's two modes, Hessian-vector products, the Taylor test's
rate 3, and the blame when a tangent rule or a Hessian is wrong."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

import gradcheck
from gradcheck.cli import main
from gradcheck.engines import EngineOutput, make_engines
from gradcheck.harness import runner
from gradcheck.harness.runner import RunOptions, run_case
from gradcheck.power.corpus import tangent_mutants
from helpers import load_one

SMOOTH = """
name: tanh-net
inputs:
  x: {shape: [3, 4], init: normal, seed: 1}
  w: {shape: [4, 2], init: normal, seed: 2}
expr: sum(tanh(x @ w) * sigmoid(x @ w))
dtypes: [float64, float32]
modes: [rev, fwd]
order: 2
"""


def engines():
    return make_engines(["numpy", "fd", "torch", "jax"])


def tangent_mutant(op: str):
    return next(m for m in tangent_mutants() if m.op == op).engine()


def rows_of(result, product: str) -> list:
    return [r for r in result.comparisons if r.product == product]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_every_product_of_every_engine_passes_on_a_smooth_case(tmp_path, dtype):
    case = load_one(tmp_path, SMOOTH)
    result = run_case(case, dtype, engines())
    assert result.case.verdict == "PASS", result.case.message
    jvp, hvp, adjoint = (rows_of(result, p) for p in ("jvp", "hvp", "adjoint"))
    assert {(r.engine_a, r.engine_b) for r in jvp} >= {("numpy", "torch"), ("torch", "jax")}
    assert {r.engine_a for r in adjoint} >= {"numpy", "torch", "jax"}
    assert {r.param for r in hvp} == {"x", "w"}
    second = [t for t in result.taylor if t.product == "hvp"]
    assert {t.engine for t in second} >= {"torch", "jax"}
    assert all(t.rate > 2.5 for t in second if np.isfinite(t.rate)), second


def test_the_jvp_agrees_with_the_directional_derivative_by_hand(tmp_path):
    """sum(x**3) along u: J u = sum(3 x^2 u) and H u = 6 x u, on every engine."""
    seen = set()
    case = load_one(tmp_path, SMOOTH.replace("sum(tanh(x @ w) * sigmoid(x @ w))", "sum(x ** 3)"))
    arrays, u = case.arrays("float64"), case.tangents("float64")
    for engine in engines():
        out = engine.jvp(case.graph, arrays, ["x"], {"x": u["x"]})
        np.testing.assert_allclose(out.grads["x"], np.sum(3 * arrays["x"] ** 2 * u["x"]), 1e-6)
        if engine.name != "numpy":  # numpy's second order is fd's oracle, from its gradient
            hvp = engine.hvp(case.graph, arrays, case.wrt, np.ones(()), u)
            np.testing.assert_allclose(hvp.grads["x"], 6 * arrays["x"] * u["x"], 1e-6)
            seen.add(engine.name)
    assert seen == {"fd", "torch", "jax"}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_wrong_tangent_rule_fails_blamed_on_numpy_alone_while_its_vjps_pass(tmp_path, dtype):
    case = load_one(tmp_path, SMOOTH)
    result = run_case(case, dtype, [tangent_mutant("tanh")] + engines()[1:])
    assert result.case.verdict == "FAIL" and result.case.blame == "numpy"
    assert all(r.verdict == "PASS" for r in rows_of(result, "vjp"))
    assert any(r.verdict == "FAIL" for r in rows_of(result, "jvp"))


def test_the_dot_product_test_names_a_wrong_tangent_rule_with_no_other_engine(tmp_path):
    case = load_one(tmp_path, SMOOTH)
    result = run_case(case, "float64", [tangent_mutant("matmul")])
    failed = [r for r in rows_of(result, "adjoint") if r.verdict == "FAIL"]
    assert failed and {(r.engine_a, r.engine_b) for r in failed} == {("numpy", "numpy")}
    assert result.case.verdict == "FAIL" and result.case.blame == "numpy"


class OffHessian:
    """torch, with H u one percent too large: a wrong second-order path."""

    name = "torch"

    def __init__(self):
        self.torch = gradcheck.TorchEngine()

    def vjp(self, *args):
        return self.torch.vjp(*args)

    def jvp(self, *args):
        return self.torch.jvp(*args)

    def hvp(self, *args):
        out = self.torch.hvp(*args)
        return EngineOutput(out.value, {k: 1.01 * g for k, g in out.grads.items()})


def test_a_wrong_hessian_reads_rate_two_and_fails_blamed_on_it(tmp_path):
    case = load_one(tmp_path, SMOOTH)
    reference = [e for e in engines() if e.name != "torch"]
    result = run_case(case, "float64", reference + [OffHessian()])
    second = {t.engine: t for t in result.taylor if t.product == "hvp"}
    assert second["torch"].verdict == "FAIL" and 1.5 < second["torch"].rate < 2.5
    assert second["jax"].verdict == "PASS" and second["jax"].rate > 2.5
    assert result.case.verdict == "FAIL" and result.case.blame == "torch"


def test_the_run_options_override_a_case_that_asks_for_reverse_mode_only(tmp_path):
    case = load_one(tmp_path, SMOOTH.replace("modes: [rev, fwd]\norder: 2\n", ""))
    assert not rows_of(run_case(case, "float64", engines()), "jvp")
    result = run_case(case, "float64", engines(), RunOptions(modes=["rev", "fwd"], order=2))
    assert rows_of(result, "jvp") and rows_of(result, "hvp") and rows_of(result, "adjoint")


def test_the_cli_writes_the_product_of_each_row(tmp_path):
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "c.yaml").write_text(SMOOTH.replace("order: 2\n", ""))
    code = main(
        [
            "run",
            str(tmp_path / "cases"),
            "--out",
            str(tmp_path / "out"),
            "-q",
            "--order",
            "2",
            "--timeout",
            "0",
        ]
    )
    assert code == 0
    comparisons = pd.read_csv(tmp_path / "out" / "comparisons.csv")
    assert set(comparisons["product"]) == {"vjp", "jvp", "hvp", "adjoint"}
    taylor = pd.read_csv(tmp_path / "out" / "taylor.csv")
    assert set(taylor["product"]) == {"vjp", "hvp"}
    html = (tmp_path / "out" / "report.html").read_text()
    assert "jvp:x" in html and "hvp:w" in html


def test_an_unknown_mode_is_refused_naming_the_file(tmp_path, capsys):
    (tmp_path / "c.yaml").write_text(SMOOTH.replace("[rev, fwd]", "[rev, sideways]"))
    assert main(["validate", str(tmp_path / "c.yaml")]) == 2
    err = capsys.readouterr().err
    assert "c.yaml" in err and "modes" in err


MIXED = """name: mixed-duals
inputs:
  x: [-1.5, 0.5, 2.0]
  w: [0.3, -0.7, 1.1]
  mask: {value: [1, 0, 1], dtype: int64}
expr: sum(mask * (x * w) ** 2 / 2.5 + x ** 3 + 2.0 ** w)
modes: [fwd]
"""


def test_torchs_jvp_mixing_duals_with_literals_masks_and_inputs_is_right(tmp_path):
    """Each pass has one input moving: the other input, the mask and the literals enter
    torch's ops beside a dual tensor; a negative base under a literal exponent stays
    finite (a zero-tangent exponent would make it NaN)."""
    case = load_one(tmp_path, MIXED)
    numpy, torch = make_engines(["numpy", "torch"])
    arrays, tangents = case.arrays("float64"), case.tangents("float64")
    ours = numpy.jvp(case.graph, arrays, case.wrt, tangents)
    theirs = torch.jvp(case.graph, arrays, case.wrt, tangents)
    for w in case.wrt:
        assert np.isfinite(theirs.grads[w]).all()
        np.testing.assert_allclose(theirs.grads[w], ours.grads[w], rtol=1e-13)


def test_torchs_forward_mode_imports_no_compiler(tmp_path):
    """Arithmetic between a dual tensor and a plain one takes a Python decomposition in
    torch that imports torch._dynamo (1.4 s per process); the engine gives it none, in a
    worker's warm-up (`prepare`) or in a JVP."""
    (tmp_path / "case.yaml").write_text(MIXED)
    script = (
        "import sys; from gradcheck.loading import load_cases; "
        "from gradcheck.engines import TorchEngine; "
        f"[c] = load_cases([{str(tmp_path)!r}]); "
        "TorchEngine().prepare(); "
        "TorchEngine().jvp(c.graph, c.arrays('float32'), c.wrt, c.tangents('float32')); "
        "print('torch._dynamo' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.stdout.strip() == "False", out.stderr


# softmax-00034 of the false-alarm benchmark (its name seeds u and v): a softmax over a
# batch whose columns saturate, p = 1 - 1e-11. torch's and jax's H u are both about 1e-14
# off a 60-digit truth, where a float32 probe (p is 1 there) and moved inputs (p stays the
# same double) measure 4e-15: only u and v rescaled round their cancellations anew
SATURATED = """name: softmax-00034
inputs:
  x: {shape: [4, 5], init: normal, scale: 2.8898, seed: 1848398770}
  w: {shape: [5, 2], init: normal, scale: 1.7173, seed: 469712992}
  b: {shape: [2], init: normal, scale: 0.1808, seed: 1858854526}
expr: softmax(x @ w + b, axis=0)
dtypes: [float64]
modes: [rev, fwd]
order: 2
"""


def test_a_saturated_softmaxs_hessian_passes_in_float64_with_all_four_engines(
    tmp_path, monkeypatch
):
    case = load_one(tmp_path, SATURATED)
    result = run_case(case, "float64", engines())
    assert result.case.verdict == "PASS", result.case.message
    monkeypatch.setattr(runner, "RESCALED", ())
    unscaled = run_case(case, "float64", engines())
    assert (unscaled.case.verdict, unscaled.case.blame) == ("FAIL", "torch jax")
    assert unscaled.case.message.startswith("hvp:")


# attention-00074 of the false-alarm benchmark: one key, so p is 1 and the H u of q and k is
# 0 but for rounding (torch: 0, jax: 2e-16); only the moved inputs measure that residue
ONE_KEY = """name: attention-00074
inputs:
  q: {shape: [1, 5], init: normal, scale: 0.1135, seed: 7648582}
  k: {shape: [1, 5], init: normal, scale: 1.3291, seed: 562225985}
  v: {shape: [1, 1], init: normal, scale: 1.5181, seed: 1768454716}
graph:
  scores: q @ transpose(k) / 2.23606797749979
  p: softmax(scores, axis=-1)
  out: p @ v
dtypes: [float64]
modes: [rev, fwd]
order: 2
"""


def test_a_hessian_zero_by_structure_passes_in_float64_with_all_four_engines(tmp_path):
    result = run_case(load_one(tmp_path, ONE_KEY), "float64", engines())
    assert result.case.verdict == "PASS", result.case.message


class GradientForHessian(OffHessian):
    """torch, with its gradient given for H u (u never read): not linear in u."""

    def hvp(self, graph, inputs, wrt, cotangent, tangents):
        return self.torch.vjp(graph, inputs, wrt, cotangent)


def test_an_hvp_that_is_not_linear_in_u_is_not_taken_for_rounding(tmp_path):
    case = load_one(tmp_path, SATURATED)
    reference = [e for e in engines() if e.name != "torch"]
    result = run_case(case, "float64", reference + [GradientForHessian()])
    assert (result.case.verdict, result.case.blame) == ("FAIL", "torch"), result.case.message
    # its rescaled runs differ by a third of its values: no rounding, so no wider bound
    # (taken as rounding, they would bring the worst tol ratio down to about 5)
    worst = max(r.tol_ratio for r in rows_of(result, "hvp") if "torch" in (r.engine_a, r.engine_b))
    assert worst > 1e6
