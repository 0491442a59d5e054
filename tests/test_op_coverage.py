"""Every op of the registry has an implementation in every engine's table, and runs.

An engine may lack an op on purpose; then the case reports SKIP for that engine (with the
op named), never PASS, and no comparison row involves it. The softmax family, conv2d,
maxpool2d and rnn are required here like every other op.
"""

from __future__ import annotations

import sys

import pytest

import gradcheck
import reference_impls
from gradcheck.engines import FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from gradcheck.ir.ops import OPS as REGISTRY
from helpers import COLAH_E, load_one

REQUIRED = {
    "add",
    "sub",
    "mul",
    "div",
    "pow",
    "maximum",
    "minimum",
    "matmul",
    "neg",
    "exp",
    "log",
    "tanh",
    "sigmoid",
    "relu",
    "abs",
    "sum",
    "mean",
    "max",
    "transpose",
    "reshape",
    "softmax",
    "log_softmax",
    "softmax_cross_entropy",
    "conv2d",
    "maxpool2d",
    "rnn",
    # the second vocabulary (DESIGN.md), non-layer ops
    "sqrt",
    "square",
    "sin",
    "cos",
    "log1p",
    "softplus",
    "gelu",
    "leaky_relu",
    "elu",
    "clip",
    "min",
    "var",
    "logsumexp",
    "einsum",
    "index",
    "concat",
    "stack",
    "expand_dims",
    "squeeze",
    "take",
    "take_along_axis",
} | {
    # and its layers
    "avgpool2d",
    "batchnorm",
    "layernorm",
    "lstm",
}


def _tables() -> dict:
    from gradcheck.engines import jax_ops, torch_ops

    return {"numpy": reference_impls.OPS, "torch": torch_ops.OPS, "jax": jax_ops.OPS}


def test_registry_has_the_design_vocabulary():
    missing = sorted(REQUIRED - set(REGISTRY))
    assert not missing, f"missing from the registry: {missing}"


@pytest.mark.parametrize("table", ["numpy", "torch", "jax"])
@pytest.mark.parametrize("op", sorted(set(REGISTRY) | REQUIRED))
def test_every_op_in_every_engine_table(op, table):
    assert op in _tables()[table], f"op {op!r} is missing from the {table} engine's table"
    assert callable(_tables()[table][op] if table != "numpy" else _tables()[table][op].forward)


@pytest.mark.parametrize("table", ["numpy", "torch", "jax"])
def test_tables_name_only_registered_ops(table):
    """A table entry under a name the registry does not know is a typo that no case reaches."""
    assert set(_tables()[table]) <= set(REGISTRY), sorted(set(_tables()[table]) - set(REGISTRY))


@pytest.mark.parametrize("op", sorted(REGISTRY))
def test_numpy_primitive_has_one_rule_per_argument(op):
    spec, prim = REGISTRY[op], reference_impls.OPS[op]
    assert prim.variadic == spec.variadic, op
    rules = 1 if spec.variadic else spec.arity  # a variadic op: one rule serves all
    assert len(prim.grads) == rules, f"{op}: {len(prim.grads)} rules for {spec.arity} args"
    for i, rule in enumerate(prim.grads):
        if i in spec.int_args:
            assert rule is None, f"{op}: integer argument {i + 1} has a gradient rule"
        else:
            assert callable(rule), f"{op}: argument {i + 1} has no gradient rule"


# One small case per op: each must run on all four engines and PASS.
EXAMPLES = {
    "add": ("a + b", "a: {shape: [3, 1]}\n  b: {shape: [1, 4]}"),
    "sub": ("a - b", "a: {shape: [3, 1]}\n  b: {shape: [4]}"),
    "mul": ("a * b", "a: {shape: [4]}\n  b: {shape: [3, 4]}"),
    "div": ("a / b", "a: {shape: [3, 4]}\n  b: {shape: [4], init: uniform, low: 0.5, high: 2}"),
    "pow": ("a ** b", "a: {shape: [3], init: uniform, low: 0.5, high: 2}\n  b: {shape: [3]}"),
    "maximum": ("maximum(a, b)", "a: {shape: [3, 4]}\n  b: {shape: [4]}"),
    "minimum": ("minimum(a, b)", "a: {shape: [3, 4]}\n  b: {shape: [4]}"),
    "matmul": ("a @ b", "a: {shape: [2, 3]}\n  b: {shape: [3, 4]}"),
    "neg": ("-a", "a: {shape: [3]}"),
    "exp": ("exp(a)", "a: {shape: [3]}"),
    "log": ("log(a)", "a: {shape: [3], init: uniform, low: 0.5, high: 2}"),
    "tanh": ("tanh(a)", "a: {shape: [3]}"),
    "sigmoid": ("sigmoid(a)", "a: {shape: [3]}"),
    "relu": ("relu(a)", "a: [-1.5, -0.25, 0.5, 2.0]"),
    "abs": ("abs(a)", "a: [-1.5, -0.25, 0.5, 2.0]"),
    "sum": ("sum(a, axis=1)", "a: {shape: [2, 3, 4]}"),
    "mean": ("mean(a, axis=[0, 2])", "a: {shape: [2, 3, 4]}"),
    "max": ("max(a, axis=-1)", "a: {shape: [2, 3, 4]}"),
    "transpose": ("transpose(a, axes=[2, 0, 1])", "a: {shape: [2, 3, 4]}"),
    "reshape": ("reshape(a, shape=[4, -1])", "a: {shape: [2, 3, 4]}"),
    "softmax": ("softmax(a, axis=-1)", "a: {shape: [2, 5]}"),
    "log_softmax": ("log_softmax(a, axis=0)", "a: {shape: [3, 4]}"),
    "softmax_cross_entropy": (
        "softmax_cross_entropy(s, y)",
        "s: {shape: [3, 4]}\n  y: {value: [0, 3, 1], dtype: int64}",
    ),
    "conv2d": (
        "conv2d(x, w, b, stride=2, pad=1)",
        "x: {shape: [1, 2, 5, 5]}\n  w: {shape: [3, 2, 3, 3], scale: 0.5}\n  b: {shape: [3]}",
    ),
    "maxpool2d": ("maxpool2d(x, size=2, stride=2)", "x: {shape: [1, 2, 4, 4]}"),
    "rnn": (
        "rnn(x, h0, wx, wh, b)",
        "x: {shape: [2, 3, 2]}\n  h0: {shape: [2, 4]}\n  wx: {shape: [2, 4], scale: 0.5}\n"
        "  wh: {shape: [4, 4], scale: 0.5}\n  b: {shape: [4]}",
    ),
    # --- the second vocabulary: non-square shapes, non-last axes, batches ----------------
    "sqrt": ("sqrt(a)", "a: {shape: [2, 3], init: uniform, low: 0.5, high: 2}"),
    "square": ("square(a)", "a: {shape: [2, 3]}"),
    "sin": ("sin(a)", "a: {shape: [2, 3]}"),
    "cos": ("cos(a)", "a: {shape: [2, 3]}"),
    "log1p": ("log1p(a)", "a: {shape: [2, 3], init: uniform, low: -0.5, high: 2}"),
    "softplus": ("softplus(a)", "a: [[-30.0, -1.5, 0.25], [0.5, 2.0, 40.0]]"),
    "gelu": ("gelu(a)", "a: {shape: [2, 3], scale: 2}"),
    "leaky_relu": ("leaky_relu(a, slope=0.2)", "a: [[-1.5, -0.25], [0.5, 2.0], [-3.0, 1.0]]"),
    "elu": ("elu(a, alpha=0.7)", "a: [[-1.5, -0.25], [0.5, 2.0], [-3.0, 1.0]]"),
    "clip": ("clip(a, low=-0.5, high=1.0)", "a: [[-1.5, -0.25], [0.5, 2.0], [-3.0, 0.75]]"),
    "min": ("min(a, axis=[0, 2], keepdims=True)", "a: {shape: [2, 3, 4]}"),
    "var": ("var(a, axis=1)", "a: {shape: [2, 3, 4]}"),
    "logsumexp": ("logsumexp(a, axis=0)", "a: {shape: [3, 4], scale: 3}"),
    "einsum": ('einsum("bij,bjk->bki", a, b)', "a: {shape: [2, 3, 4]}\n  b: {shape: [2, 4, 5]}"),
    "index": ("a[1, ::-2, None, 1:3]", "a: {shape: [2, 5, 4]}"),
    "concat": (
        "concat(a, b, c, axis=1)",
        "a: {shape: [2, 1, 3]}\n  b: {shape: [2, 4, 3]}\n  c: {shape: [2, 2, 3]}",
    ),
    "stack": ("stack(a, b, axis=-1)", "a: {shape: [2, 3]}\n  b: {shape: [2, 3]}"),
    "expand_dims": ("expand_dims(a, axis=[0, -1])", "a: {shape: [2, 3]}"),
    "squeeze": ("squeeze(a, axis=2)", "a: {shape: [2, 3, 1, 1]}"),
    "take": (
        "take(a, i, axis=1)",
        "a: {shape: [2, 4, 3]}\n  i: {value: [[0, 3], [3, 1], [0, 0]], dtype: int64}",
    ),
    "take_along_axis": (
        "take_along_axis(a, i, axis=1)",
        "a: {shape: [3, 4]}\n  i: {value: [[1], [3], [1]], dtype: int64}",
    ),
    # layers: non-square, batch > 1, channels != filters
    "conv2d-dilated": (
        "conv2d(x, w, b, stride=1, pad=2, dilation=2)",
        "x: {shape: [2, 3, 6, 7]}\n  w: {shape: [4, 3, 3, 2], scale: 0.5}\n  b: {shape: [4]}",
    ),
    "conv2d-groups": (
        "conv2d(x, w, b, stride=2, pad=1, groups=2)",
        "x: {shape: [2, 4, 5, 6]}\n  w: {shape: [6, 2, 3, 3], scale: 0.5}\n  b: {shape: [6]}",
    ),
    "avgpool2d": ("avgpool2d(x, size=3, stride=2)", "x: {shape: [2, 3, 7, 6]}"),
    "batchnorm": (
        "batchnorm(x, gamma, beta)",
        "x: {shape: [5, 3]}\n  gamma: {shape: [3]}\n  beta: {shape: [3]}",
    ),
    "batchnorm-spatial": (
        "batchnorm(x, gamma, beta, eps=0.001)",
        "x: {shape: [2, 3, 4, 5]}\n  gamma: {shape: [3]}\n  beta: {shape: [3]}",
    ),
    "layernorm": (
        "layernorm(x, gamma, beta)",
        "x: {shape: [2, 3, 5]}\n  gamma: {shape: [5]}\n  beta: {shape: [5]}",
    ),
    "lstm": (
        "lstm(x, h0, c0, wx, wh, b)",
        "x: {shape: [2, 3, 4]}\n  h0: {shape: [2, 5]}\n  c0: {shape: [2, 5]}\n"
        "  wx: {shape: [4, 20], scale: 0.5}\n  wh: {shape: [5, 20], scale: 0.5}\n"
        "  b: {shape: [20]}",
    ),
}

ALL_ENGINES = [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine()]


def example_case(tmp_path, example: str, dtypes="[float64, float32]"):
    expr, inputs = EXAMPLES[example]
    name = example.replace("_", "-")
    return load_one(
        tmp_path,
        f"name: {name}\ninputs:\n  {inputs}\nexpr: {expr}\ndtypes: {dtypes}\n",
        f"{name}.yaml",
    )


def test_every_registered_op_has_an_example():
    assert set(REGISTRY) | REQUIRED <= set(EXAMPLES), sorted(set(REGISTRY) - set(EXAMPLES))


@pytest.mark.parametrize("example", sorted(EXAMPLES))
def test_each_op_runs_and_agrees_on_all_four_engines(tmp_path, example):
    case = example_case(tmp_path, example)
    assert case.graph.ops() == {example.split("-")[0]}
    for dtype in ("float64", "float32"):
        result = gradcheck.run_case(case, dtype, ALL_ENGINES)
        statuses = {r.engine: r.status for r in result.engines}
        assert statuses == {"numpy": "ok", "fd": "ok", "torch": "ok", "jax": "ok"}, result.engines
        assert result.case.verdict == "PASS", (dtype, result.case.message)
        pairs = {(r.engine_a, r.engine_b) for r in result.comparisons}
        assert len(pairs) == 6  # every pair of the four engines was compared


# --- an engine without an op: SKIP, never PASS ----------------------------------------------


def without(table: dict, op: str) -> dict:
    table = dict(table)
    del table[op]
    return table


@pytest.fixture
def tanh_case(tmp_path):
    return load_one(
        tmp_path,
        """\
        name: tanh-only
        inputs:
          x: [0.5, -1.0, 2.0]
        expr: sum(tanh(x))
        """,
    )


def _status(result, engine):
    [row] = [r for r in result.engines if r.engine == engine]
    return row.status, row.message


def test_numpy_engine_lacking_an_op_is_skipped_not_compared(tanh_case):
    lacking = NumpyEngine(without(reference_impls.OPS, "tanh"), name="numpy")
    result = gradcheck.run_case(tanh_case, "float64", [lacking, TorchEngine(), JaxEngine()])
    status, message = _status(result, "numpy")
    assert status == "SKIP" and "tanh" in message
    assert result.case.skipped == "numpy"
    assert all("numpy" not in (r.engine_a, r.engine_b) for r in result.comparisons)
    assert result.case.verdict == "PASS"  # torch and jax still agree
    assert result.case.engines == "torch jax"


def test_only_engine_lacking_the_op_gives_skip_never_pass(tanh_case):
    lacking = NumpyEngine(without(reference_impls.OPS, "tanh"), name="numpy")
    fd_lacking = FiniteDifferences(without(reference_impls.OPS, "tanh"))
    for engines in ([lacking], [lacking, fd_lacking], [lacking, FiniteDifferences()]):
        result = gradcheck.run_case(tanh_case, "float64", engines)
        assert result.case.verdict == "SKIP", (engines, result.case)
        assert result.comparisons == []
        assert result.case.blame == ""


def test_expect_alone_does_not_make_a_pass(tmp_path):
    """One engine plus hand values is two sources; no engine at all is a SKIP."""
    case = load_one(tmp_path, COLAH_E)
    lacking = NumpyEngine(without(reference_impls.OPS, "mul"), name="numpy")
    result = gradcheck.run_case(case, "float64", [lacking])
    assert result.case.verdict == "SKIP"


@pytest.mark.parametrize("module", ["torch_ops", "jax_ops"])
def test_framework_table_lacking_an_op_skips(tanh_case, monkeypatch, module):
    import importlib

    ops_module = importlib.import_module(f"gradcheck.engines.{module}")
    monkeypatch.setattr(ops_module, "OPS", without(ops_module.OPS, "tanh"))
    engine = TorchEngine() if module == "torch_ops" else JaxEngine()
    result = gradcheck.run_case(tanh_case, "float64", [engine, NumpyEngine()])
    status, message = _status(result, engine.name)
    assert status == "SKIP" and "tanh" in message
    assert result.case.verdict == "SKIP"  # numpy alone is not a comparison


@pytest.mark.parametrize("framework", ["torch", "jax"])
def test_framework_not_installed_skips(tanh_case, monkeypatch, framework):
    monkeypatch.setitem(sys.modules, framework, None)  # `import torch` now raises ImportError
    engine = TorchEngine() if framework == "torch" else JaxEngine()
    result = gradcheck.run_case(tanh_case, "float64", [engine, NumpyEngine(), FiniteDifferences()])
    status, message = _status(result, framework)
    assert status == "SKIP" and framework in message
    assert result.case.verdict == "PASS"
    assert result.case.skipped == framework


def test_missing_gradient_rule_is_an_error_naming_op_and_argument(tanh_case):
    ops = dict(reference_impls.OPS)
    ops["tanh"] = reference_impls.Primitive(ops["tanh"].forward, ())
    result = gradcheck.run_case(tanh_case, "float64", [NumpyEngine(ops), TorchEngine()])
    assert result.case.verdict == "ERROR"
    assert result.case.blame == "numpy"
    assert "tanh" in result.case.message and "argument 1" in result.case.message
