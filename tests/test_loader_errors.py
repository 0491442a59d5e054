"""Bad input gets one clear error: `CaseError` naming the file, the case and the line, and
exit 2 from `gradcheck run` and `gradcheck validate` without a Python traceback."""

from __future__ import annotations

import textwrap

import pytest

from gradcheck.cli import main
from gradcheck.errors import CaseError, CaseErrors
from gradcheck.ir.expr import MAX_DEPTH, MAX_LENGTH
from gradcheck.ir.graph import MAX_NODES
from gradcheck.loading import load_cases, load_text
from gradcheck.loading.load import MAX_FILE_BYTES

GOOD = "name: ok\ninputs: {x: 1.0}\nexpr: x * 2\n"

# (id, YAML text, a fragment of the message, the line it must name or None)
BAD = [
    ("yaml-syntax", "name: a\ninputs: {x: 1.0\nexpr: x\n", "YAML", 3),
    ("yaml-tab", "name: a\ninputs:\n\tx: 1.0\nexpr: x\n", "YAML", 3),
    ("yaml-duplicate-key", "name: a\ninputs: {x: 1.0}\nexpr: x\nexpr: x\n", "duplicate key", 4),
    ("empty", "", "holds no case", None),
    ("only-comments", "# nothing\n---\n", "holds no case", None),
    ("not-a-mapping", "- name: a\n", "a case is a YAML mapping", 1),
    (
        "misspelled-key",
        "name: a\ninputs: {x: 1.0}\nexprr: x\n",
        "unknown key 'exprr' (did you mean 'expr'?)",
        3,
    ),
    (
        "unknown-input-key",
        "name: a\ninputs:\n  x: {shape: [2], sede: 1}\nexpr: sum(x)\n",
        "sede",
        3,
    ),
    ("missing-key", "name: a\nexpr: x\n", "missing key 'inputs'", None),
    ("bad-name", "name: Bad Name\ninputs: {x: 1.0}\nexpr: x\n", "name", 1),
    ("wrong-type-list", "name: a\ninputs: {x: 1.0}\nexpr: x\ndtypes: float64\n", "dtypes", 4),
    ("wrong-type-shape", "name: a\ninputs:\n  x: {shape: two}\nexpr: sum(x)\n", "shape", 3),
    ("wrong-type-bool", "name: a\ninputs: {x: 1.0}\nexpr: x\njacobian: maybe\n", "jacobian", 4),
    ("unknown-dtype", "name: a\ninputs: {x: 1.0}\nexpr: x\ndtypes: [float8]\n", "dtypes", 4),
    ("string-input", "name: a\ninputs: {x: hello}\nexpr: x\n", "inputs.x", 2),
    ("ragged-input", "name: a\ninputs: {x: [[1.0, 2.0], [3.0]]}\nexpr: sum(x)\n", "rectangular", 2),
    ("negative-seed", "name: a\ninputs:\n  x: {shape: [2], seed: -1}\nexpr: sum(x)\n", "seed", 3),
    (
        "infinite-scale",
        "name: a\ninputs:\n  x: {shape: [2], scale: .inf}\nexpr: sum(x)\n",
        "scale",
        3,
    ),
    (
        "randint-range",
        "name: a\ninputs:\n  y: {shape: [2], init: randint, low: 0.2, high: 0.7}\n"
        "  x: 1.0\nexpr: x\n",
        "whole-number",
        3,
    ),
    (
        "int-value-too-big",
        f"name: a\ninputs:\n  y: {{value: [{2**70}], dtype: int64}}\n  x: 1.0\nexpr: x\n",
        "64 bits",
        3,
    ),
    (
        "int-value-fraction",
        "name: a\ninputs:\n  y: {value: [1.5], dtype: int64}\n  x: 1.0\nexpr: x\n",
        "whole numbers",
        3,
    ),
    (
        "unknown-op",
        "name: a\ninputs: {x: 1.0}\nexpr: frobnicate(x)\n",
        "unknown op 'frobnicate'",
        3,
    ),
    (
        "unknown-kwarg",
        "name: a\ninputs: {x: [1.0]}\nexpr: sum(x, axs=0)\n",
        "no keyword argument 'axs'",
        3,
    ),
    ("wrong-arity", "name: a\ninputs: {x: 1.0}\nexpr: exp(x, x)\n", "takes 1 argument", 3),
    (
        "repeated-kwarg",
        "name: a\ninputs: {x: [1.0]}\nexpr: sum(x, axis=0, axis=0)\n",
        "repeated",
        3,
    ),
    (
        "kwarg-not-constant",
        "name: a\ninputs: {x: [1.0]}\nexpr: sum(x, axis=x)\n",
        "constants only",
        3,
    ),
    (
        "undefined-name",
        "name: a\ninputs: {x: 1.0}\ngraph:\n  y: x * 2\n  z: y + q\n",
        "name 'q' is not defined",
        5,
    ),
    (
        "step-redefines-input",
        "name: a\ninputs: {x: 1.0}\ngraph:\n  x: x * 2\n",
        "already defined",
        4,
    ),
    ("expr-syntax", "name: a\ninputs: {x: 1.0}\nexpr: x +\n", "syntax error", 3),
    (
        "int-in-wrt",
        "name: a\ninputs:\n  s: [[1.0, 2.0]]\n  y: {value: [0], dtype: int64}\n"
        "expr: softmax_cross_entropy(s, y)\nwrt: [s, y]\n",
        "integer input",
        6,
    ),
    ("wrt-not-input", "name: a\ninputs: {x: 1.0}\nexpr: x\nwrt: [z]\n", "not an input", 4),
    (
        "int-data-as-float",
        "name: a\ninputs:\n  y: {value: [0], dtype: int64}\nexpr: exp(y)\n",
        "must be float data",
        4,
    ),
    (
        "matmul-shapes",
        "name: a\ninputs:\n  x: {shape: [2, 3]}\n  w: {shape: [4, 5]}\n"
        "graph:\n  h: x @ w\n  o: sum(h)\n",
        "step 'h', column 1: matmul: @ inner dimensions differ: [2, 3] @ [4, 5]",
        6,
    ),
    (
        "broadcast-shapes",
        "name: a\ninputs:\n  x: {shape: [2, 3]}\n  y: {shape: [4]}\n"
        "graph:\n  s: x + y\n  o: sum(s)\n",
        "shapes [2, 3] and [4] do not broadcast",
        6,
    ),
    (
        "conv-shapes",
        "name: a\ninputs:\n  x: {shape: [1, 3, 5, 5]}\n  w: {shape: [2, 4, 3, 3]}\n"
        "  b: {shape: [2]}\nexpr: sum(conv2d(x, w, b))\n",
        "conv2d channels differ",
        6,
    ),
    (
        "expect-shape",
        "name: a\ninputs: {x: [1.0, 2.0]}\nexpr: sum(x)\nexpect:\n  grad: {x: [1.0]}\n",
        "expect.grad.x has shape [1], expected [2]",
        5,
    ),
    (
        "huge-input",
        "name: a\ninputs:\n  x: {shape: [100000, 100000]}\nexpr: sum(x)\n",
        "10000000000 elements; the limit is",
        3,
    ),
    (
        "huge-step",
        "name: a\ninputs:\n  x: {shape: [4000]}\n  y: {shape: [4000, 1]}\n"
        "graph:\n  p: x * y\n  o: sum(p)\n",
        "step 'p': mul makes an array of shape [4000, 4000]",
        6,
    ),
    (
        "astronomic-shape",
        "name: a\ninputs:\n  x: {shape: [" + "9" * 400 + "]}\nexpr: sum(x)\n",
        "more than 10^18 elements",
        3,
    ),
    (
        "huge-int-literal",
        "name: a\ninputs: {x: 1.0}\nexpr: x * " + "9" * 500 + "\n",
        "too large",
        3,
    ),
    (
        "huge-reshape",
        "name: a\ninputs: {x: [1.0, 2.0]}\nexpr: sum(reshape(x, shape=[1e300]))\n",
        "reshape",
        3,
    ),
    (
        "bad-date",
        "name: a\ninputs: {x: 1.0}\nexpr: x\ndescription: 2001-13-01\n",
        "invalid value",
        None,
    ),
    (
        "alias-bomb",
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        "b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
        "c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n"
        "d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
        "e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n"
        "f: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n",
        "expands to more than",
        None,
    ),
    (
        "deep-yaml",
        "name: a\ninputs: {x: " + "[" * 2000 + "1.0" + "]" * 2000 + "}\nexpr: x\n",
        "nested deeper",
        None,
    ),
    (
        "deep-brackets",
        "name: a\ninputs: {x: 1.0}\nexpr: " + "(" * 500 + "x" + ")" * 500 + "\n",
        "nested deeper",
        3,
    ),
    (
        "deep-calls",
        "name: a\ninputs: {x: 1.0}\nexpr: " + "exp(" * 100 + "x" + ")" * 100 + "\n",
        "nested deeper",
        3,
    ),
    ("deep-minus", "name: a\ninputs: {x: 1.0}\nexpr: " + "-" * 1500 + "x\n", "nested deeper", 3),
    (
        "long-chain",
        "name: a\ninputs: {x: 1.0}\nexpr: " + " + ".join(["x"] * 400) + "\n",
        "nested deeper",
        3,
    ),
    (
        "long-expression",
        "name: a\ninputs: {x: 1.0}\nexpr: x" + " + 1" * (MAX_LENGTH // 4) + "\n",
        f"the limit is {MAX_LENGTH}",
        3,
    ),
]


def error_of(text: str) -> CaseError:
    with pytest.raises(CaseError) as info:
        load_text(text, "bad.yaml")
    return info.value


@pytest.mark.parametrize("text, fragment, line", [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_input_gets_one_clear_error(text, fragment, line):
    error = error_of(text)
    assert fragment in str(error)
    assert error.file == "bad.yaml" and str(error).startswith("bad.yaml")
    if line is not None:
        assert error.line == line, str(error)


@pytest.mark.parametrize("text, fragment", [(b[1], b[2]) for b in BAD], ids=[b[0] for b in BAD])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_cli_exits_2_naming_file_and_case_without_a_traceback(
    tmp_path, capsys, command, text, fragment
):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    out = tmp_path / "out"
    argv = [command, str(path)] + (["--out", str(out)] if command == "run" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "bad.yaml" in err and fragment in err and "Traceback" not in err
    named = error_of(text).case
    assert named is None or f"case {named!r}" in err
    assert not out.exists()


def test_debug_shows_the_traceback(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text("name: a\ninputs: {x: 1.0}\nexpr: frobnicate(x)\n")
    assert main(["--debug", "validate", str(path)]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_brackets_in_a_message_are_not_read_as_markup(tmp_path, capsys):
    path = tmp_path / "bad.yaml"
    path.write_text('name: a\ninputs: {x: 1.0}\nexpr: x\n"[/red]": 1\n')
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert "unknown key '[/red]'" in err and "Traceback" not in err


def test_duplicate_case_names_across_files(tmp_path, capsys):
    (tmp_path / "one.yaml").write_text(GOOD)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "two.yaml").write_text("# the same name again\n" + GOOD)
    with pytest.raises(CaseErrors) as info:
        load_cases([tmp_path])
    [error] = info.value.errors
    assert error.file.endswith("two.yaml") and error.line == 2 and error.case == "ok"
    assert "duplicate case name" in str(error) and "one.yaml:1" in str(error)
    assert main(["validate", str(tmp_path)]) == 2
    assert "two.yaml:2" in capsys.readouterr().err


def test_every_bad_file_is_reported_at_once(tmp_path, capsys):
    (tmp_path / "good.yaml").write_text(GOOD)
    (tmp_path / "bad1.yaml").write_text("name: b1\ninputs: {x: 1.0}\nexpr: q\n")
    (tmp_path / "bad2.yaml").write_text("name: b2\ninputs: {x: 1.0\n")
    with pytest.raises(CaseErrors) as info:
        load_cases([tmp_path])
    assert sorted(e.file.rsplit("/", 1)[-1] for e in info.value.errors) == [
        "bad1.yaml",
        "bad2.yaml",
    ]


def test_unreadable_files(tmp_path):
    (tmp_path / "latin1.yaml").write_bytes("name: caf\xe9\n".encode("latin-1"))
    (tmp_path / "big.yaml").write_text("# padding\n" * (MAX_FILE_BYTES // 10 + 1))
    with pytest.raises(CaseErrors) as info:
        load_cases([tmp_path])
    messages = sorted(str(e) for e in info.value.errors)
    assert "larger than" in messages[0] and "big.yaml" in messages[0]
    assert "cannot read" in messages[1] and "latin1.yaml" in messages[1]


def test_missing_path(tmp_path):
    with pytest.raises(CaseErrors, match="no such file"):
        load_cases([tmp_path / "nowhere"])


def test_max_elements_is_configurable_and_refuses_before_allocating(tmp_path, capsys, monkeypatch):
    import numpy as np

    path = tmp_path / "c.yaml"
    path.write_text("name: a\ninputs:\n  x: {shape: [30, 30]}\nexpr: sum(x)\n")
    assert len(load_cases([path])) == 1
    with pytest.raises(CaseErrors, match="900 elements; the limit is 100"):
        load_cases([path], max_elements=100)
    monkeypatch.setattr(np.random, "default_rng", None)  # nothing may be drawn, let alone allocated
    assert main(["validate", "--max-elements", "100", str(path)]) == 2
    assert "the limit is 100" in capsys.readouterr().err
    assert main(["run", "--max-elements", "100", str(path), "--out", str(tmp_path / "o")]) == 2


def test_too_many_steps(tmp_path):
    steps = "\n".join(f"  s{i}: x + {i}" for i in range(MAX_NODES + 1))  # one node each
    error = error_of(f"name: a\ninputs: {{x: 1.0}}\ngraph:\n{steps}\n")
    assert f"more than {MAX_NODES} operations" in str(error)


def test_a_good_case_still_loads():
    [case] = load_text(textwrap.dedent(GOOD))
    assert case.name == "ok" and case.wrt == ["x"]


def test_depth_limit_leaves_room_for_real_cases():
    nested = "exp(" * (MAX_DEPTH // 2 - 1) + "x" + ")" * (MAX_DEPTH // 2 - 1)
    [case] = load_text(f"name: a\ninputs: {{x: 0.1}}\nexpr: {nested}\n")
    assert len(case.graph.nodes) == MAX_DEPTH // 2 - 1
