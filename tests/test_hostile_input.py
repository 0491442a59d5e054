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
    "x[x]",                                   # indices are constants only
    "x[open('{marker}', 'w')]",
    "x[0.5]",
    "x[[0, 1]]",
    "x['a']",
    "einsum('i->i', x, open('{marker}', 'w'))",
    "einsum(open('{marker}', 'w'), x)",
    "einsum('__import__', x)",
    "exp('i->i', x)",                         # the einsum string goes to einsum alone
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
    text = (f"name: hostile\ninputs: {{x: 1.0}}\nexpr: x\n---\n"
            f"? !!python/object/apply:os.system ['touch {marker}']\n: 1\n")
    assert_refused(tmp_path, capsys, write(tmp_path, text), marker)


def test_the_console_script_refuses_without_a_traceback(tmp_path):
    """End to end, in a fresh interpreter: what a user or CI would see."""
    marker = tmp_path / "marker"
    path = write(tmp_path, f"name: hostile\ninputs:\n  x: !!python/object/apply:os.system "
                           f"['touch {marker}']\nexpr: x\n")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "gradcheck", "run", str(path), "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
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
