"""The command line: `gradcheck run|validate|list|schema|report`, exit codes, report files,
filtering, custom engines; in-process through `gradcheck.cli.main`, and as real processes
(the console script next to this interpreter, and `python -m gradcheck`)."""

from __future__ import annotations

import io
import json
import platform
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradcheck.cli import main
from helpers import COLAH_E, write_case

CASE_COLUMNS = ["case", "dtype", "verdict", "blame", "seconds", "message"]
COMPARISON_COLUMNS = [
    "case",
    "dtype",
    "param",
    "engine_a",
    "engine_b",
    "verdict",
    "max_abs_err",
    "max_rel_err",
    "tol_ratio",
    "worst_index",
    "atol",
    "rtol",
]
ENGINE_NAMES = {"numpy", "fd", "torch", "jax", "expect"}


IN_PROCESS = ["--timeout", "0"]  # no worker process: fast, and the same code path


def run_cli(*argv, worker: bool = False) -> int:
    """`gradcheck ...` in this process; `run` without its worker process unless asked."""
    argv = [str(a) for a in argv]
    if argv[0] == "run" and not worker:
        argv += IN_PROCESS
    return main(argv)


def read_cases(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "cases.csv", keep_default_na=False)


def read_comparisons(out: Path) -> pd.DataFrame:
    return pd.read_csv(out / "comparisons.csv", keep_default_na=False)


# --- gradcheck run ------------------------------------------------------------------------------


def test_run_passes_and_writes_every_report(catalog, tmp_path, capsys):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, worker=True) == 0
    for name in ("cases.csv", "comparisons.csv", "summary.md", "run.json", "report.html"):
        assert (out / name).is_file(), name

    cases = read_cases(out)
    assert set(CASE_COLUMNS) <= set(cases.columns)
    assert sorted(zip(cases["case"], cases["dtype"])) == [
        ("colah-e", "float64"),
        ("tanh-layer", "float32"),
        ("tanh-layer", "float64"),
    ]
    assert set(cases["verdict"]) == {"PASS"}
    assert (cases["blame"] == "").all()
    assert (cases["seconds"] >= 0).all()

    comps = read_comparisons(out)
    assert set(COMPARISON_COLUMNS) <= set(comps.columns)
    assert set(comps["engine_a"]) | set(comps["engine_b"]) <= ENGINE_NAMES
    # colah-e: (value), a, b x 10 pairs of 5 sources; tanh-layer: (value), x, w x 6 pairs, twice
    assert len(comps) == 3 * 10 + 2 * 3 * 6
    assert set(comps["verdict"]) == {"PASS"} and (comps["tol_ratio"] <= 1).all()
    assert (comps["rtol"] > 0).all() and (comps["atol"] >= 0).all()
    colah = comps[(comps["case"] == "colah-e") & (comps["param"] == "b")]
    assert len(colah) == 10 and (colah["max_abs_err"] < 1e-9).all()

    meta = json.loads((out / "run.json").read_text())
    assert meta["python"] == platform.python_version()
    versions = meta["versions"]
    assert versions["numpy"] == np.__version__
    import jax
    import torch

    assert versions["torch"].split("+")[0] == torch.__version__.split("+")[0]
    assert versions["jax"] == jax.__version__
    assert "platform" in meta and "time" in meta and "seed" in meta

    summary = (out / "summary.md").read_text()
    assert "colah-e" in summary and "tanh-layer" in summary
    printed = capsys.readouterr().out  # compact: counts, no row for a passing run
    assert "3 PASS" in printed and "colah-e" not in printed


def test_one_wrong_expect_number_exits_1_and_blames_expect(catalog, tmp_path):
    write_case(
        catalog / "scalar",
        "colah-wrong.yaml",
        COLAH_E.replace("name: colah-e", "name: colah-wrong").replace(
            "grad: {a: 2.0, b: 5.0}", "grad: {a: 2.0, b: 5.5}"
        ),
    )
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out) == 1
    cases = read_cases(out).set_index("case")
    assert cases.loc["colah-wrong", "verdict"] == "FAIL"
    assert cases.loc["colah-wrong", "blame"] == "expect"
    assert "expect" in cases.loc["colah-wrong", "message"]
    assert cases.loc["colah-e", "verdict"] == "PASS"
    comps = read_comparisons(out)
    bad = comps[comps["verdict"] != "PASS"]
    assert set(bad["case"]) == {"colah-wrong"} and set(bad["param"]) == {"b"}
    assert set(bad["engine_b"]) == {"expect"} and len(bad) == 4
    assert np.allclose(bad["max_abs_err"], 0.5)


def test_run_into_a_folder_it_wrote_replaces_it(catalog, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, "-k", "colah", "--engines", "numpy,fd") == 0
    (out / "stale.txt").write_text("old")
    assert run_cli("run", catalog, "--out", out, "-k", "tanh", "--engines", "numpy,fd") == 0
    assert not (out / "stale.txt").exists()
    assert list(read_cases(out)["case"].unique()) == ["tanh-layer"]


# --- usage errors: exit 2 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "extra",
    [
        ["--engines", "numpy,bogus"],
        ["--dtypes", "float8"],
        ["--engine", "no-colon-here"],
        ["--engine", "no_such_module_xyz:Engine"],
        ["--engine", "json:no_such_attr"],
        ["--engine", "json:dumps"],  # importable, but not an engine
        ["--engine", "json:__name__"],  # not even callable
    ],
)
def test_usage_errors_exit_2(catalog, tmp_path, extra, capsys):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, *extra) == 2
    assert "usage error" in capsys.readouterr().err
    assert not out.exists()


def test_missing_path_exits_2(tmp_path, capsys):
    assert run_cli("run", tmp_path / "nowhere", "--out", tmp_path / "out") == 2
    assert "nowhere" in capsys.readouterr().err


def test_argparse_errors_exit_2():
    for argv in ([], ["frobnicate"], ["run", "--no-such-flag"]):
        with pytest.raises(SystemExit) as e:
            main(argv)
        assert e.value.code == 2


def test_invalid_case_exits_2_naming_the_file(catalog, tmp_path, capsys):
    write_case(catalog, "broken.yaml", "name: broken\ninputs: {x: 1.0}\nexpr: x +\n")
    assert run_cli("run", catalog, "--out", tmp_path / "out") == 2
    err = capsys.readouterr().err
    assert "broken.yaml" in err
    assert run_cli("validate", catalog) == 2
    assert "broken.yaml" in capsys.readouterr().err


# --- filtering ------------------------------------------------------------------------------------


def test_engines_option_limits_the_engines(catalog, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, "--engines", "numpy,torch") == 0
    comps = read_comparisons(out)
    assert set(comps["engine_a"]) | set(comps["engine_b"]) == {"numpy", "torch", "expect"}
    assert set(pd.read_csv(out / "engines.csv")["engine"]) == {"numpy", "torch"}


def test_dtypes_option_overrides_each_case(catalog, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, "--dtypes", "float32") == 0
    cases = read_cases(out)
    assert sorted(cases["case"]) == ["colah-e", "tanh-layer"]
    assert set(cases["dtype"]) == {"float32"}
    assert set(read_comparisons(out)["dtype"]) == {"float32"}


def test_keyword_and_tags_select_cases(catalog, tmp_path):
    out = tmp_path / "k"
    assert run_cli("run", catalog, "--out", out, "-k", "colah", "--engines", "numpy,fd") == 0
    assert list(read_cases(out)["case"]) == ["colah-e"]
    out = tmp_path / "tags"
    assert (
        run_cli("run", catalog, "--out", out, "--tags", "l2-wx,nothing", "--engines", "numpy,fd")
        == 0
    )
    assert set(read_cases(out)["case"]) == {"tanh-layer"}


def test_fd_max_elements_option(catalog, tmp_path):
    out = tmp_path / "out"
    assert (
        run_cli(
            "run",
            catalog,
            "--out",
            out,
            "-k",
            "tanh",
            "--engines",
            "numpy,fd",
            "--fd-max-elements",
            "5",
        )
        == 0
    )
    comps = read_comparisons(out)
    x = comps[(comps["param"] == "x")]
    assert set(x["checked"]) == {5} and set(x["elements"]) == {12}


# --- custom engines -------------------------------------------------------------------------------

ENGINE_MODULE = """
import reference_impls
from gradcheck import NumpyEngine
from reference_impls import Primitive

_ops = dict(reference_impls.OPS)
_ops["tanh"] = Primitive(_ops["tanh"].forward, (lambda g, out, x: g * (1 - out),))


class WrongTanh:
    name = "mine"

    def __init__(self):
        self.inner = NumpyEngine(_ops, name="mine")

    def vjp(self, graph, inputs, wrt, cotangent):
        out = self.inner.vjp(graph, inputs, wrt, cotangent)
        return out.value, out.grads            # a plain (value, grads) pair is enough


good = NumpyEngine(name="mine")
"""


@pytest.fixture
def engine_module(tmp_path, monkeypatch) -> str:
    name = f"user_engines_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "userpkg"
    folder.mkdir()
    (folder / f"{name}.py").write_text(ENGINE_MODULE)
    monkeypatch.syspath_prepend(str(folder))
    return name


def test_custom_engine_that_agrees(catalog, tmp_path, engine_module):
    out = tmp_path / "out"
    assert (
        run_cli(
            "run", catalog, "--out", out, "--engines", "fd", "--engine", f"{engine_module}:good"
        )
        == 0
    )
    comps = read_comparisons(out)
    assert ("mine", "fd") in set(zip(comps["engine_a"], comps["engine_b"])) | set(
        zip(comps["engine_b"], comps["engine_a"])
    )


def test_custom_engine_with_a_wrong_backward_is_blamed(catalog, tmp_path, engine_module):
    out = tmp_path / "out"
    assert (
        run_cli(
            "run",
            catalog,
            "--out",
            out,
            "--engines",
            "numpy,fd,torch",
            "--engine",
            f"{engine_module}:WrongTanh",
        )
        == 1
    )
    cases = read_cases(out).set_index(["case", "dtype"])
    assert cases.loc[("tanh-layer", "float64"), "verdict"] == "FAIL"
    assert cases.loc[("tanh-layer", "float64"), "blame"] == "mine"
    assert cases.loc[("tanh-layer", "float32"), "blame"] == "mine"
    assert cases.loc[("colah-e", "float64"), "verdict"] == "PASS"  # no tanh there


# --- validate, list, schema, report ---------------------------------------------------------------


def test_validate(catalog, capsys):
    assert run_cli("validate", catalog) == 0
    assert "2 case(s) valid" in capsys.readouterr().out


def test_list_with_filters(catalog, capsys):
    assert run_cli("list", catalog) == 0
    header, *lines = capsys.readouterr().out.strip().splitlines()
    assert header.split() == ["name", "dtypes", "tags", "file"]
    assert sorted(line.split()[0] for line in lines) == ["colah-e", "tanh-layer"]
    tanh = next(line for line in lines if line.startswith("tanh-layer")).split()
    assert tanh[1] == "float64,float32" and tanh[2] == "l2-wx"
    assert tanh[3] == f"{catalog / 'l2-wx' / 'tanh-layer.yaml'}:1"
    assert run_cli("list", catalog, "--tags", "seed") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == ["name", "colah-e"]
    assert run_cli("list", catalog, "-k", "tanh") == 0
    assert [line.split()[0] for line in capsys.readouterr().out.splitlines()] == [
        "name",
        "tanh-layer",
    ]


def test_list_formats_for_scripts(catalog, capsys):
    assert run_cli("list", catalog, "--format", "csv") == 0
    listed = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert list(listed.columns) == ["name", "dtypes", "tags", "file", "line", "description"]
    assert sorted(listed["name"]) == ["colah-e", "tanh-layer"]
    assert set(listed.loc[listed["name"] == "colah-e", "description"]) == {"e = (a+b)*(b+1)"}
    assert run_cli("list", catalog, "--format", "json", "-k", "tanh") == 0
    [record] = json.loads(capsys.readouterr().out)
    assert record["name"] == "tanh-layer" and record["dtypes"] == ["float64", "float32"]
    assert record["tags"] == ["l2-wx"] and record["line"] == 1


def test_schema_is_json_schema_of_the_case_format(capsys):
    assert run_cli("schema") == 0
    schema = json.loads(capsys.readouterr().out)
    props = schema["properties"]
    for key in ("name", "inputs", "expr", "graph", "wrt", "dtypes", "tolerance", "expect"):
        assert key in props, key
    assert "name" in schema["required"] and "inputs" in schema["required"]


def test_report_rerenders_a_run_folder(catalog, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, "--engines", "numpy,fd") == 0
    (out / "summary.md").unlink()
    (out / "report.html").unlink()
    assert run_cli("report", out) == 0
    assert "tanh-layer" in (out / "summary.md").read_text()
    assert "tanh-layer" in (out / "report.html").read_text()
    assert run_cli("report", tmp_path) == 2  # not a run folder


# --- real processes -------------------------------------------------------------------------------


def console_script() -> Path:
    script = Path(sys.executable).parent / "gradcheck"
    if not script.exists():
        pytest.skip(f"no console script next to {sys.executable}")
    return script


def test_console_script_exit_codes(catalog, tmp_path):
    out = tmp_path / "out"
    ok = subprocess.run(
        [
            str(console_script()),
            "run",
            str(catalog),
            "--out",
            str(out),
            "--engines",
            "numpy,fd",
            "-q",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert ok.returncode == 0, ok.stderr
    assert set(read_cases(out)["verdict"]) == {"PASS"}
    write_case(
        catalog / "scalar",
        "colah-wrong.yaml",
        COLAH_E.replace("name: colah-e", "name: colah-wrong").replace("value: 6.0", "value: 7.0"),
    )
    bad = subprocess.run(
        [
            str(console_script()),
            "run",
            str(catalog),
            "--out",
            str(out),
            "--engines",
            "numpy,fd",
            "-q",
            *IN_PROCESS,
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad.returncode == 1, bad.stderr
    assert "colah-wrong" in bad.stdout
    usage = subprocess.run(
        [str(console_script()), "run", str(catalog), "--engines", "nope"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert usage.returncode == 2


def test_python_dash_m_gradcheck(catalog):
    listed = subprocess.run(
        [sys.executable, "-m", "gradcheck", "list", str(catalog)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert "colah-e" in listed.stdout and "tanh-layer" in listed.stdout
    schema = subprocess.run(
        [sys.executable, "-m", "gradcheck", "schema"], capture_output=True, text=True, timeout=300
    )
    assert schema.returncode == 0 and "inputs" in json.loads(schema.stdout)["properties"]
