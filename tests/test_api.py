"""The Python API: load_cases, run, the result's tables and `.ok`, write_reports, and
`run_case` as a pure function whose results pickle."""

from __future__ import annotations

import math
import pickle

import numpy as np
import pandas as pd
import pytest

import gradcheck
import reference_impls
from gradcheck import FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from helpers import COLAH_E, TANH_LAYER, write_case
from reference_impls import Primitive

CASE_COLUMNS = ["case", "dtype", "verdict", "blame", "seconds", "message"]
COMPARISON_COLUMNS = [
    "case",
    "dtype",
    "param",
    "engine_a",
    "engine_b",
    "verdict",
    "max_abs_err",
    "max_rel_err",
    "tol_ratio",
    "worst_index",
    "atol",
    "rtol",
]


@pytest.fixture(scope="module")
def engines():
    return [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine()]


@pytest.fixture
def catalog(tmp_path):
    root = tmp_path / "cases"
    write_case(root / "scalar", "colah-e.yaml", COLAH_E)
    write_case(root / "l2-wx", "tanh-layer.yaml", TANH_LAYER)
    return root


def test_load_cases_from_folder_and_file(catalog):
    cases = gradcheck.load_cases([catalog])
    assert sorted(c.name for c in cases) == ["colah-e", "tanh-layer"]
    by_name = {c.name: c for c in cases}
    assert by_name["tanh-layer"].dtypes == ["float64", "float32"]
    assert by_name["tanh-layer"].wrt == ["x", "w"]
    assert by_name["colah-e"].tags == ["scalar", "seed"]
    [one] = gradcheck.load_cases([catalog / "scalar" / "colah-e.yaml"])
    assert one.name == "colah-e" and one.graph.output == "e"


def test_load_cases_reports_every_bad_file(catalog):
    write_case(catalog, "bad1.yaml", "name: bad1\ninputs: {x: 1.0}\nexpr: y\n")
    write_case(catalog, "bad2.yaml", "name: bad2\ninputs: {x: 1.0}\nexpr: x\nbogus: 1\n")
    with pytest.raises(gradcheck.CaseErrors) as e:
        gradcheck.load_cases([catalog])
    files = sorted(err.file.rsplit("/", 1)[-1] for err in e.value.errors)
    assert files == ["bad1.yaml", "bad2.yaml"]


def test_case_arrays_are_seeded_and_in_the_dtype(catalog):
    [case] = gradcheck.load_cases([catalog / "l2-wx"])
    a64, a32 = case.arrays("float64"), case.arrays("float32")
    assert a64["x"].dtype == np.float64 and a32["x"].dtype == np.float32
    assert np.array_equal(a32["x"], a64["x"].astype(np.float32))
    assert np.array_equal(a64["x"], np.random.default_rng(1).standard_normal((3, 4)))
    [again] = gradcheck.load_cases([catalog / "l2-wx"])
    assert np.array_equal(again.arrays("float64")["w"], a64["w"])


def test_run_returns_tables_and_ok(catalog, engines, tmp_path):
    cases = gradcheck.load_cases([catalog])
    result = gradcheck.run(cases, engines=engines)
    assert isinstance(result, gradcheck.RunResult)
    assert isinstance(result.cases, pd.DataFrame) and isinstance(result.comparisons, pd.DataFrame)
    assert set(CASE_COLUMNS) <= set(result.cases.columns)
    assert set(COMPARISON_COLUMNS) <= set(result.comparisons.columns)
    assert len(result.cases) == 3 and len(result.comparisons) == 3 * 10 + 2 * 3 * 6
    assert result.ok and result.exit_code == 0
    assert result.counts() == {"PASS": 3}
    out = result.write_reports(tmp_path / "reports")
    for name in ("cases.csv", "comparisons.csv", "summary.md", "run.json", "report.html"):
        assert (out / name).is_file()
    written = pd.read_csv(out / "cases.csv", keep_default_na=False)
    assert list(written["case"]) == list(result.cases["case"])
    assert list(written["verdict"]) == list(result.cases["verdict"])


def test_run_dtypes_override(catalog, engines):
    cases = gradcheck.load_cases([catalog])
    result = gradcheck.run(cases, engines=engines, dtypes=["float32"])
    assert sorted(zip(result.cases["case"], result.cases["dtype"])) == [
        ("colah-e", "float32"),
        ("tanh-layer", "float32"),
    ]
    assert result.ok


def test_failing_run_is_not_ok(catalog, engines):
    ops = dict(reference_impls.OPS)
    ops["tanh"] = Primitive(ops["tanh"].forward, (lambda g, out, x: g * (1 - out),))
    cases = gradcheck.load_cases([catalog])
    result = gradcheck.run(cases, engines=[NumpyEngine(ops, name="mine")] + engines[1:])
    assert not result.ok and result.exit_code == 1
    verdicts = dict(zip(zip(result.cases["case"], result.cases["dtype"]), result.cases["verdict"]))
    assert verdicts == {
        ("colah-e", "float64"): "PASS",
        ("tanh-layer", "float64"): "FAIL",
        ("tanh-layer", "float32"): "FAIL",
    }
    assert set(result.cases.loc[result.cases["verdict"] == "FAIL", "blame"]) == {"mine"}


def test_a_plain_object_with_name_and_vjp_is_an_engine(catalog, engines):
    class Mine:
        name = "mine"

        def vjp(self, graph, inputs, wrt, cotangent):
            out = NumpyEngine().vjp(graph, inputs, wrt, cotangent)
            return out.value, dict(out.grads)  # a plain pair

    cases = gradcheck.load_cases([catalog / "scalar"])
    result = gradcheck.run(cases, engines=[Mine(), engines[2]])
    assert result.ok
    pairs = set(zip(result.comparisons["engine_a"], result.comparisons["engine_b"]))
    assert pairs == {("mine", "torch"), ("mine", "expect"), ("torch", "expect")}


def test_progress_callback(catalog, engines):
    seen = []
    gradcheck.run(gradcheck.load_cases([catalog]), engines=engines[:2], progress=seen.append)
    assert sorted(seen) == ["colah-e [float64]", "tanh-layer [float32]", "tanh-layer [float64]"]


# --- run_case: pure, plain data ---------------------------------------------------------------


def _without_seconds(result):
    case = {k: v for k, v in vars(result.case).items() if k != "seconds"}
    engines = [{k: v for k, v in vars(row).items() if k != "seconds"} for row in result.engines]
    return case, [vars(row) for row in result.comparisons], engines


def _same(x, y) -> bool:
    """Equality where NaN equals NaN (the row values of a shape mismatch, for instance)."""
    if isinstance(x, dict):
        return x.keys() == y.keys() and all(_same(x[k], y[k]) for k in x)
    if isinstance(x, (list, tuple)):
        return len(x) == len(y) and all(_same(a, b) for a, b in zip(x, y))
    if isinstance(x, np.ndarray):
        return np.array_equal(x, y, equal_nan=True)
    if isinstance(x, float) and math.isnan(x):
        return isinstance(y, float) and math.isnan(y)
    return type(x) is type(y) and x == y


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_run_case_results_pickle_and_repeat_exactly(catalog, engines, dtype):
    ops = dict(reference_impls.OPS)  # a failing run, so that element-wise errors are kept
    ops["tanh"] = Primitive(ops["tanh"].forward, (lambda g, out, x: g * (1 - out),))
    [case] = gradcheck.load_cases([catalog / "l2-wx"])
    runs = [gradcheck.run_case(case, dtype, [NumpyEngine(ops)] + engines[1:]) for _ in range(2)]
    assert runs[0].case.verdict == "FAIL" and runs[0].errors
    for r in runs:
        back = pickle.loads(pickle.dumps(r))
        assert _same(_without_seconds(back), _without_seconds(r))
        assert _same(back.errors, r.errors)
    assert _same(_without_seconds(runs[0]), _without_seconds(runs[1]))
    assert _same(runs[0].errors, runs[1].errors)
    assert isinstance(runs[0].case.seconds, float)


def test_cases_pickle(catalog):
    """A case goes to a worker process whole: model, graph and seeded arrays."""
    for case in gradcheck.load_cases([catalog]):
        back = pickle.loads(pickle.dumps(case))
        assert back.name == case.name and back.graph == case.graph
        for dtype in case.dtypes:
            assert _same(back.arrays(dtype), case.arrays(dtype))
            assert np.array_equal(back.cotangent(dtype), case.cotangent(dtype))


def test_run_result_round_trips_through_a_report_folder(catalog, engines, tmp_path):
    from gradcheck import read_run

    result = gradcheck.run(gradcheck.load_cases([catalog]), engines=engines[:2])
    result.write_reports(tmp_path / "r")
    back = read_run(tmp_path / "r")
    assert list(back.cases["verdict"]) == list(result.cases["verdict"])
    np.testing.assert_allclose(
        back.comparisons["tol_ratio"], result.comparisons["tol_ratio"], rtol=1e-12
    )
