"""Shared helpers of the test suite: one-step graphs through an engine, YAML cases in tmp_path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np

import gradcheck
from gradcheck.ir.graph import FLOAT, INT, Leaf, build_graph


def leaves(inputs: dict) -> dict[str, Leaf]:
    return {k: Leaf(k, np.shape(v), INT if _is_int(v) else FLOAT) for k, v in inputs.items()}


def _is_int(value) -> bool:
    return np.issubdtype(np.asarray(value).dtype, np.integer)


def graph_of(expr: str | list[tuple[str, str]], inputs: dict):
    steps = [("out", expr)] if isinstance(expr, str) else expr
    return build_graph(steps, leaves(inputs))


def cast(inputs: dict, dtype) -> dict[str, np.ndarray]:
    """Floating inputs in `dtype`, integer data as int64, as the runner hands them over."""
    return {
        k: np.asarray(v) if _is_int(v) else np.asarray(v, dtype=dtype) for k, v in inputs.items()
    }


def engine_vjp(engine, expr, inputs: dict, dtype="float64", cotangent=None, wrt=None):
    """Run `expr` over `inputs` (cast to `dtype`) through one engine.

    Returns (graph, the inputs as handed over, cotangent, EngineOutput). A scalar output
    gets the cotangent 1; otherwise `cotangent` (cast to `dtype`) must be given."""
    graph = graph_of(expr, inputs)
    arrays = cast(inputs, dtype)
    if wrt is None:
        wrt = [k for k, v in arrays.items() if not _is_int(v)]
    if cotangent is None:
        assert graph.output_shape == (), "a non-scalar output needs a cotangent"
        cotangent = np.ones((), dtype=dtype)
    cotangent = np.asarray(cotangent, dtype=dtype)
    return (
        graph,
        arrays,
        cotangent,
        gradcheck.engines.as_output(engine.vjp(graph, arrays, wrt, cotangent)),
    )


def write_case(folder: Path, filename: str, text: str) -> Path:
    path = Path(folder) / filename
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def load_one(tmp_path: Path, text: str, filename: str = "case.yaml"):
    """Write one case's YAML text under tmp_path and load it with the public API."""
    [case] = gradcheck.load_cases([write_case(tmp_path, filename, text)])
    return case


def ratio(actual, expected, rtol: float, atol: float = 0.0) -> float:
    """Worst |a - e| / (atol + rtol * |e|) -- at most 1 means close."""
    a, e = np.asarray(actual, dtype=np.float64), np.asarray(expected, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.abs(a - e) / (atol + rtol * np.abs(e))
    r = np.where(a == e, 0.0, r)
    return float(np.max(r, initial=0.0))


def assert_close(actual, expected, rtol: float, atol: float = 0.0, what: str = "") -> None:
    assert np.shape(actual) == np.shape(expected), (
        f"{what}: shape {np.shape(actual)} != {np.shape(expected)}"
    )
    assert np.all(np.isfinite(actual)), f"{what}: non-finite values {actual}"
    r = ratio(actual, expected, rtol, atol)
    assert r <= 1, (
        f"{what}: tolerance ratio {r:.3g} (rtol {rtol}, atol {atol})\n"
        f"actual   {np.asarray(actual)!r}\nexpected {np.asarray(expected)!r}"
    )


# Every file of a complete run folder, and nothing else (no temporary file left behind).
CATALOG = Path(__file__).resolve().parents[1] / "cases"  # the repository's catalog

RUN_FILES = sorted(
    [
        ".gradcheck-run",
        "cases.csv",
        "comparisons.csv",
        "engines.csv",
        "errors.npz",
        "run.json",
        "report.html",
        "summary.md",
        "taylor.csv",
        "taylor.npz",
    ]
)


# Case texts reused by several test modules.

COLAH_E = """\
name: colah-e
description: e = (a+b)*(b+1)
tags: [scalar, seed]
inputs:
  a: 2.0
  b: 1.0
graph:
  c: a + b
  d: b + 1
  e: c * d
expect:
  value: 6.0
  grad: {a: 2.0, b: 5.0}
"""

TANH_LAYER = """\
name: tanh-layer
tags: [l2-wx]
inputs:
  x: {shape: [3, 4], init: normal, seed: 1}
  w: {shape: [4, 2], init: normal, seed: 2, scale: 0.5}
expr: sum(tanh(x @ w) ** 2)
dtypes: [float64, float32]
"""

# the 10^6-input case that benchmarks/bench_fd.py times, one file for both
MILLION = Path(__file__).resolve().parents[1] / "benchmarks" / "tanh-million.yaml"
