"""Never crash on a number, never hang on a file: what a careless or hostile catalog holds
reaches the user as a verdict or as one clear error (exit 2), and reports always render."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from gradcheck.cli import main
from gradcheck.loading.load import MAX_FILE_BYTES, MAX_INPUTS, MAX_JACOBIAN_ROWS

NAN_CASE = """\
    name: log-of-negative
    description: log of a negative input, and a NaN and an Inf among the data
    tags: [scalar]
    inputs:
      a: -2.0
      b: [1.0, .nan, .inf]
    expr: log(a) * sum(b)
"""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_nan_case_is_nonfinite_in_every_report_and_exits_1(tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    write(cases, "nan.yaml", NAN_CASE)
    out = tmp_path / "out"
    code = main(
        ["run", str(cases), "--engines", "numpy,fd,torch", "--timeout", "0", "--out", str(out)]
    )
    assert code == 1
    row = pd.read_csv(out / "cases.csv").iloc[0]
    assert (row["case"], row["verdict"]) == ("log-of-negative", "NONFINITE")
    assert pd.isna(row["blame"])  # every source agrees the numbers are not finite
    assert "NONFINITE" in (out / "summary.md").read_text()
    html = (out / "report.html").read_text()
    assert "NONFINITE" in html and "NaN" in html


def test_odd_strings_and_numbers_render(tmp_path):
    cases = tmp_path / "cases"
    cases.mkdir()
    # a lone surrogate in a tag and the description, 1e308 and -0.0 in the data
    text = (
        'name: odd-text\ndescription: "\\ud800 <b>&</b>"\ntags: [scalar, "\\udfff"]\n'
        "inputs: {a: 1.0e+308, b: -0.0}\nexpr: a * b + tanh(b)\n"
    )
    (cases / "odd.yaml").write_text(text)
    out = tmp_path / "out"
    assert main(
        ["run", str(cases), "--engines", "numpy,torch", "--timeout", "0", "--out", str(out)]
    ) in (0, 1)
    assert "\\ud800" in (out / "report.html").read_text(encoding="utf-8")
    assert pd.read_csv(out / "cases.csv")["case"].tolist() == ["odd-text"]


# found by `gradcheck fuzz cases/layernorm/layernorm-hand.yaml`: a layer norm over one
# element has the gradient 0 in x, which torch computes as -4e-311 (a float64 subnormal); the
# rounding bound's squares of such deviations underflowed to 0 (FAIL, tol ratio inf), and the
# Taylor plot of remainders near 1e-320 asked for log10(10.0 ** -324) (report.html failed)
SUBNORMAL_CASE = """\
    name: layernorm-subnormal
    inputs:
      x: [[0.0]]
      gamma: [3.0]
      beta: [0.0]
      c: [[1.7082655165201282e-295]]
    expr: sum(layernorm(x, gamma, beta, eps=3) * c)
    wrt: [x, gamma, beta]
"""


def test_subnormal_gradients_pass_and_render(tmp_path, capsys):
    cases = tmp_path / "cases"
    cases.mkdir()
    write(cases, "subnormal.yaml", SUBNORMAL_CASE)
    out = tmp_path / "out"
    assert (
        main(
            ["run", str(cases), "--engines", "numpy,fd,torch", "--timeout", "0", "--out", str(out)]
        )
        == 0
    ), capsys.readouterr()
    assert set(pd.read_csv(out / "comparisons.csv")["verdict"]) == {"PASS"}
    assert "could not be rendered" not in capsys.readouterr().err
    assert "data:image/svg+xml" in (out / "report.html").read_text()


@pytest.mark.parametrize("kind", ["fifo", "device-link"])
def test_case_files_are_read_as_regular_files_only(tmp_path, capsys, kind):
    cases = tmp_path / "cases"
    cases.mkdir()
    if kind == "fifo":
        os.mkfifo(cases / "pipe.yaml")  # opening it for reading would wait forever
    else:
        (cases / "zero.yaml").symlink_to("/dev/zero")  # endless bytes past any size check
    before = snapshot(tmp_path)
    assert main(["validate", str(cases)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_the_size_limit_holds_on_the_bytes_read(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * MAX_FILE_BYTES + "\n")
    assert main(["validate", str(path)]) == 2
    assert f"larger than {MAX_FILE_BYTES} bytes" in capsys.readouterr().err


def test_too_many_inputs_are_refused_before_anything_runs(tmp_path, capsys):
    inputs = "".join(f"  a{i}: 1.0\n" for i in range(MAX_INPUTS + 1))
    path = write(tmp_path, "many.yaml", f"name: many\ninputs:\n{inputs}expr: a0 * a1\n")
    assert main(["run", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert f"{MAX_INPUTS + 1} inputs; the limit is {MAX_INPUTS}" in err and "many.yaml" in err
    assert not (tmp_path / "out").exists()


def test_a_jacobian_over_the_row_limit_is_refused_not_skipped(tmp_path, capsys):
    path = write(
        tmp_path,
        "jac.yaml",
        f"""\
        name: big-jacobian
        inputs: {{x: {{shape: [{MAX_JACOBIAN_ROWS + 1}]}}}}
        expr: tanh(x)
        jacobian: true
    """,
    )
    assert main(["validate", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{MAX_JACOBIAN_ROWS + 1} rows" in err and "big-jacobian" in err
