"""Hostile input is refused and nothing in it runs: YAML tags that construct Python objects,
and expressions that would call, import or reach into Python if they were evaluated.

Every payload would create a marker file if it ran; each test checks that the file does
not exist, that the report folder was not created, that the exit code is 2 and that the
message names the file without a traceback."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradcheck.cli import main

YAML_TAGS = [
    "!!python/object/apply:os.system ['touch {marker}']",
    "!!python/object/apply:subprocess.call [['touch', '{marker}']]",
    "!!python/object/new:subprocess.Popen [['touch', '{marker}']]",
    "!!python/object/apply:builtins.exec [\"open('{marker}', 'w')\"]",
    "!!python/name:os.system",
    "!!python/module:os",
    "!!python/object:os.PathLike {{}}",
    "!<tag:yaml.org,2002:python/object/apply:os.system> ['touch {marker}']",
]

EXPRESSIONS = [
    "__import__('os').system('touch {marker}')",
    "exec(\"open('{marker}', 'w')\")",
    "eval(\"__import__('os').system('touch {marker}')\")",
    "open('{marker}', 'w')",
    "x.__class__.__base__.__subclasses__()",
    "x.real",
    "x[x]",  # indices are constants only
    "x[open('{marker}', 'w')]",
    "x[0.5]",
    "x[[0, 1]]",
    "x['a']",
    "einsum('i->i', x, open('{marker}', 'w'))",
    "einsum(open('{marker}', 'w'), x)",
    "einsum('__import__', x)",
    "exp('i->i', x)",  # the einsum string goes to einsum alone
    "einsum(x, 'i->i')",
    "(lambda: __import__('os').system('touch {marker}'))()",
    "[open('{marker}', 'w') for _ in x]",
    "{{k: 1 for k in x}}",
    "(open('{marker}', 'w') for _ in x)",
    "f'{{x}}'",
    "'touch {marker}'",
    "b'bytes'",
    "(y := x)",
    "x if x else x",
    "x < 1",
    "not x",
    "x and x",
    "x or open('{marker}', 'w')",
    "~x",
    "x % 2",
    "x // 2",
    "x << 1",
    "[x, x]",
    "(x, x)",
    "{{x}}",
    "...",
    "sum(*x)",
    "sum(**{{'axis': 0}})",
    "sum(x, axis=__import__('os').system('touch {marker}'))",
    "sum(x, axis=x.shape)",
    "__builtins__",
    "__import__",
    "x; import os",
    "x\nimport os",
    "await x",
    "yield x",
    "exp(x).conjugate()",
    "getattr(x, 'real')",
]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "hostile.yaml"
    path.write_text(text)
    return path


def expression_case(expr: str) -> str:
    # safe_dump quotes the payload, so it reaches the expression parser unchanged
    return yaml.safe_dump({"name": "hostile", "inputs": {"x": [1.0, 2.0]}, "expr": expr})


def assert_refused(tmp_path: Path, capsys, path: Path, marker: Path) -> str:
    out = tmp_path / "out"
    for argv in (["validate", str(path)], ["run", str(path), "--out", str(out)]):
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert "hostile.yaml" in err and "Traceback" not in err
    assert not marker.exists() and not out.exists()
    return err


@pytest.mark.parametrize("tag", YAML_TAGS)
def test_python_yaml_tags_are_refused(tmp_path, capsys, tag):
    marker = tmp_path / "marker"
    text = f"name: hostile\ninputs:\n  x: {tag.format(marker=marker)}\nexpr: x\n"
    err = assert_refused(tmp_path, capsys, write(tmp_path, text), marker)
    assert "hostile.yaml:3" in err


@pytest.mark.parametrize("expr", EXPRESSIONS)
def test_expressions_outside_the_whitelist_are_refused(tmp_path, capsys, expr):
    marker = tmp_path / "marker"
    path = write(tmp_path, expression_case(expr.format(marker=marker)))
    err = assert_refused(tmp_path, capsys, path, marker)
    assert "case 'hostile'" in err


def test_a_tag_in_a_key_or_a_later_document_is_refused(tmp_path, capsys):
    marker = tmp_path / "marker"
    text = (
        f"name: hostile\ninputs: {{x: 1.0}}\nexpr: x\n---\n"
        f"? !!python/object/apply:os.system ['touch {marker}']\n: 1\n"
    )
    assert_refused(tmp_path, capsys, write(tmp_path, text), marker)


def test_the_console_script_refuses_without_a_traceback(tmp_path):
    """End to end, in a fresh interpreter: what a user or CI would see."""
    marker = tmp_path / "marker"
    path = write(
        tmp_path,
        f"name: hostile\ninputs:\n  x: !!python/object/apply:os.system "
        f"['touch {marker}']\nexpr: x\n",
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "gradcheck", "run", str(path), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 2
    assert "hostile.yaml:3" in proc.stderr and "Traceback" not in proc.stderr + proc.stdout
    assert not marker.exists() and not out.exists()


def test_the_parser_never_calls_eval(monkeypatch):
    """The expression text goes to `ast.parse` and a whitelist walk, never to eval or exec."""
    import builtins

    from gradcheck.ir.expr import parse

    def forbidden(*args, **kwargs):
        raise AssertionError("eval/exec/compile called")

    for name in ("eval", "exec"):
        monkeypatch.setattr(builtins, name, forbidden)
    assert parse("sum(exp(x) * 2, axis=[0, 1])").op == "sum"


# --- integer attributes past a C int, and reductions over nothing: refused at validate ------

X3 = "  x: {shape: [1, 1, 3, 3]}\n  w: {shape: [1, 1, 3, 3]}\n  b: {shape: [1]}\n"

# (id, inputs, expression, the message after "step 'loss', column N: ")
REFUSED_AT_VALIDATE = [
    (
        "conv-stride-2-62",
        X3,
        "sum(conv2d(x, w, b, stride=4611686018427387904))",
        "conv2d: stride must be at most 2147483647 (2**31 - 1, the largest integer torch and "
        "XLA take), got 4611686018427387904",
    ),
    (
        "conv-stride-float",
        X3,
        "sum(conv2d(x, w, b, stride=1e300))",
        "conv2d: stride must be at most 2147483647 (2**31 - 1, the largest integer torch and "
        "XLA take), got about 10**300",
    ),
    (
        "conv-dilation-2-40",
        X3,
        "sum(conv2d(x, w, b, dilation=1099511627776))",
        "conv2d: dilation must be at most 2147483647 (2**31 - 1, the largest integer torch and "
        "XLA take), got 1099511627776",
    ),
    (
        "conv-groups-2-31",
        X3,
        "sum(conv2d(x, w, b, groups=2147483648))",
        "conv2d: groups must be at most 2147483647 (2**31 - 1, the largest integer torch and "
        "XLA take), got 2147483648",
    ),
    (
        "conv-pad-past-the-input",
        X3,
        "sum(conv2d(x, w, b, pad=4))",
        "conv2d: pad 4 is larger than the input's height and width 3 x 3 (at most 3): its "
        "windows would see only padding",
    ),
    (
        "maxpool-stride-10-15",
        "  x: {shape: [1, 1, 4, 4]}\n",
        "sum(maxpool2d(x, size=2, stride=1000000000000000))",
        "maxpool2d: stride must be at most 2147483647 (2**31 - 1, the largest integer torch and "
        "XLA take), got 1000000000000000",
    ),
    (
        "avgpool-size-2-31",
        "  x: {shape: [1, 1, 4, 4]}\n",
        "sum(avgpool2d(x, size=2147483648))",
        "avgpool2d: size must be at most 2147483647 (2**31 - 1, the largest integer torch and "
        "XLA take), got 2147483648",
    ),
    (
        "reshape-2-31-of-nothing",
        "  x: {shape: [0, 2]}\n",
        "sum(reshape(x, shape=[2147483648, 0]))",
        "reshape: shape entry 2147483648 is larger than 2147483647 (2**31 - 1, the largest "
        "integer torch and XLA take)",
    ),
    (
        "cross-entropy-zero-rows",
        "  s: {shape: [0, 3]}\n  y: {shape: [0], init: randint, low: 0, high: 3}\n",
        "softmax_cross_entropy(s, y)",
        "softmax_cross_entropy: axis 0 of shape [0, 3] is empty: "
        "no rows to take the mean loss over",
    ),
    (
        "mean-empty-axis",
        "  x: {shape: [2, 0]}\n",
        "sum(mean(x, axis=1))",
        "mean: axis 1 of shape [2, 0] is empty: reduces over nothing, which has no value",
    ),
    (
        "mean-of-nothing",
        "  x: {shape: [0, 3]}\n",
        "mean(x)",
        "mean: axis [0, 1] of shape [0, 3] is empty: reduces over nothing, which has no value",
    ),
    (
        "var-empty-axis",
        "  x: {shape: [0, 3]}\n",
        "sum(var(x, axis=0))",
        "var: axis 0 of shape [0, 3] is empty: reduces over nothing, which has no value",
    ),
    (
        "batchnorm-zero-rows",
        "  x: {shape: [0, 3]}\n  g: {shape: [3]}\n  c: {shape: [3]}\n",
        "sum(batchnorm(x, g, c))",
        "batchnorm: x of shape [0, 3] has no rows to normalise over (N is 0): a mean of nothing",
    ),
    (
        "batchnorm-zero-height",
        "  x: {shape: [2, 3, 0, 4]}\n  g: {shape: [3]}\n  c: {shape: [3]}\n",
        "sum(batchnorm(x, g, c))",
        "batchnorm: x of shape [2, 3, 0, 4] has no rows to normalise over (N x H x W is 0): a "
        "mean of nothing",
    ),
    (
        "layernorm-zero-last-axis",
        "  x: {shape: [2, 0]}\n  g: {shape: [0]}\n  c: {shape: [0]}\n",
        "sum(layernorm(x, g, c))",
        "layernorm: layernorm needs a non-empty last axis, got [2, 0]",
    ),
    (
        "logsumexp-empty-axis",
        "  x: {shape: [2, 0]}\n",
        "sum(logsumexp(x, axis=1))",
        "logsumexp: axis 1 of shape [2, 0] is empty: nothing to normalise",
    ),
]


@pytest.mark.parametrize(
    "name,inputs,expr,message", REFUSED_AT_VALIDATE, ids=[r[0] for r in REFUSED_AT_VALIDATE]
)
def test_attributes_no_engine_takes_and_reductions_over_nothing_are_refused(
    tmp_path, capsys, name, inputs, expr, message
):
    path = tmp_path / f"{name}.yaml"
    path.write_text(f"name: {name}\ninputs:\n{inputs}graph:\n  loss: {expr}\n")
    line = 4 + inputs.count("\n")  # the line of `loss:`
    column = 1 if expr.startswith(message.split(":")[0]) else 5  # the call, inside sum(...)
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {path}:{line}: case '{name}': step 'loss', column {column}: {message}\n"


def test_a_stride_past_the_input_computes_one_window_on_every_engine(tmp_path):
    """conv2d of a 3 x 3 input by a 3 x 3 kernel at stride 2**31 - 1 has one output, the whole
    window: sum(x * w) + b; every engine gets the stride clamped to the input's extent."""
    import numpy as np

    import gradcheck
    from gradcheck.engines import NumpyEngine, as_output

    path = tmp_path / "strides.yaml"
    path.write_text(
        "name: conv-huge-stride\ninputs:\n"
        "  x: {value: [[[[1, 2, 3], [4, 5, 6], [7, 8, 9]]]]}\n"
        "  w: {value: [[[[1, 0, -1], [2, 1, 0], [0, 3, 1]]]]}\n"
        "  b: {value: [0.5]}\n"
        "expr: sum(conv2d(x, w, b, stride=2147483647))\n"
        "---\n"
        "name: maxpool-huge-stride\ninputs:\n"
        "  x: {value: [[[[1, 9, 3, 4, 0], [2, 5, 6, 8, 7], [3, 1, 2, 4, 6]]]]}\n"
        "expr: sum(maxpool2d(x, size=2, stride=1000000000))\n"
    )
    conv, pool = gradcheck.load_cases([path])
    assert conv.graph.nodes[0].attrs["stride"] == 1 and pool.graph.nodes[0].attrs["stride"] == 4
    result = gradcheck.run([conv, pool])
    assert result.ok, result.cases[["case", "dtype", "verdict", "message"]].to_string()
    assert set(result.cases["verdict"]) == {"PASS"}
    assert {"numpy", "fd", "torch", "jax"} <= (
        set(result.comparisons["engine_a"]) | set(result.comparisons["engine_b"])
    )
    x, w = conv.arrays("float64")["x"], conv.arrays("float64")["w"]
    out = as_output(
        NumpyEngine().vjp(conv.graph, conv.arrays("float64"), conv.wrt, conv.cotangent("float64"))
    )
    assert out.value == 1 - 3 + 8 + 5 + 24 + 9 + 0.5 == 44.5
    assert np.array_equal(out.grads["x"], w) and np.array_equal(out.grads["w"], x)
    assert np.array_equal(out.grads["b"], [1.0])
    out = as_output(
        NumpyEngine().vjp(pool.graph, pool.arrays("float64"), pool.wrt, pool.cotangent("float64"))
    )
    assert out.value == 9  # the one window: rows 0-1, columns 0-1
    want = np.zeros((1, 1, 3, 5))
    want[0, 0, 0, 1] = 1
    assert np.array_equal(out.grads["x"], want)
