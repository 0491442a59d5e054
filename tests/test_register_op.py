"""Ops registered from Python: YAML cases use them under the API, the CLI (`--plugin`, in
worker processes too) and pytest (a conftest.py); an engine without a form SKIPs, saying why;
custom engines load from the current folder; a misspelt engine is one usage error."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import gradcheck
import reference_impls
from gradcheck.engines import FiniteDifferences, JaxEngine, NumpyEngine, TorchEngine
from gradcheck.ir.ops import OPS as REGISTRY
from helpers import load_one

ROOT = Path(__file__).resolve().parents[1]

CUBE_CASE = """\
name: cube-case
inputs:
  x: [[0.5, -1.5, 2.0], [1.0, 0.25, -0.75]]
  w: [2.0, -1.0, 0.5]
expr: sum(cube(x, scale=2.0) * w)
expect:
  grad:
    w: [2.25, -6.71875, 15.15625]
"""
# d/dx of 2 x^3 * w is 6 x^2 w; d/dw is sum over rows of 2 x^3 (the expect above)

PLUGIN = """\
import numpy as np
import gradcheck


def cube(x, scale=1.0):
    return scale * x ** 3


def cube_grad(g, out, x, scale=1.0):
    return g * 3 * scale * x ** 2


def cube_torch(x, scale=1.0):
    return scale * x ** 3


gradcheck.register_op("cube", cube, [cube_grad], attrs={"scale": 1.0}, torch=cube_torch)
"""


def _cube_grad(g, out, x, scale=1.0):
    return g * 3 * scale * x**2


@pytest.fixture
def cube():
    spec = gradcheck.register_op(
        "cube",
        lambda x, scale=1.0: scale * x**3,
        [_cube_grad],
        attrs={"scale": 1.0},
        torch=lambda x, scale=1.0: scale * x**3,
    )
    yield spec
    gradcheck.unregister_op("cube")


def test_a_registered_op_runs_in_yaml_cases(cube, tmp_path):
    case = load_one(tmp_path, CUBE_CASE)
    result = gradcheck.run(
        [case], engines=[NumpyEngine(), FiniteDifferences(), TorchEngine(), JaxEngine()]
    )
    assert list(result.cases["verdict"]) == ["PASS"], str(result)
    engines = result.engines.set_index("engine")
    assert engines.loc["jax", "status"] == "SKIP"
    assert "cube" in engines.loc["jax", "message"]
    x, w = np.array([[0.5, -1.5, 2.0], [1.0, 0.25, -0.75]]), np.array([2.0, -1.0, 0.5])
    output = NumpyEngine().vjp(case.graph, {"x": x, "w": w}, ["x"], np.ones(()))
    assert np.allclose(output.grads["x"], 6 * x**2 * w)


def test_registering_lives_in_the_tables_and_unregistering_removes_it():
    from gradcheck.engines import jax_ops, torch_ops

    gradcheck.register_op(
        "cube",
        lambda x, scale=1.0: scale * x**3,
        [_cube_grad],
        attrs={"scale": 1.0},
        torch=lambda x, scale=1.0: scale * x**3,
    )
    assert REGISTRY["cube"].arity == 1 and REGISTRY["cube"].attrs == {"scale": 1.0}
    assert "cube" in reference_impls.OPS and "cube" in torch_ops.OPS
    assert "cube" not in jax_ops.OPS
    gradcheck.unregister_op("cube")
    assert "cube" not in REGISTRY and "cube" not in reference_impls.OPS
    assert "cube" not in torch_ops.OPS


def test_built_in_ops_and_bad_names_are_refused():
    with pytest.raises(ValueError, match="'tanh' is built in"):
        gradcheck.register_op("tanh", np.tanh, [_cube_grad])
    with pytest.raises(ValueError, match="not an identifier"):
        gradcheck.register_op("my-op", np.tanh, [_cube_grad])
    with pytest.raises(ValueError, match="was not registered from Python"):
        gradcheck.unregister_op("tanh")


def test_the_default_shape_rule_broadcasts(tmp_path):
    gradcheck.register_op(
        "hypot2",
        lambda a, b: a * a + b * b,
        [lambda g, out, a, b: 2 * a * g, lambda g, out, a, b: 2 * b * g],
    )
    try:
        case = load_one(
            tmp_path,
            "name: h\ninputs: {a: [[1.0], [2.0]], b: [3.0, 4.0, 5.0]}\nexpr: sum(hypot2(a, b))\n",
        )
        assert case.graph.output_shape == () and case.graph.nodes[0].shape == (2, 3)
        assert gradcheck.run([case], engines=[NumpyEngine(), FiniteDifferences()]).ok
    finally:
        gradcheck.unregister_op("hypot2")


def _folder(tmp_path: Path) -> Path:
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "cube.yaml").write_text(CUBE_CASE)
    (tmp_path / "cube_ops.py").write_text(PLUGIN)
    (tmp_path / "conftest.py").write_text("import cube_ops  # noqa: F401\n")
    return tmp_path


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    """From `cwd`, with this checkout's gradcheck importable and nothing else on the path."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("GRADCHECK_PLUGINS", None)
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )


def test_workers_started_before_the_cases_load_know_the_plugins(tmp_path, monkeypatch):
    from gradcheck import cli

    folder = _folder(tmp_path)
    monkeypatch.chdir(folder)
    monkeypatch.setattr(cli, "EARLY_START_FILES", 1)  # start them early for one file too
    monkeypatch.setenv("GRADCHECK_PLUGINS", "")  # restored afterwards: later workers
    monkeypatch.setattr(sys, "path", list(sys.path))  # must not look for cube_ops
    try:
        code = cli.main(
            ["run", "--plugin", "cube_ops", "cases", "--engines", "torch", "--out", "out", "-q"]
        )
    finally:
        gradcheck.unregister_op("cube")
        sys.modules.pop("cube_ops", None)
    assert code == 0
    assert "cube-case,float64,PASS" in (folder / "out" / "cases.csv").read_text()


def test_cli_plugin_registers_the_op_in_worker_processes_too(tmp_path):
    folder = _folder(tmp_path)
    # torch alone: nothing the worker unpickles names the plugin; GRADCHECK_PLUGINS does
    run = _run(
        [
            "-m",
            "gradcheck",
            "run",
            "--plugin",
            "cube_ops",
            "cases",
            "--engines",
            "torch",
            "--out",
            "out",
        ],
        folder,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    cases = (folder / "out" / "cases.csv").read_text()
    assert "cube-case,float64,PASS" in cases
    missing = _run(["-m", "gradcheck", "validate", "cases"], folder)
    assert missing.returncode == 2 and "unknown op 'cube'" in missing.stderr
    bad = _run(["-m", "gradcheck", "list", "--plugin", "no_such_ops", "cases"], folder)
    assert bad.returncode == 2
    assert "cannot load plugin: ModuleNotFoundError: No module named 'no_such_ops'" in bad.stderr


ENGINE = """\
import numpy as np
import reference_impls


def plain_vjp(graph, inputs, wrt, cotangent):
    return reference_impls.backprop(graph, reference_impls.OPS, dict(inputs), wrt, cotangent)
"""


def test_pytest_conftest_plugin_and_custom_engine_from_the_current_folder(tmp_path):
    folder = _folder(tmp_path)
    (folder / "my_engines.py").write_text(ENGINE)
    run = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--gradcheck-engines",
            "numpy,fd",
            "--gradcheck-engine",
            "my_engines:plain_vjp",
            "-rA",
        ],
        folder,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "1 passed" in run.stdout


def test_pytest_misspelt_engine_is_one_usage_error(tmp_path):
    folder = _folder(tmp_path)
    run = _run(
        ["-m", "pytest", "-q", "-p", "no:cacheprovider", "--gradcheck-engines", "numpy,tourch"],
        folder,
    )
    assert run.returncode == 4  # pytest's usage error
    assert run.stderr.count("unknown engine(s) tourch") == 1
    assert "KeyError" not in run.stdout + run.stderr
    missing = _run(
        [
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            "--gradcheck-engine",
            "my_engins:plain_vjp",
        ],
        folder,
    )
    assert missing.returncode == 4 and "No module named 'my_engins'" in missing.stderr


def test_cli_engine_as_a_plain_function_from_the_current_folder(tmp_path):
    folder = _folder(tmp_path)
    (folder / "my_engines.py").write_text(ENGINE)
    run = _run(
        [
            "-m",
            "gradcheck",
            "run",
            "--plugin",
            "cube_ops",
            "cases",
            "--engines",
            "fd",
            "--engine",
            "my_engines:plain_vjp",
            "--timeout",
            "0",
            "--out",
            "out",
        ],
        folder,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    engines = (folder / "out" / "engines.csv").read_text()
    assert "cube-case,float64,plain_vjp,ok" in engines


def test_an_installed_package_registers_its_ops_through_an_entry_point(tmp_path):
    site = tmp_path / "site"
    (site / "cube_pkg-1.0.dist-info").mkdir(parents=True)
    (site / "cube_pkg-1.0.dist-info" / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: cube-pkg\nVersion: 1.0\n"
    )
    (site / "cube_pkg-1.0.dist-info" / "entry_points.txt").write_text(
        "[gradcheck.plugins]\ncube = cube_pkg\n"
    )
    (site / "cube_pkg.py").write_text(PLUGIN)
    (tmp_path / "cases").mkdir()
    (tmp_path / "cases" / "cube.yaml").write_text(CUBE_CASE)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(site)])}
    env.pop("GRADCHECK_PLUGINS", None)
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "gradcheck",
            "run",
            "cases",
            "--engines",
            "numpy,fd",
            "--timeout",
            "0",
            "--out",
            "out",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "cube-case,float64,PASS" in (tmp_path / "out" / "cases.csv").read_text()
