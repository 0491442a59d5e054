"""The report files of a run: CSVs that are stable and load with plain pandas, a lossless
read-back, summary.md with failures first, an escaped self-contained report.html that
`gradcheck report` re-renders from the files alone, and the terminal summary."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pandas.api.types import is_float_dtype, is_integer_dtype, is_string_dtype

import gradcheck
from gradcheck.cli import main
from gradcheck.harness.result import CSV_FILES, read_run
from gradcheck.harness.result import KINDS as COLUMN_TYPES
from gradcheck.harness.rows import (
    FLOAT,
    INT,
    TIMING_COLUMNS,
    CaseRow,
    ComparisonRow,
    EngineRow,
    TaylorRow,
    column_kinds,
)
from gradcheck.reports.heatmap import grid_position, to_grid
from helpers import RUN_FILES

COLUMNS_PAGE = Path(__file__).resolve().parents[1] / "docs" / "reports.md"
DESCRIPTION = "<script>alert(1)</script> & <b>bold</b>"


def run_into(catalog: Path, out: Path):
    result = gradcheck.run(gradcheck.load_cases([catalog]))
    result.write_reports(out)
    return result


@pytest.fixture
def run(mixed_catalog, tmp_path):
    out = tmp_path / "out"
    return run_into(mixed_catalog, out), out


def csv_rows_without_timing(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        rows = list(csv.reader(f))
    keep = [i for i, name in enumerate(rows[0]) if name not in TIMING_COLUMNS]
    return [[row[i] for i in keep] for row in rows]


# --- CSV -----------------------------------------------------------------------------------------


def test_two_runs_write_the_same_csv_apart_from_timings(run, mixed_catalog, tmp_path):
    _, first = run
    second = tmp_path / "again"
    run_into(mixed_catalog, second)
    for filename in CSV_FILES.values():
        assert csv_rows_without_timing(first / filename) == csv_rows_without_timing(
            second / filename
        ), filename


def test_plain_read_csv_gives_numbers_and_strings(run):
    _, out = run
    for filename in CSV_FILES.values():
        frame = pd.read_csv(out / filename)
        for column in frame.columns:
            kind = COLUMN_TYPES[column]
            if kind == FLOAT:
                assert is_float_dtype(frame[column]), (filename, column)
            elif kind == INT:
                assert is_integer_dtype(frame[column]), (filename, column)
            elif frame[column].notna().any():  # all-empty text reads as NaN here
                assert is_string_dtype(frame[column]), (filename, column)
    assert set(pd.read_csv(out / "cases.csv")["verdict"]) == {"PASS", "FAIL"}


def test_read_run_round_trips_the_tables(run):
    result, out = run
    back = read_run(out)
    for attr in CSV_FILES:
        pd.testing.assert_frame_equal(getattr(back, attr), getattr(result, attr), check_dtype=True)
    assert (back.cases.set_index("case").loc["colah-e", "blame"]) == ""  # '' stays ''
    assert back.details == json.loads(json.dumps(result.details))  # tuples come back as lists
    assert back.metadata == result.metadata
    assert back.errors.keys() == result.errors.keys()
    for key, err in result.errors.items():
        np.testing.assert_array_equal(back.errors[key], err)


@pytest.mark.parametrize("row_type", [CaseRow, ComparisonRow, EngineRow, TaylorRow])
def test_docs_column_tables_are_the_row_classes(row_type):
    """The docs (docs/reports.md) list each CSV file's columns, in order and with their
    types, exactly as the row dataclass defines them: adding a column is one field plus its
    line in that page's table."""
    filename = next(f for f, t in gradcheck.harness.result.TABLES.values() if t is row_type)
    text = COLUMNS_PAGE.read_text()
    section = text.split(f"`{filename}`, one row per", 1)[1].split("\n\n", 2)[1]
    documented = re.findall(r"^\| `([a-z_]+)` \| ([a-z]+) \|", section, flags=re.M)
    assert documented == [(c, k) for c, k in column_kinds(row_type).items()]


# --- summary.md ----------------------------------------------------------------------------------


def test_summary_lists_failures_first_with_blame(run):
    _, out = run
    summary = (out / "summary.md").read_text()
    lines = summary.splitlines()
    assert lines[0] == "## gradcheck: 1 of 3 case runs failed"
    assert "Blamed: `expect` (1)" in summary
    rows = [
        line
        for line in lines
        if line.startswith("| ") and "---" not in line and "| case |" not in line
    ]
    assert rows[0].startswith("| wx-wrong-expect | float64 | **FAIL** | expect |")
    first_pass = next(i for i, line in enumerate(lines) if "| PASS |" in line)
    assert lines.index(rows[0]) < first_pass
    assert "<script>" not in summary


# --- report.html ---------------------------------------------------------------------------------


def test_html_escapes_case_text(run):
    html = (run[1] / "report.html").read_text()
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &amp; &lt;b&gt;bold&lt;/b&gt;" in html
    assert "<script>alert(1)" not in html and "<b>bold" not in html
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(2)&gt;" in html
    assert html.count("<script") == 1  # ours, at the end


def test_html_is_self_contained(run):
    html = (run[1] / "report.html").read_text()
    assert "default-src 'none'" in html  # the browser itself refuses any fetch
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", html)
    assert "<link" not in html
    images = re.findall(r'<img src="([^"]+)"', html)
    assert images and all(
        src.startswith(("data:image/png;base64,", "data:image/svg+xml;base64,")) for src in images
    )


def test_html_shows_the_failing_case(run):
    html = (run[1] / "report.html").read_text()
    section = html.split('id="case-wx-wrong-expect"', 1)[1].split("</section>", 1)[0]
    assert 'blamed: <span class="blame">expect</span>' in section
    assert "data:image/png;base64," in section  # the heatmap of W
    assert ">2.5<" in section and ">[1, 2]<" in section  # expect's wrong entry, where it is


def test_report_command_rerenders_the_same_files_from_the_folder(run):
    _, out = run
    before = {name: (out / name).read_text() for name in ("report.html", "summary.md")}
    for name in before:
        (out / name).unlink()
    assert main(["report", str(out)]) == 0
    assert {name: (out / name).read_text() for name in before} == before
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES  # nothing temporary left


# --- heatmap layout ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "shape, grid_shape",
    [
        ((3, 4), (3, 4)),
        ((5,), (1, 5)),
        ((100,), (10, 10)),
        ((2, 5, 3), (5, 6)),
        ((2, 3, 7, 7), (14, 21)),
    ],
)
def test_heatmap_layout_keeps_every_element_once(shape, grid_shape):
    x = np.arange(np.prod(shape), dtype=float).reshape(shape)
    grid, _ = to_grid(x)
    assert grid.shape == grid_shape
    assert sorted(grid[~np.isnan(grid)].tolist()) == x.ravel().tolist()
    last = tuple(n - 1 for n in shape)
    row, col = grid_position(shape, last)
    assert grid[row, col] == x[last]


def test_nchw_tiles_are_whole_images():
    x = np.arange(2 * 3 * 4 * 5).reshape(2, 3, 4, 5)
    grid, tile = to_grid(x)
    assert tile == (4, 5)
    np.testing.assert_array_equal(grid[4:8, 5:10], x[1, 1])  # sample 1, channel 1


# --- terminal ------------------------------------------------------------------------------------


def test_quiet_run_prints_failures_without_colors(mixed_catalog, tmp_path, capsys):
    assert main(["run", str(mixed_catalog), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    printed = capsys.readouterr()
    assert "\x1b[" not in printed.out + printed.err  # not a terminal: no color codes
    assert "wx-wrong-expect" in printed.out and "colah-e" not in printed.out
    assert "1 FAIL, 2 PASS; blamed: expect (1)" in printed.out
