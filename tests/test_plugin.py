"""The pytest plugin that installing gradcheck registers: YAML cases become test items.

Each test runs pytest in a fresh folder through `pytester` (in-process: torch and jax are
imported once). The plugin comes from the `pytest11` entry point, as for a user.
"""

from __future__ import annotations

import contextlib
import importlib

from helpers import COLAH_E, TANH_LAYER, write_case

pytest_plugins = ["pytester"]


def _keep_loaded() -> None:
    """In-process runs restore sys.modules afterwards, dropping what the inner run imported;
    torch cannot be imported twice in one process (it aborts), and re-importing is slow.
    So import here whatever the inner runs would: the frameworks, the op tables, the
    modules torch loads lazily on first use (sympy), and hypothesis (whose pytest plugin
    imports it at every session end)."""
    import numpy as np

    from gradcheck.engines import make_engines
    from helpers import graph_of

    for module in (
        "torch",
        "jax",
        "gradcheck.engines.torch_ops",
        "gradcheck.engines.jax_ops",
        "hypothesis",
    ):
        with contextlib.suppress(ImportError):
            importlib.import_module(module)
    x = np.array([0.5, -1.0])
    graph = graph_of("sum(tanh(x) * x)", {"x": x})
    for engine in make_engines():
        with contextlib.suppress(Exception):  # a missing framework: its engine skips later too
            engine.vjp(graph, {"x": x}, ["x"], np.ones(()))


_keep_loaded()

ENGINES = ["--gradcheck-engines", "numpy,fd,torch,jax"]


def make_catalog(pytester):
    root = pytester.path / "cases"
    write_case(root / "scalar", "colah-e.yaml", COLAH_E)
    write_case(root / "l2-wx", "tanh-layer.yaml", TANH_LAYER)
    return root


def test_collects_one_item_per_case_and_dtype(pytester):
    make_catalog(pytester)
    result = pytester.runpytest("--collect-only", "-q", *ENGINES)
    result.stdout.fnmatch_lines_random(
        [
            "cases/scalar/colah-e.yaml::colah-e[[]float64[]]",
            "cases/l2-wx/tanh-layer.yaml::tanh-layer[[]float64[]]",
            "cases/l2-wx/tanh-layer.yaml::tanh-layer[[]float32[]]",
        ]
    )
    result.stdout.fnmatch_lines(["3 tests collected*"])
    assert result.ret == 0


def test_catalog_passes(pytester):
    make_catalog(pytester)
    result = pytester.runpytest("-v", *ENGINES)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*colah-e[[]float64[]] PASSED*"])


def test_failing_case_shows_the_discrepancy_table_not_a_traceback(pytester):
    root = make_catalog(pytester)
    write_case(
        root / "scalar",
        "colah-wrong.yaml",
        COLAH_E.replace("name: colah-e", "name: colah-wrong").replace(
            "grad: {a: 2.0, b: 5.0}", "grad: {a: 2.0, b: 4.0}"
        ),
    )
    result = pytester.runpytest(*ENGINES)
    result.assert_outcomes(passed=3, failed=1)
    out = result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*FAIL: case colah-wrong [[]float64[]] blame: expect*",
            "*tol_ratio*max_abs_err*",
        ]
    )
    # one row per engine that disagrees with the hand value of d/db, naming the pair
    for engine in ("numpy", "fd", "torch", "jax"):
        result.stdout.fnmatch_lines([f"*b *{engine} vs expect *FAIL*"])
    assert "Traceback" not in out and "def runtest" not in out and "CaseFailed" not in out
    result.stdout.fnmatch_lines(["FAILED cases/scalar/colah-wrong.yaml::colah-wrong[[]float64[]]*"])


def test_custom_engines_option_selects_engines(pytester):
    make_catalog(pytester)
    result = pytester.runpytest("-v", "--gradcheck-engines", "numpy,fd")
    result.assert_outcomes(passed=3)


def test_k_selects_by_tag(pytester):
    make_catalog(pytester)
    result = pytester.runpytest("-v", "-k", "l2-wx", *ENGINES)
    result.assert_outcomes(passed=2)


def test_a_yaml_file_named_on_the_command_line_collects_outside_cases(pytester):
    path = write_case(pytester.path / "some", "case.yaml", COLAH_E)
    result = pytester.runpytest("-v", str(path.relative_to(pytester.path)), *ENGINES)
    result.assert_outcomes(passed=1)
    result.stdout.fnmatch_lines(["*some/case.yaml::colah-e[[]float64[]] PASSED*"])


def test_other_yaml_files_are_not_collected(pytester):
    """A YAML file outside a `cases` folder (CI config, say) is not a case unless named."""
    make_catalog(pytester)
    write_case(pytester.path / "config", "ci.yaml", "jobs: [build, test]\n")
    result = pytester.runpytest("-q", *ENGINES)
    result.assert_outcomes(passed=3)
    assert "ci.yaml" not in result.stdout.str()


UNRELATED_TEST = """\
import yaml

def test_users_fixture():
    assert yaml.safe_load(open("tests/cases/get_users.yaml"))["request"]["path"] == "/users"
"""


def test_an_unrelated_project_with_a_cases_folder_collects_as_before(pytester):
    """An API project keeps request fixtures in tests/cases/*.yaml: not gradcheck cases."""
    write_case(
        pytester.path / "tests" / "cases",
        "get_users.yaml",
        "name: get users\nrequest: {method: GET, path: /users}\nexpect: {status: 200}\n",
    )
    write_case(pytester.path / "tests", "test_users_endpoint.py", UNRELATED_TEST)
    for args in ([], ["tests"], ["--strict-markers"]):
        result = pytester.runpytest("-q", *args)
        result.assert_outcomes(passed=1)
        assert result.ret == 0 and "get_users" not in result.stdout.str(), args
    result = pytester.runpytest("-q", "tests/cases")
    assert result.ret == 5 and "error" not in result.stdout.str().lower()  # nothing, no error


def test_a_folder_named_on_the_command_line_is_collected(pytester):
    write_case(pytester.path / "mycases", "colah.yaml", COLAH_E)
    write_case(pytester.path / "mycases" / "l2", "tanh.yaml", TANH_LAYER)
    result = pytester.runpytest("-v", "mycases", *ENGINES)
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines_random(
        [
            "*mycases/colah.yaml::colah-e[[]float64[]] PASSED*",
            "*mycases/l2/tanh.yaml::tanh-layer[[]float32[]] PASSED*",
        ]
    )
    assert pytester.runpytest("-q", *ENGINES).ret == 5  # not named, not listed: none


def test_the_ini_option_lists_the_case_folders(pytester):
    write_case(pytester.path / "checks" / "grads", "colah.yaml", COLAH_E)
    make_catalog(pytester)
    pytester.makeini("[pytest]\ngradcheck_paths = checks\n")
    result = pytester.runpytest("-v", *ENGINES)
    result.assert_outcomes(passed=1)  # checks/ only: cases/ is no longer listed
    result.stdout.fnmatch_lines(["*checks/grads/colah.yaml::colah-e[[]float64[]] PASSED*"])


def test_tags_are_markers_accepted_by_strict_markers(pytester):
    make_catalog(pytester)
    result = pytester.runpytest("-v", "-m", "l2-wx", "--strict-markers", *ENGINES)
    result.assert_outcomes(passed=2)
    result.stdout.fnmatch_lines_random(
        ["*tanh-layer[[]float64[]] PASSED*", "*tanh-layer[[]float32[]] PASSED*"]
    )
    result = pytester.runpytest("-q", "-m", "seed and not l2-wx", "--strict-markers", *ENGINES)
    result.assert_outcomes(passed=1)


def test_engines_are_made_once_and_kept_in_the_config_stash(pytester):
    make_catalog(pytester)
    pytester.makeconftest("""
        from gradcheck.plugin import ENGINES_KEY, _engines
        seen = []

        def pytest_runtest_teardown(item):
            seen.append(id(_engines(item.config)))

        def pytest_sessionfinish(session):
            assert len(seen) == 3 and len(set(seen)) == 1
            assert [e.name for e in session.config.stash[ENGINES_KEY]] == ["numpy", "fd"]
            assert not hasattr(session.config, "_gradcheck_engines")
            print("stash checked")
    """)
    result = pytester.runpytest("-q", "-s", "--gradcheck-engines", "numpy,fd")
    result.assert_outcomes(passed=3)
    result.stdout.fnmatch_lines(["*stash checked*"])


def test_invalid_yaml_is_a_collection_error_naming_the_file(pytester):
    root = make_catalog(pytester)
    write_case(root / "scalar", "broken.yaml", "name: broken\ninputs:\n  x: [1.0, 2.0\nexpr: x\n")
    result = pytester.runpytest(*ENGINES)
    assert result.ret == 2  # interrupted: errors during collection
    result.stdout.fnmatch_lines(["*ERROR collecting cases/scalar/broken.yaml*", "*broken.yaml:*"])
    assert "Traceback" not in result.stdout.str()


def test_invalid_case_names_file_line_and_problem(pytester):
    root = make_catalog(pytester)
    write_case(
        root / "scalar",
        "typo.yaml",
        "name: typo\ninputs:\n  x: 1.0\nexpr: x * 2\ndtype: [float64]\n",
    )
    result = pytester.runpytest(*ENGINES)
    assert result.ret == 2
    result.stdout.fnmatch_lines(["*typo.yaml:5*unknown key 'dtype'*"])


def test_nonfinite_case_fails(pytester):
    write_case(
        pytester.path / "cases",
        "log0.yaml",
        "name: log0\ninputs:\n  x: [0.0, 1.0]\nexpr: sum(log(x))\n",
    )
    result = pytester.runpytest(*ENGINES)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*NONFINITE: case log0*"])


def test_nondiff_case_passes(pytester):
    write_case(
        pytester.path / "cases",
        "relu0.yaml",
        "name: relu0\ninputs:\n  x: [-1.0, 0.0, 2.0]\nexpr: sum(relu(x))\n",
    )
    result = pytester.runpytest(*ENGINES)
    result.assert_outcomes(passed=1)
