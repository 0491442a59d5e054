"""The command line follows the usual conventions: --version, --debug anywhere, defaults
in help, valid choices and "did you mean" in errors, a progress bar with an ETA and the
failures so far, and the catalog that ships inside the package."""

from __future__ import annotations

import filecmp
import re
from pathlib import Path

import pytest

from gradcheck import __version__
from gradcheck.cli import COMMANDS, build_parser, main
from gradcheck.loading.catalog import CATALOG
from helpers import COLAH_E, write_case
from test_cli import read_cases, run_cli

REPO_CASES = Path(__file__).resolve().parent.parent / "cases"


def test_version(capsys):
    with pytest.raises(SystemExit) as e:
        main(["--version"])
    assert e.value.code == 0 and capsys.readouterr().out == f"gradcheck {__version__}\n"


@pytest.mark.parametrize("command", sorted(COMMANDS))
def test_debug_is_accepted_before_and_after_every_command(command):
    parser = build_parser()
    extra = ["somewhere"] if command in ("report", "fuzz") else []  # a required argument
    assert parser.parse_args([command, *extra]).debug is False
    assert parser.parse_args(["--debug", command, *extra]).debug is True
    assert parser.parse_args([command, "--debug", *extra]).debug is True


def test_debug_shows_the_traceback_of_a_usage_error(catalog, capsys):
    assert run_cli("run", catalog, "--dtypes", "float8") == 2
    assert "Traceback" not in capsys.readouterr().err
    assert run_cli("run", catalog, "--dtypes", "float8", "--debug") == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and "UsageError" in err


def test_help_shows_the_defaults(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for shown in (
        "(default: reports/latest)",
        "(default: numpy,fd,torch,jax)",
        "(default: 600.0)",
        "(default: 10000000)",
    ):
        assert shown in text, shown


@pytest.mark.parametrize(
    "option, value, message",
    [
        (
            "--dtypes",
            "float8",
            "unknown dtype 'float8' (did you mean 'float64'?); "
            "valid: float64, float32, bfloat16, float16",
        ),
        (
            "--dtypes",
            "float64,half",
            "unknown dtype 'half'; valid: float64, float32, bfloat16, float16",
        ),
        (
            "--engines",
            "numpi",
            "unknown engine 'numpi' (did you mean 'numpy'?); valid: numpy, fd, torch, jax",
        ),
    ],
)
def test_errors_list_the_valid_choices(catalog, tmp_path, capsys, option, value, message):
    assert run_cli("run", catalog, option, value, "--out", tmp_path / "out") == 2
    assert capsys.readouterr().err.strip() == f"usage error: {message}"
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    "expr, message",
    [
        ("sum(tanhh(x))", "unknown op 'tanhh' (did you mean 'tanh'?)"),
        ("sum(tahn(x) * x)", "unknown op 'tahn' (did you mean 'tanh'?)"),
        ("sum(tanh(xs))", "name 'xs' is not defined (did you mean 'x'?)"),
        ("sum(tanh(q))", "name 'q' is not defined (choose from w, x)"),
        ("sum(x, axes=0)", "sum has no keyword argument 'axes' (did you mean 'axis'?) (allowed: "),
    ],
)
def test_did_you_mean_for_ops_and_names(tmp_path, capsys, expr, message):
    write_case(
        tmp_path, "typo.yaml", f"name: typo\ninputs: {{x: [1.0, 2.0], w: 3.0}}\nexpr: {expr}\n"
    )
    assert run_cli("validate", tmp_path / "typo.yaml") == 2
    err = capsys.readouterr().err
    assert "typo.yaml:3: case 'typo': step 'out'" in err and message in err


def test_the_progress_bar_shows_an_eta_and_the_failures_so_far(
    catalog, tmp_path, capfd, monkeypatch
):
    monkeypatch.setenv("TTY_COMPATIBLE", "1")  # rich draws the bar as on a terminal
    monkeypatch.setenv("COLUMNS", "200")
    write_case(
        catalog / "scalar",
        "colah-wrong.yaml",
        COLAH_E.replace("name: colah-e", "name: colah-wrong").replace("value: 6.0", "value: 7.0"),
    )
    assert run_cli("run", catalog, "--out", tmp_path / "out", "--engines", "numpy,fd") == 1
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", capfd.readouterr().err)
    assert re.search(r"\d/4 .*1 not passed .*eta", bar), bar[-2000:]


def test_the_final_table_is_compact_unless_verbose(catalog, tmp_path, capsys):
    write_case(
        catalog / "scalar",
        "colah-wrong.yaml",
        COLAH_E.replace("name: colah-e", "name: colah-wrong").replace("value: 6.0", "value: 7.0"),
    )
    args = ["run", catalog, "--out", tmp_path / "out", "--engines", "numpy,fd"]
    assert run_cli(*args) == 1
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["case", "dtype", "verdict", "blame", "seconds"]
    assert lines[1].split()[:4] == ["colah-wrong", "float64", "FAIL", "expect"]
    assert not any(line.startswith(("colah-e ", "tanh-layer ")) for line in lines)
    assert "1 FAIL, 3 PASS; blamed: expect (1)" in lines
    assert run_cli(*args, "-v") == 1
    rows = [line.split()[0] for line in capsys.readouterr().out.splitlines()[1:5]]
    assert rows == ["colah-wrong", "colah-e", "tanh-layer", "tanh-layer"]


# --- the catalog inside the package -------------------------------------------------------------


def test_the_packaged_catalog_is_the_repository_catalog():
    files = sorted(p.relative_to(REPO_CASES) for p in REPO_CASES.rglob("*.yaml"))
    assert len(files) >= 40
    assert sorted(p.relative_to(CATALOG) for p in CATALOG.rglob("*.yaml")) == files
    assert all(filecmp.cmp(REPO_CASES / f, CATALOG / f, shallow=False) for f in files)


def test_catalog_option_works_from_any_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("list", "--catalog", "--format", "csv") == 0
    listed = capsys.readouterr().out.splitlines()[1:]
    assert len(listed) == len(list(REPO_CASES.rglob("*.yaml")))
    assert run_cli("run", "--catalog", "-k", "colah-e", "--engines", "numpy,fd") == 0
    assert set(read_cases(tmp_path / "reports" / "latest")["case"]) == {"colah-e"}


MANY_PROBLEMS = """\
name: multi
inputs:
  x: {shape: [2], init: normall}
  w: [1.0, "2"]
expr: sum(x)
dtype: [float64]
tolerence: {rtol: 1.0e-3}
---
name: second
inputs: {x: 1.0}
expr: tanhh(x)
---
name: fine
inputs: {x: 1.0}
expr: tanh(x)
"""


def test_every_problem_of_a_file_is_shown_at_once(tmp_path, capsys):
    path = write_case(tmp_path, "many.yaml", MANY_PROBLEMS)
    assert run_cli("validate", path) == 2
    lines = capsys.readouterr().err.splitlines()
    assert [line.split(":")[2] for line in lines] == ["3", "4", "6", "7", "11"]
    assert all(line.startswith(f"error: {path}:") for line in lines)
    assert "inputs.x.init: Input should be 'normal'" in lines[0]
    assert "inputs.w.1: expected a number" in lines[1]
    assert "unknown key 'dtype' (did you mean 'dtypes'?)" in lines[2]
    assert "unknown key 'tolerence' (did you mean 'tolerance'?)" in lines[3]
    assert "case 'second': step 'out', column 1: unknown op 'tanhh'" in lines[4]


def test_without_a_cases_folder_the_error_points_at_the_catalog(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert run_cli("list") == 2
    assert (
        "no cases/ folder here: name case files or folders, or use --catalog"
        in capsys.readouterr().err
    )
