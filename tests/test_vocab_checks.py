"""The second vocabulary at validate time: bad attributes, out-of-range integer data and
graphs with nothing to differentiate are refused with one message (file, case, step, the
value, what is allowed) and exit 2; an unused `wrt` input gets a zero gradient everywhere;
`gradcheck ops`, the docs' op page and the JSON Schema describe the same op list."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import numpy as np
import pytest

import gradcheck
from gradcheck.cli import main
from gradcheck.engines import FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from gradcheck.ir.expr import ExprError, parse
from gradcheck.ir.ops import OPS, describe_ops, ops_markdown
from helpers import load_one, write_case

DOCS = Path(__file__).resolve().parent.parent / "docs"
X23 = "  x: {shape: [2, 3]}\n"

# (id, inputs, expression, fragments the message must hold)
REFUSED = [
    (
        "labels-negative",
        "  s: {shape: [3, 4]}\n  y: {value: [0, -1, 2], dtype: int64}\n",
        "softmax_cross_entropy(s, y)",
        ["step 'loss'", "labels 'y' must lie in 0..3, got -1"],
    ),
    (
        "labels-too-big",
        "  s: {shape: [2, 4]}\n  y: {value: [4, 0], dtype: int64}\n",
        "softmax_cross_entropy(s, y)",
        ["labels 'y' must lie in 0..3, got 4"],
    ),
    (
        "labels-randint-range",
        "  s: {shape: [5, 3]}\n  y: {shape: [5], init: randint, low: 0, high: 4}\n",
        "softmax_cross_entropy(s, y)",
        ["labels 'y' must lie in 0..2, got 3"],
    ),
    (
        "take-index-too-big",
        "  w: {shape: [5, 2]}\n  i: {value: [[0, 5]], dtype: int64}\n",
        "sum(take(w, i))",
        ["take: indices 'i' must lie in 0..4, got 5"],
    ),
    (
        "take-index-negative",
        "  w: {shape: [2, 5]}\n  i: {value: [-1], dtype: int64}\n",
        "sum(take(w, i, axis=1))",
        ["take: indices 'i' must lie in 0..4, got -1"],
    ),
    (
        "take-along-axis-index",
        X23 + "  i: {value: [[3], [0]], dtype: int64}\n",
        "sum(take_along_axis(x, i, axis=1))",
        ["take_along_axis: indices 'i' must lie in 0..2, got 3"],
    ),
    (
        "transpose-no-modulo",
        X23,
        "sum(transpose(x, axes=[2, 1]))",
        ["transpose", "axis 2 is out of range", "-2..1"],
    ),
    (
        "softmax-axis-list",
        X23,
        "sum(softmax(x, axis=[0, 1]))",
        ["softmax: axis must be one integer in -2..1, got [0, 1]"],
    ),
    (
        "softmax-axis-none",
        X23,
        "sum(softmax(x, axis=None))",
        ["softmax: axis must be one integer in -2..1, got None"],
    ),
    ("log-softmax-axis-none", X23, "sum(log_softmax(x, axis=None))", ["one integer"]),
    ("logsumexp-axis-list", X23, "sum(logsumexp(x, axis=[0, 1]))", ["one integer"]),
    ("sum-empty-axis-list", X23, "sum(x, axis=[])", ["axis=[] names no axis", "axis=None"]),
    ("sum-axis-out-of-range", X23, "sum(x, axis=2)", ["axis 2 is out of range", "-2..1"]),
    ("keepdims-not-a-flag", X23, "sum(x, axis=0, keepdims=2)", ["keepdims must be True or False"]),
    ("softmax-zero-size", "  x: {shape: [2, 0]}\n", "sum(softmax(x))", ["softmax", "is empty"]),
    (
        "reshape-huge",
        X23,
        "sum(reshape(x, shape=[1000000000000, 1000000000000]))",
        ["cannot reshape [2, 3] (6 elements)"],
    ),
    (
        "reshape-huge-of-nothing",
        "  x: {shape: [0]}\n",
        "sum(reshape(x, shape=[0, 10000000000000000]))",
        ["larger than"],
    ),
    (
        "squeeze-non-1-axis",
        X23,
        "sum(squeeze(x, axis=0))",
        ["cannot squeeze axis 0", "size is 2, not 1"],
    ),
    ("concat-one-operand", X23, "sum(concat(x))", ["takes at least 2 argument(s)"]),
    (
        "concat-mismatch",
        X23 + "  y: {shape: [3, 3]}\n",
        "sum(concat(x, y, axis=1))",
        ["operands differ outside axis 1"],
    ),
    ("stack-mismatch", X23 + "  y: {shape: [3, 2]}\n", "sum(stack(x, y))", ["one shape"]),
    (
        "take-along-axis-needs-axis",
        X23 + "  i: {value: [[0], [1]], dtype: int64}\n",
        "sum(take_along_axis(x, i))",
        ["needs axis="],
    ),
    ("index-out-of-range", X23, "sum(x[2])", ["cannot index shape [2, 3]"]),
    ("index-too-many", X23, "sum(x[0, 0, 0])", ["too many indices"]),
    ("einsum-operand-count", X23, 'sum(einsum("ij,jk->ik", x))', ["name 2 operand(s), got 1"]),
    ("einsum-size-mismatch", X23, 'sum(einsum("ij,ij->i", x, transpose(x)))', ["sizes"]),
    ("einsum-diagonal", "  x: {shape: [3, 3]}\n", 'sum(einsum("ii->i", x))', ["diagonal"]),
    ("clip-without-bounds", X23, "sum(clip(x))", ["clip needs low=, high= or both"]),
    ("clip-bounds-reversed", X23, "sum(clip(x, low=1, high=0))", ["low <= high"]),
    ("matmul-scalar", "  x: 2.0\n  y: {shape: [2]}\n", "sum(x @ y)", ["at least 1 axis"]),
]


def case_text(name: str, inputs: str, expr: str) -> str:
    return f"name: {name}\ninputs:\n{inputs}graph:\n  loss: {expr}\n"


@pytest.mark.parametrize("name,inputs,expr,fragments", REFUSED, ids=[r[0] for r in REFUSED])
def test_validate_refuses_with_one_clear_message(tmp_path, capsys, name, inputs, expr, fragments):
    path = write_case(tmp_path, f"{name}.yaml", case_text(name, inputs, expr))
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{name}.yaml" in err and f"case '{name}'" in err and "step 'loss'" in err, err
    for fragment in fragments:
        assert fragment in err, err
    assert "Traceback" not in err


def test_output_depending_on_no_differentiated_input_is_refused(tmp_path, capsys):
    path = write_case(
        tmp_path,
        "c.yaml",
        "name: c\ninputs:\n  x: [1.0, 2.0]\n  y: [3.0]\n"
        "wrt: [y]\ngraph:\n  h: x * 2\n  out: sum(h)\n",
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "c.yaml:8" in err and "step 'out'" in err
    assert "does not depend on any differentiated input (wrt: y)" in err


@pytest.mark.parametrize(
    "engine", [NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine()], ids=lambda e: e.name
)
def test_input_the_output_ignores_gets_a_zero_gradient(tmp_path, engine):
    case = load_one(
        tmp_path, "name: unused\ninputs:\n  x: [1.0, 2.0]\n  y: [[3.0], [4.0]]\nexpr: sum(x * x)\n"
    )
    out = gradcheck.engines.as_output(
        engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    )
    assert np.array_equal(out.grads["y"], np.zeros((2, 1))), out.grads["y"]
    assert np.allclose(out.grads["x"], [2.0, 4.0], rtol=1e-8)


def test_in_range_integer_data_is_accepted(tmp_path):
    case = load_one(
        tmp_path,
        "name: ok\ninputs:\n  s: {shape: [3, 4]}\n"
        "  y: {shape: [3], init: randint, low: 0, high: 4}\n"
        "  i: {value: [[3], [0], [2]], dtype: int64}\n"
        "expr: softmax_cross_entropy(s, y) + sum(take_along_axis(s, i, 1))\n",
    )
    assert case.wrt == ["s"]


def test_bernoulli_makes_a_seeded_mask_of_zeros_and_ones(tmp_path):
    case = load_one(
        tmp_path,
        "name: mask\ninputs:\n  x: {shape: [40, 50]}\n"
        "  m: {shape: [40, 50], init: bernoulli, p: 0.8, seed: 3}\n"
        "wrt: [x]\nexpr: sum(x * m)\ndtypes: [float32]\n",
    )
    mask = case.arrays("float32")["m"]
    assert mask.dtype == np.float32 and set(np.unique(mask)) == {0.0, 1.0}
    assert abs(mask.mean() - 0.8) < 0.03  # 2000 draws: sd 0.009
    assert np.array_equal(mask, case.arrays("float32")["m"])
    assert case.wrt == ["x"]


@pytest.mark.parametrize(
    "spec,fragment",
    [
        ("{shape: [2], init: bernoulli}", "bernoulli takes p"),
        ("{shape: [2], init: normal, p: 0.5}", "bernoulli takes p"),
        ("{shape: [2], init: bernoulli, p: 1.5}", "p"),
    ],
)
def test_bernoulli_parameters_are_checked(tmp_path, capsys, spec, fragment):
    path = write_case(
        tmp_path,
        "b.yaml",
        f"name: b\ninputs:\n  x: [1.0, 2.0]\n  m: {spec}\nwrt: [x]\nexpr: sum(x * m)\n",
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "b.yaml:4" in err and fragment in err, err


@pytest.mark.parametrize(
    "text",
    [
        "x['ij']",
        "einsum(x, 'i->i')",
        "exp('i->i', x)",
        "einsum('i;j', x)",
        "x[y]",
        "x[1.5]",
        "x[0:y]",
    ],
)
def test_parser_admits_only_constant_indices_and_the_einsum_string(text):
    with pytest.raises(ExprError):
        parse(text)


def test_parser_lowers_indexing_and_einsum_to_constants():
    index = parse("x[1, ::-2, ..., None]")
    assert (index.op, dict(index.kwargs)["key"]) == (
        "index",
        (1, slice(None, None, -2), Ellipsis, None),
    )
    einsum = parse('einsum("bij,bjk->bik", a, b)')
    assert dict(einsum.kwargs) == {"subscripts": "bij,bjk->bik"} and len(einsum.args) == 2


def test_attributes_reach_engines_clean(tmp_path):
    case = load_one(
        tmp_path,
        "name: clean\ninputs:\n  x: {shape: [2, 3, 4]}\n"
        "graph:\n  a: sum(x, axis=[-1, 0])\n  b: transpose(x, axes=[-1, 0, 1])\n"
        "  c: reshape(x, shape=[-1, 4])\n  d: softmax(x, axis=-2)\n"
        "  e: x[-1, ..., 1:]\n  f: sum(a) + sum(b) + sum(c) + sum(d) + sum(e)\n",
    )
    attrs = {n.name: dict(n.attrs) for n in case.graph.nodes}
    assert attrs["a"] == {"axis": (0, 2), "keepdims": False}
    assert attrs["b"] == {"axes": (2, 0, 1)}
    assert attrs["c"] == {"shape": (6, 4)}
    assert attrs["d"] == {"axis": 1}
    assert attrs["e"] == {"key": (1, slice(0, 3, 1), slice(1, 4, 1))}


def test_gradcheck_ops_lists_every_op_of_the_registry(capsys):
    assert main(["ops"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(OPS)
    for line, (_name, signature, meaning) in zip(lines, describe_ops()):
        assert line.startswith(signature) and line.endswith(meaning), line
    assert any(line.startswith("take_along_axis(x, indices, axis)") for line in lines)
    assert any(line.startswith("concat(a, b, ..., axis=0)") for line in lines)


def test_docs_op_list_is_the_registry_list():
    """docs/ops.md holds no copy of the op list: the docs' build hook puts in the table of
    `gradcheck ops --markdown`, one row per op of the registry, in its order."""
    spec = importlib.util.spec_from_file_location("docs_hooks", DOCS / "hooks.py")
    hooks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(hooks)
    page = (DOCS / "ops.md").read_text()
    assert page.count(hooks.OPS_MARKER) == 1 and "| `" not in page, "ops.md must not copy the list"
    built = hooks.inject_ops(page)
    header = "\n".join(ops_markdown().splitlines()[:2])  # | op | meaning |, then |---|---|
    assert header in built
    listed = re.findall(r"^\| `(.*)` \| (.*) \|$", built, flags=re.M)
    assert [(sig, meaning.replace("\\|", "|")) for sig, meaning in listed] == [
        (signature, meaning) for _, signature, meaning in describe_ops()
    ]
    assert len(listed) == len(OPS)


def test_schema_describes_expressions_from_the_registry(capsys):
    assert main(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    description = json.dumps(schema)
    for _, signature, _ in describe_ops():
        assert json.dumps(signature)[1:-1] in description, signature
