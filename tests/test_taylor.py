"""The Taylor-remainder test: a right gradient converges at rate 2, a wrong one at rate 1,
and the rate names the wrong engine where two engines alone cannot."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest

import gradcheck
import reference_impls
from gradcheck.engines.fd.evaluate import MEMORY_BUDGET
from gradcheck.harness import taylor
from gradcheck.harness.compare import blame
from gradcheck.harness.result import read_table
from gradcheck.harness.runner import RunOptions, run_case
from gradcheck.harness.taylor import fit_rate
from helpers import CATALOG, MILLION, TANH_LAYER, load_one
from reference_impls import Primitive


def broken_tanh() -> gradcheck.NumpyEngine:
    """The numpy engine with tanh's rule forgetting to square: g * (1 - out)."""
    ops = dict(reference_impls.OPS)
    ops["tanh"] = Primitive(ops["tanh"].forward, (lambda g, out, x: g * (1 - out),))
    return gradcheck.NumpyEngine(ops, name="broken")


@pytest.fixture(scope="module")
def tanh_case(tmp_path_factory):
    return load_one(tmp_path_factory.mktemp("taylor"), TANH_LAYER)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_rate_is_two_for_right_engines_and_one_for_a_broken_rule(tanh_case, dtype):
    engines = [gradcheck.NumpyEngine(), gradcheck.TorchEngine(), broken_tanh()]
    result = run_case(tanh_case, dtype, engines)
    rates = {row.engine: row.rate for row in result.taylor}
    verdicts = {row.engine: row.verdict for row in result.taylor}
    assert rates["numpy"] > 1.8 and rates["torch"] > 1.8
    assert rates["broken"] < 1.5
    assert rates["broken"] == pytest.approx(1.0, abs=0.1)
    assert verdicts == {"numpy": "PASS", "torch": "PASS", "broken": "FAIL"}


def test_two_engines_the_broken_one_is_blamed_by_its_rate(tanh_case):
    engines = [broken_tanh(), gradcheck.TorchEngine()]
    with_taylor = run_case(tanh_case, "float64", engines).case
    without = run_case(tanh_case, "float64", engines, RunOptions(taylor=False)).case
    assert with_taylor.verdict == "FAIL" and with_taylor.blame == "broken"
    assert without.verdict == "FAIL" and without.blame == "broken torch"  # a tie without it


def test_taylor_csv_and_curves_in_the_run_folder(tanh_case, tmp_path):
    result = gradcheck.run([tanh_case], engines=[broken_tanh(), gradcheck.TorchEngine()])
    out = result.write_reports(tmp_path / "run")
    table = read_table(out / "taylor.csv")
    assert list(table.columns[:5]) == ["case", "dtype", "engine", "rate", "verdict"]
    assert set(table["engine"]) == {"broken", "torch"}
    assert table.set_index(["dtype", "engine"])["verdict"].to_dict() == {
        ("float64", "broken"): "FAIL",
        ("float64", "torch"): "PASS",
        ("float32", "broken"): "FAIL",
        ("float32", "torch"): "PASS",
    }
    with np.load(out / "taylor.npz") as curves:
        curve = curves["tanh-layer|float64|torch"]
    assert curve.shape == (3, 28)  # eps, then two directions
    html = (out / "report.html").read_text()
    assert html.count('alt="Taylor remainder curves per engine"') == 2


def test_fit_rate_finds_the_slope_between_rounding_and_nonlinearity():
    eps = 0.1 * 2.0 ** -np.arange(28)
    floor = 1e-13 * np.ones_like(eps)
    # quadratic, bent by a cubic at large eps, drowned in noise at small eps
    quadratic = 3 * eps**2 + 50 * eps**3 + 1e-14
    rate, (lo, hi) = fit_rate(eps, quadratic, floor)
    assert rate == pytest.approx(2.0, abs=0.05)
    assert quadratic[hi - 1] > floor[hi - 1] and eps[lo] < 0.01
    # a wrong gradient: a linear term that wins at small eps
    wrong = 3 * eps**2 + 1e-4 * eps + 1e-14
    assert fit_rate(eps, wrong, floor)[0] == pytest.approx(1.0, abs=0.05)
    # nothing above the floor: no rate
    assert np.isnan(fit_rate(eps, 1e-15 * np.ones_like(eps), floor)[0])


def test_blame_prefers_the_cover_of_suspects():
    pair = {("numpy", "torch")}
    assert blame(["numpy", "torch"], pair) == ["numpy", "torch"]
    assert blame(["numpy", "torch"], pair, suspects=["torch"]) == ["torch"]
    # evidence never overrides the smallest cover: one engine against two
    three = {("numpy", "torch"), ("numpy", "jax")}
    assert blame(["numpy", "torch", "jax"], three, suspects=["torch"]) == ["numpy"]


def test_the_remainder_plot_puts_each_curve_on_its_decades():
    """The SVG's points are the curves on log axes spanning every decade shown (the curves
    and the slope-2 guide), a zero leaves a gap, and the legend carries each engine's rate."""
    import base64
    import re

    from gradcheck.reports import taylor_plot as plot

    eps = np.array([1e-1, 1e-2, 1e-3, 1e-4])
    broken = np.array([1e-2, 0, 1e-4, 1e-5])
    curves = {"numpy": np.vstack([eps, eps**2]), "broken": np.vstack([eps, broken])}
    svg = base64.b64decode(
        plot.remainder_svg(curves, {"numpy": 2.0, "broken": 1.04}).split(",", 1)[1]
    ).decode()
    box = plot._LogBox([eps], [eps**2])
    assert (box.x0, box.x1, box.y0, box.y1) == (-4, -1, -8, -2)
    left, right = plot.LEFT, plot.WIDTH - plot.RIGHT
    top, bottom = plot.TOP, plot.HEIGHT - plot.BOTTOM
    assert box.point(1e-4, 1e-8) == pytest.approx((left, bottom))
    assert box.point(1e-1, 1e-2) == pytest.approx((right, top))
    guide = plot._guide(curves)[1]  # through the median R at eps 1e-3: 5.05e-5
    assert guide[2] == pytest.approx(5.05e-5)
    shown = plot._LogBox([eps], [eps**2, broken, guide])
    numpy_line = re.findall(r'points="([^"]+)" fill="none" stroke="#1f77b4"', svg)
    broken_lines = re.findall(r'points="([^"]+)" fill="none" stroke="#8c564b"', svg)
    points = [float(v) for p in numpy_line[0].split() for v in p.split(",")]
    expected = [v for x in eps for v in shown.point(x, x * x)]
    np.testing.assert_allclose(points, expected, atol=0.06)
    assert [len(line.split()) for line in broken_lines] == [1, 2]  # the zero breaks the line
    assert "numpy (rate 2.00)" in svg and "broken (rate 1.04)" in svg and "slope 2" in svg


def test_the_sweep_of_a_large_input_stays_within_the_memory_budget():
    """57 points of a 10^6-element input would take 456 MB at once: the sweep stacks a chunk
    of them at a time, within the fd engine's memory budget."""
    [case] = gradcheck.load_cases([MILLION])
    arrays = case.arrays("float64")
    objective = taylor._objective(case.graph, arrays, np.ones(()), case.wrt)
    tracemalloc.start()
    try:
        s = taylor.sweep(objective, arrays, case.wrt, case.name)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * MEMORY_BUDGET
    u, e = s.directions[1], s.eps[5]
    x = {"x": arrays["x"] + e * u["x"], "w": arrays["w"]}
    assert s.f[1][5] == pytest.approx(float(np.sum(np.tanh(x["x"] @ x["w"]) ** 2)), rel=1e-12)


def test_every_catalog_case_gets_its_taylor_test():
    """An exception inside the Taylor test only drops its rows (no evidence, no verdict), so
    nothing else would notice it failing on a kind of input (a 0-d one, say)."""
    engines = [gradcheck.NumpyEngine(), gradcheck.FiniteDifferences()]
    missing = [
        case.name
        for case in gradcheck.load_cases([CATALOG])
        if not run_case(case, case.dtypes[0], engines).taylor
    ]
    assert missing == []
