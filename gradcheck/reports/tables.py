"""The CSV files of a run folder and the type of every column.

The files are plain `DataFrame.to_csv` output, so `pandas.read_csv` loads the numbers as
float64 / int64 without help. One thing plain `read_csv` cannot know is that an empty cell
of a text column is an empty string rather than a missing number; `read_table` tells it,
so that a run folder reads back into exactly the tables that wrote it.
"""
from __future__ import annotations

import csv
from pathlib import Path

import pandas as pd

CSV_FILES = {"cases": "cases.csv", "comparisons": "comparisons.csv", "engines": "engines.csv"}

TEXT, FLOAT, INT = "text", "float", "int"

# One type per column name; a name shared by several files means the same thing in each.
COLUMN_TYPES = {
    "case": TEXT, "dtype": TEXT, "verdict": TEXT, "blame": TEXT, "message": TEXT,
    "family": TEXT, "tags": TEXT, "file": TEXT, "engines": TEXT, "skipped": TEXT,
    "param": TEXT, "engine_a": TEXT, "engine_b": TEXT, "worst_index": TEXT,
    "engine": TEXT, "status": TEXT,
    "seconds": FLOAT, "max_abs_err": FLOAT, "max_rel_err": FLOAT, "tol_ratio": FLOAT,
    "atol": FLOAT, "rtol": FLOAT, "value_a": FLOAT, "value_b": FLOAT, "fd_err": FLOAT,
    "comparisons": INT, "failed": INT, "checked": INT, "elements": INT, "kinks": INT,
}


def write_table(frame: pd.DataFrame, path: Path) -> None:
    frame.to_csv(path, index=False)


def read_table(path: str | Path) -> pd.DataFrame:
    """Read one CSV of a run folder: text columns as strings ('' stays ''), numbers as
    numbers. Columns this module does not know are left to pandas' own inference."""
    columns = _header(Path(path))
    text = {c: str for c in columns if COLUMN_TYPES.get(c) == TEXT}
    floats = {c: [""] for c in columns if COLUMN_TYPES.get(c) == FLOAT}
    return pd.read_csv(path, dtype=text, keep_default_na=False, na_values=floats)


def _header(path: Path) -> list[str]:
    with path.open(newline="") as f:
        return next(csv.reader(f), [])
