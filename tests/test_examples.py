"""Every example runs as written: from a temporary copy of `examples/`, in a subprocess,
with only this checkout's gradcheck importable (as after installing it from a clone)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("examples") / "examples"
    shutil.copytree(EXAMPLES, copy, ignore=shutil.ignore_patterns("__pycache__", "reports"))
    return copy


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GRADCHECK_PLUGINS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=folder, env=env, capture_output=True, text=True, timeout=300
    )


def test_every_example_folder_is_exercised_here():
    assert sorted(p.name for p in EXAMPLES.iterdir() if p.is_dir()) == [
        "custom_engine",
        "jax_custom_vjp",
        "layers",
        "new_op",
        "torch_function",
        "torch_module",
    ]


def test_layers_script_prints_a_pass_and_a_blamed_failure(examples):
    run = _run(examples / "layers", "check_layers.py")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(
        "PASS: case batchnorm-backward [float64]; engines batchnorm_backward, fd agree"
    )
    assert "FAIL: case batchnorm-backward-buggy [float64] blame: batchnorm_backward_buggy" in lines
    rows = [line.split() for line in lines if line.split()[:1] == ["x"]]
    assert [r[3] for r in rows] == ["numpy", "fd", "torch", "jax"]
    assert all(r[4] == "FAIL" and float(r[-2]) > 1e3 for r in rows)


def test_layers_pytest_file_passes(examples):
    run = _run(examples / "layers", "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


def test_new_op_under_the_cli_and_under_pytest(examples):
    folder = examples / "new_op"
    cli = _run(folder, "-m", "gradcheck", "run", "--plugin", "my_ops", "cases", "--out", "reports")
    assert cli.returncode == 0, cli.stdout + cli.stderr
    assert "2 PASS" in cli.stdout
    cases = (folder / "reports" / "cases.csv").read_text().splitlines()
    assert [line.split(",")[:3] for line in cases[1:]] == [
        ["swish-layer", "float64", "PASS"],
        ["swish-layer", "float32", "PASS"],
    ]
    tests = _run(folder, "-m", "pytest", "-q", "-p", "no:cacheprovider")
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


def test_custom_engine_under_the_cli_and_under_pytest(examples):
    folder = examples / "custom_engine"
    cli = _run(
        folder,
        "-m",
        "gradcheck",
        "run",
        "--engine",
        "my_engine:engine",
        "cases",
        "--out",
        "reports",
    )
    assert cli.returncode == 0, cli.stdout + cli.stderr
    engines = (folder / "reports" / "engines.csv").read_text()
    assert "tanh-layer,float64,my-tanh,ok" in engines
    tests = _run(
        folder,
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "cases",
        "--gradcheck-engine",
        "my_engine:engine",
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "2 passed" in tests.stdout


# --- the torch and jax examples -------------------------------------------------------------


def test_no_framework_example_holds_adapter_code():
    for folder in ("torch_function", "torch_module", "jax_custom_vjp"):
        for path in (EXAMPLES / folder).glob("*.py"):
            text = path.read_text()
            assert "gradcheck.engines" not in text and "TorchCode" not in text, path


def test_torch_function_pytest_passes_and_shows_the_bug_as_xfail(examples):
    run = _run(examples / "torch_function", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rx")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 1 xfailed" in run.stdout
    assert "XFAIL test_my_ops.py::test_swish_buggy" in run.stdout


def test_torch_function_buggy_test_fails_with_the_table_when_not_xfailed(examples):
    run = _run(
        examples / "torch_function",
        "-m",
        "pytest",
        "-q",
        "-p",
        "no:cacheprovider",
        "--runxfail",
        "-k",
        "buggy",
    )
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL: case swishbuggy [float64] blame: SwishBuggy" in run.stdout
    assert "SwishBuggy vs numpy" in run.stdout


def test_torch_module_script_checks_every_parameter(examples):
    run = _run(examples / "torch_module", "check_module.py")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("PASS: case block [float32]; engines Block, fd agree")
    assert any(
        line.startswith("PASS: case block [float64]; engines Block, fd agree") for line in lines
    )
    assert lines[-1] == "checked: fc_bias, fc_weight, norm_weight, x"


def test_jax_custom_vjp_script_prints_a_pass_and_a_blamed_failure(examples):
    run = _run(examples / "jax_custom_vjp", "check_custom_vjp.py")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith(
        "PASS: case logsumexp [float64]; engines logsumexp, numpy, fd, torch, jax agree"
    )
    assert any(line.startswith("PASS: case logsumexp [float32]") for line in lines)
    assert "FAIL: case logsumexp-buggy [float64] blame: logsumexp_buggy" in lines
    rows = [line.split() for line in lines if line.split()[:1] == ["x"]]
    assert [r[3] for r in rows] == ["numpy", "fd", "torch", "jax"]
    assert all(r[4] == "FAIL" and float(r[-2]) > 1e3 for r in rows)
