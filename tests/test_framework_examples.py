"""The framework examples (examples/torch_function, torch_module, jax_custom_vjp) run as
written: from a temporary copy, in a subprocess, with only this checkout's gradcheck
importable, as tests/test_examples.py runs the others."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"
FOLDERS = ["torch_function", "torch_module", "jax_custom_vjp"]


@pytest.fixture(scope="module")
def examples(tmp_path_factory) -> Path:
    copy = tmp_path_factory.mktemp("framework_examples")
    for folder in FOLDERS:
        shutil.copytree(EXAMPLES / folder, copy / folder,
                        ignore=shutil.ignore_patterns("__pycache__", "reports"))
    return copy


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "NO_COLOR": "1"}
    env.pop("GRADCHECK_PLUGINS", None)
    return subprocess.run([sys.executable, *args], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=300)


def test_no_example_holds_adapter_code():
    for folder in FOLDERS:
        for path in (EXAMPLES / folder).glob("*.py"):
            text = path.read_text()
            assert "gradcheck.engines" not in text and "TorchCode" not in text, path


def test_torch_function_pytest_passes_and_shows_the_bug_as_xfail(examples):
    run = _run(examples / "torch_function", "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rx")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "2 passed, 1 xfailed" in run.stdout
    assert "XFAIL test_my_ops.py::test_swish_buggy" in run.stdout


def test_torch_function_buggy_test_fails_with_the_table_when_not_xfailed(examples):
    run = _run(examples / "torch_function", "-m", "pytest", "-q", "-p", "no:cacheprovider",
               "--runxfail", "-k", "buggy")
    assert run.returncode == 1, run.stdout + run.stderr
    assert "FAIL: case swishbuggy [float64] blame: SwishBuggy" in run.stdout
    assert "SwishBuggy vs numpy" in run.stdout


def test_torch_module_script_checks_every_parameter(examples):
    run = _run(examples / "torch_module", "check_module.py")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("PASS: case block [float32]; engines Block, fd agree")
    assert any(line.startswith("PASS: case block [float64]; engines Block, fd agree")
               for line in lines)
    assert lines[-1] == "checked: fc_bias, fc_weight, norm_weight, x"


def test_jax_custom_vjp_script_prints_a_pass_and_a_blamed_failure(examples):
    run = _run(examples / "jax_custom_vjp", "check_custom_vjp.py")
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert lines[0].startswith("PASS: case logsumexp [float64]; engines logsumexp, numpy, fd, "
                               "torch, jax agree")
    assert any(line.startswith("PASS: case logsumexp [float32]") for line in lines)
    assert "FAIL: case logsumexp-buggy [float64] blame: logsumexp_buggy" in lines
    rows = [line.split() for line in lines if line.split()[:1] == ["x"]]
    assert [r[3] for r in rows] == ["numpy", "fd", "torch", "jax"]
    assert all(r[4] == "FAIL" and float(r[-2]) > 1e3 for r in rows)
