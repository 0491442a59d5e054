"""bfloat16 and float16 through the harness: catalog-style cases pass in every engine, a long
sum does not false-alarm, a wrong gradient rule fails blamed on its engine, the engines hand
back arrays of the case's dtype, and the tolerances used are in units of that dtype's eps.

How much a per-element check can see in a low dtype (measured here, see
`test_how_small_a_scale_bug_shows`): a gradient rule 1% too large FAILs in float16 against
fd (tol ratio ~2) but not in bfloat16 (~0.26): its eps is 0.78%, and a bug must be some 5%
before fd sees it, 25% before torch and jax do as well and numpy alone is blamed.
"""

from __future__ import annotations

import textwrap
from dataclasses import replace

import ml_dtypes
import numpy as np
import pandas as pd
import pytest

import gradcheck
import reference_impls
from gradcheck import dtypes
from gradcheck.cli import main
from gradcheck.engines import make_engines
from gradcheck.engines.base import Settings
from gradcheck.engines.jax_engine import program_key
from gradcheck.harness.compare import KNOWN_ROUNDING, LOW_IN_EPS, ULPS
from gradcheck.harness.runner import _run_engine, run_case
from helpers import write_case

LOW = ["bfloat16", "float16"]
EPS = {"bfloat16": 2.0**-7, "float16": 2.0**-10}
ENGINES = ["numpy", "fd", "torch", "jax"]

CASES = {
    "lp-elementwise-chain.yaml": """
        name: lp-elementwise-chain
        inputs:
          x: {shape: [6, 7], init: normal}
        graph:
          a: tanh(x)
          b: sigmoid(2 * x)
          out: a * b + exp(-0.5 * x * x)
        dtypes: [bfloat16, float16]
        """,
    "lp-softmax-ce.yaml": """
        name: lp-softmax-ce
        inputs:
          s: {shape: [8, 5], init: normal}
          y: {value: [0, 1, 2, 3, 4, 0, 1, 2], dtype: int64}
        expr: softmax_cross_entropy(s, y)
        dtypes: [bfloat16, float16]
        """,
    "lp-affine.yaml": """
        name: lp-affine
        inputs:
          x: {shape: [5, 12], init: normal}
          w: {shape: [12, 4], init: normal, scale: 0.3}
          b: {shape: [4], init: uniform, low: -1, high: 1}
        expr: x @ w + b
        dtypes: [bfloat16, float16]
        """,
    "lp-layernorm.yaml": """
        name: lp-layernorm
        inputs:
          x: {shape: [4, 10], init: normal}
          g: {shape: [10], init: uniform, low: 0.5, high: 1.5}
          b: {shape: [10], init: normal, scale: 0.1}
        expr: layernorm(x, g, b)
        """,
    "lp-conv2d.yaml": """
        name: lp-conv2d
        inputs:
          x: {shape: [2, 3, 6, 6], init: normal}
          w: {shape: [4, 3, 3, 3], init: normal, scale: 0.3}
          b: {shape: [4], init: uniform, low: -1, high: 1}
        expr: conv2d(x, w, b, stride=1, pad=1)
        """,
    "lp-maxpool.yaml": """
        name: lp-maxpool
        inputs:
          x: {shape: [2, 3, 4, 4], init: normal}
        expr: maxpool2d(x, size=2, stride=2)
        """,
    "lp-two-layer.yaml": """
        name: lp-two-layer
        inputs:
          x: {shape: [8, 10], init: normal}
          w1: {shape: [10, 16], init: normal, scale: 0.3}
          b1: {shape: [16], init: normal, scale: 0.1}
          w2: {shape: [16, 5], init: normal, scale: 0.3}
          b2: {shape: [5], init: normal, scale: 0.1}
          y: {value: [0, 1, 2, 3, 4, 0, 1, 2], dtype: int64}
        graph:
          h: relu(x @ w1 + b1)
          scores: h @ w2 + b2
          loss: softmax_cross_entropy(scores, y)
        """,
}

LONG = {  # 20,000 terms in each sum: their rounding must not read as a wrong gradient
    "lp-long-matmul.yaml": """
        name: lp-long-matmul
        inputs:
          x: {shape: [2, 20000], init: normal}
          w: {shape: [20000, 3], init: normal}
        expr: x @ w
        """,
    "lp-long-sum.yaml": """
        name: lp-long-sum
        inputs:
          x: {shape: [20000], init: uniform, low: 0.5, high: 1.5}
        expr: sum(x * x)
        """,
}

TANH = """
    name: lp-tanh
    inputs:
      x: {shape: [8, 16], init: normal}
    expr: tanh(x)
    """


def load(tmp_path, texts: dict) -> list:
    return gradcheck.load_cases([write_case(tmp_path, name, text) for name, text in texts.items()])


@pytest.fixture(scope="module")
def catalog_result(tmp_path_factory):
    return gradcheck.run(load(tmp_path_factory.mktemp("lp"), CASES), dtypes=LOW)


def test_the_dtypes_module_knows_each_dtype():
    assert dtypes.DTYPES == ("float64", "float32", "bfloat16", "float16")
    assert dtypes.numpy_dtype("bfloat16") == np.dtype(ml_dtypes.bfloat16)
    assert [dtypes.info(d).eps for d in dtypes.DTYPES] == [2.0**-52, 2.0**-23, 2.0**-7, 2.0**-10]
    assert dtypes.info("float16").tiny == 2.0**-14
    assert dtypes.info("float16").smallest_subnormal == 2.0**-24
    assert dtypes.info("bfloat16").tiny == 2.0**-126
    assert [dtypes.info(d).low for d in dtypes.DTYPES] == [False, False, True, True]
    assert dtypes.floating(ml_dtypes.bfloat16) and not dtypes.floating(np.int64)
    with pytest.raises(ValueError, match="bfloat16"):
        dtypes.info("float8")


def test_torch_helpers_round_trip_every_dtype():
    import torch

    for name in dtypes.DTYPES:
        array = np.array([1.5, -2.25, 3e-3]).astype(dtypes.numpy_dtype(name))
        tensor = dtypes.to_torch(array)
        assert tensor.dtype == dtypes.torch_dtype(name) == getattr(torch, name)
        back = dtypes.to_numpy(tensor, name)
        assert back.dtype == array.dtype and np.array_equal(back, array)


@pytest.mark.parametrize("dtype", LOW)
def test_case_arrays_and_cotangent_are_of_the_dtype(tmp_path, dtype):
    [case] = load(tmp_path, {"c.yaml": CASES["lp-two-layer.yaml"]})
    arrays = case.arrays(dtype)
    assert all(a.dtype == dtypes.numpy_dtype(dtype) for k, a in arrays.items() if k != "y")
    assert arrays["y"].dtype == np.int64
    [affine] = load(tmp_path, {"a.yaml": CASES["lp-affine.yaml"]})
    assert affine.dtypes == LOW
    assert affine.cotangent(dtype).dtype == dtypes.numpy_dtype(dtype)


def test_catalog_style_cases_pass_in_every_engine(catalog_result):
    cases = catalog_result.cases
    assert len(cases) == 2 * len(CASES)
    assert (cases.verdict == "PASS").all(), cases[cases.verdict != "PASS"].to_dict("records")
    # no engine skips an op on purpose in torch 2.13 on CPU: all four ran every case
    assert (cases.engines == " ".join(ENGINES)).all()
    assert (cases.skipped.fillna("") == "").all()
    assert catalog_result.comparisons.tol_ratio.max() < 0.5


def test_tolerances_used_are_in_the_dtype_s_eps(catalog_result):
    rows = catalog_result.comparisons
    for dtype in LOW:
        mine = rows[rows.dtype == dtype]
        # fd's gradients are estimates; its forward value is computed as any engine's
        fd = ((mine.engine_a == "fd") | (mine.engine_b == "fd")) & (mine.param != "(value)")
        assert set(mine[~fd].rtol) == {ULPS * EPS[dtype]}  # exact pairs: 4 eps
        assert set(mine[fd].rtol) == {EPS[dtype]}  # with fd's estimate: eps
        # a scalar value's tensor is itself: its atol is 4 eps of its magnitude
        loss = mine[(mine.case == "lp-softmax-ce") & (mine.param == "(value)")]
        magnitude = np.maximum(loss.value_a.abs(), loss.value_b.abs())
        np.testing.assert_allclose(loss.atol, ULPS * EPS[dtype] * magnitude)
    assert KNOWN_ROUNDING["float32"].rtol == ULPS * 2.0**-23


@pytest.mark.parametrize("dtype", LOW)
def test_a_case_s_own_rtol_keeps_the_fixed_atol_of_the_dtype(tmp_path, dtype):
    text = textwrap.dedent(CASES["lp-affine.yaml"]) + "tolerance: {rtol: 0.05}\n"
    [case] = load(tmp_path, {"c.yaml": text})
    rows = gradcheck.run([case], dtypes=[dtype]).comparisons
    assert set(rows.rtol) == {0.05}
    value = rows[
        (rows.param == "(value)") & (rows.engine_a == "numpy") & (rows.engine_b == "torch")
    ]
    bound = LOW_IN_EPS.atol * EPS[dtype]  # relative to the tensor's largest magnitude
    assert (value.atol >= bound * np.maximum(value.value_a.abs(), value.value_b.abs())).all()
    assert (value.atol < bound * 10).all()  # the value's entries are of order 1


@pytest.mark.parametrize("dtype", LOW)
def test_engines_return_arrays_of_the_case_s_dtype(tmp_path, dtype):
    """numpy, torch and jax compute (or round) into the dtype; fd's estimates are float64,
    as in float32, since it differences in float64."""
    [case] = load(tmp_path, {"c.yaml": CASES["lp-two-layer.yaml"]})
    want = dtypes.numpy_dtype(dtype)
    for engine in make_engines(ENGINES):
        out = _run_engine(engine, case, case.arrays(dtype), Settings(dtype))
        got = {out.value.dtype, *(g.dtype for g in out.grads.values())}
        assert got == ({np.dtype(np.float64)} if engine.name == "fd" else {want}), engine.name


@pytest.mark.parametrize("dtype,torch_name", [("bfloat16", "BFloat16"), ("float16", "Half")])
def test_an_op_torch_refuses_in_a_dtype_is_a_skip_not_an_error(
    tmp_path, monkeypatch, dtype, torch_name
):
    """Every op of the table runs in both dtypes on CPU in torch 2.13; older versions (and
    other devices) lack some kernels, which torch reports as "... not implemented for 'Half'"."""
    from gradcheck.engines import torch_ops

    def refused(x):
        raise RuntimeError(f"\"tanh_cpu\" not implemented for '{torch_name}'")

    monkeypatch.setitem(torch_ops.OPS, "tanh", refused)
    [case] = load(tmp_path, {"c.yaml": TANH})
    result = run_case(case, dtype, make_engines(ENGINES))
    torch_row = next(r for r in result.engines if r.engine == "torch")
    assert torch_row.status == "SKIP" and f"no {dtype} kernel" in torch_row.message
    assert (result.case.verdict, result.case.skipped) == ("PASS", "torch")
    monkeypatch.setitem(torch_ops.OPS, "tanh", lambda x: 1 / 0)  # a bug stays an ERROR
    assert run_case(case, dtype, make_engines(ENGINES)).case.verdict == "ERROR"


def test_jax_programs_of_each_dtype_are_kept_apart(tmp_path):
    [case] = load(tmp_path, {"c.yaml": CASES["lp-affine.yaml"]})
    keys = set()
    for dtype in dtypes.DTYPES:
        arrays = case.arrays(dtype)
        args = ([arrays[w] for w in case.wrt], {}, case.cotangent(dtype))
        keys.add(program_key(case.graph, case.wrt, False, "cpu", args))
    assert len(keys) == len(dtypes.DTYPES)


@pytest.mark.parametrize("dtype", LOW)
def test_sums_of_20000_terms_do_not_false_alarm(tmp_path, dtype):
    result = gradcheck.run(load(tmp_path, LONG), dtypes=[dtype])
    assert (result.cases.verdict == "PASS").all(), result.cases.message.tolist()
    assert (result.cases.engines == " ".join(ENGINES)).all()
    rows = result.comparisons
    assert (rows.verdict == "PASS").all()
    assert (rows.round_err > 0).any()  # the rounding model, not luck, carries them


def wrong_tanh(factor: float) -> gradcheck.NumpyEngine:
    """The numpy engine with tanh's gradient rule scaled by `factor` (-1: a sign error)."""
    ops = dict(reference_impls.OPS)
    rule = ops["tanh"].grads[0]
    ops["tanh"] = replace(ops["tanh"], grads=(lambda *a, **k: factor * rule(*a, **k),))
    return gradcheck.NumpyEngine(ops)


def checked_by(engines: list, case, dtype: str):
    """The case's verdict and blame, and the worst tol ratio of numpy against each engine."""
    result = run_case(case, dtype, engines)
    worst: dict[str, float] = {}
    for r in result.comparisons:
        if "numpy" in (r.engine_a, r.engine_b) and r.param != "(value)":
            other = r.engine_b if r.engine_a == "numpy" else r.engine_a
            worst[other] = max(worst.get(other, 0.0), r.tol_ratio)
    return result.case, worst


# (dtype, factor): the smallest bugs of these two kinds that numpy alone is blamed for
BLAMED_ALONE = [("float16", -1.0), ("bfloat16", -1.0), ("float16", 1.05), ("bfloat16", 1.25)]


@pytest.mark.parametrize("dtype,factor", BLAMED_ALONE)
def test_a_wrong_rule_fails_blamed_on_its_engine_alone(tmp_path, dtype, factor):
    rest = make_engines(["fd", "torch", "jax"])
    for text in (TANH, CASES["lp-elementwise-chain.yaml"]):
        [case] = load(tmp_path, {"c.yaml": text})
        row, worst = checked_by([wrong_tanh(factor)] + rest, case, dtype)
        assert (row.verdict, row.blame) == ("FAIL", "numpy"), (case.name, worst)
        assert min(worst.values()) > 1, worst


def test_how_small_a_scale_bug_shows(tmp_path):
    """tanh's rule 1% and 5% too large, on tanh of an 8 x 16 input: the measured ratios."""
    [case] = load(tmp_path, {"c.yaml": TANH})
    rest = make_engines(["fd", "torch", "jax"])
    seen = {
        (dtype, factor): checked_by([wrong_tanh(factor)] + rest, case, dtype)
        for dtype in LOW
        for factor in (1.01, 1.05)
    }
    # float16 (eps 0.098%): 1% FAILs against fd (~2), within torch's and jax's bounds (~0.5)
    row, worst = seen["float16", 1.01]
    assert row.verdict == "FAIL" and worst["fd"] > 1.5 and worst["torch"] < 1
    # bfloat16 (eps 0.78%): 1% is below what an element-wise check sees (~0.26 against fd)
    row, worst = seen["bfloat16", 1.01]
    assert row.verdict == "PASS" and max(worst.values()) < 0.5
    # ... 5% FAILs against fd alone (~1.5): numpy and fd share the blame
    row, worst = seen["bfloat16", 1.05]
    assert row.verdict == "FAIL" and worst["fd"] > 1 and worst["torch"] < 1
    assert "numpy" in row.blame.split()
    for dtype in LOW:  # and the right rule passes
        assert checked_by([wrong_tanh(1.0)] + rest, case, dtype)[0].verdict == "PASS"


def test_the_cli_runs_low_dtypes(tmp_path):
    path = write_case(tmp_path / "cases", "c.yaml", CASES["lp-affine.yaml"])
    out = tmp_path / "out"
    assert (
        main(
            ["run", str(path), "--dtypes", "bfloat16,float16", "--out", str(out), "--timeout", "0"]
        )
        == 0
    )
    cases = pd.read_csv(out / "cases.csv")
    assert list(cases.dtype) == LOW and (cases.verdict == "PASS").all()
    assert main(["run", str(path), "--dtypes", "float8", "--out", str(out), "--timeout", "0"]) == 2
