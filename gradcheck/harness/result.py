"""A run's results: the tables (pandas DataFrames), their storage in a run folder, and the
queries that every front end and report asks of them.

Reports only render a `RunResult`; they never import this module, so the dependency runs one
way (this module -> reports, for `write_reports`).
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .rows import (
    FLOAT,
    INDEX,
    TEXT,
    CaseRow,
    ComparisonRow,
    EngineRow,
    TaylorRow,
    column_kinds,
    columns,
)
from .verdict import FAILING, Verdict

if TYPE_CHECKING:
    import pandas as pd

# attribute of RunResult -> (file, row type)
TABLES = {
    "cases": ("cases.csv", CaseRow),
    "comparisons": ("comparisons.csv", ComparisonRow),
    "engines": ("engines.csv", EngineRow),
    "taylor": ("taylor.csv", TaylorRow),
}
CSV_FILES = {attr: filename for attr, (filename, _) in TABLES.items()}
UNCHECKED = (Verdict.SKIP,)  # not a failure, but not a check either: green needs allow_skips


@dataclass
class RunResult:
    cases: pd.DataFrame
    comparisons: pd.DataFrame
    engines: pd.DataFrame
    metadata: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)  # (case, dtype, param, a, b) -> |a - b|
    details: dict = field(default_factory=dict)  # case name -> description, source, steps
    taylor: pd.DataFrame = field(default_factory=lambda: _frame([], TaylorRow))
    curves: dict = field(default_factory=dict)  # (case, dtype, engine) -> eps, R rows

    @classmethod
    def from_case_results(cls, results, metadata=None, details=None) -> RunResult:
        errors = {
            (r.case.case, r.case.dtype) + key: value
            for r in results
            for key, value in r.errors.items()
        }
        tables = {
            "cases": [r.case for r in results],
            "comparisons": [row for r in results for row in r.comparisons],
            "engines": [row for r in results for row in r.engines],
            "taylor": [row for r in results for row in r.taylor],
        }
        curves = {
            (r.case.case, r.case.dtype, engine): curve
            for r in results
            for engine, curve in r.curves.items()
        }
        return cls(
            **{attr: _frame(rows, TABLES[attr][1]) for attr, rows in tables.items()},
            metadata=metadata or {},
            errors=errors,
            details=details or {},
            curves=curves,
        )

    # --- queries --------------------------------------------------------------------------

    @property
    def ok(self) -> bool:
        """Every case run was checked (compared by two sources or more) and agreed."""
        return self.passed()

    def passed(self, allow_skips: bool = False) -> bool:
        bad = FAILING if allow_skips else FAILING + UNCHECKED
        return not self.cases["verdict"].isin(bad).any()

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return {str(k): int(v) for k, v in self.cases["verdict"].value_counts().items()}

    def ordered_counts(self) -> list[tuple[str, int]]:
        """(verdict, count) pairs, the worst verdicts first."""
        return sorted(self.counts().items(), key=lambda item: (Verdict.rank_of(item[0]), item[0]))

    def sorted_cases(self) -> pd.DataFrame:
        """Case runs, the worst verdicts first, then by name and dtype."""
        rank = self.cases["verdict"].map(Verdict.rank_of)
        return (
            self.cases.assign(_rank=rank)
            .sort_values(["_rank", "case", "dtype"], kind="stable")
            .drop(columns="_rank")
        )

    def failing_cases(self) -> pd.DataFrame:
        cases = self.sorted_cases()
        return cases[cases["verdict"].isin(FAILING)]

    def blame_counts(self) -> list[tuple[str, int]]:
        """How many failing case runs blame each engine, most blamed first."""
        counts = Counter(e for blame in self.failing_cases()["blame"] for e in str(blame).split())
        return sorted(counts.items(), key=lambda item: (-item[1], item[0]))

    # --- storage ----------------------------------------------------------------------------

    def __repr__(self) -> str:
        # short: pytest prints it in a failing `assert result.ok`
        counts = ", ".join(f"{n} {v}" for v, n in sorted(self.counts().items()))
        return f"<RunResult of {len(self.cases)} case run(s): {counts or 'none'}>"

    def __str__(self) -> str:
        """The discrepancy table: each case run's verdict and blame, and the failing pairs."""
        from ..reports.text import render_text

        return render_text(self)

    def write_reports(self, out_dir: str | Path) -> Path:
        from ..reports import write_reports

        return write_reports(self, Path(out_dir))

    def save_data(self, folder: Path) -> None:
        """The machine-readable files: the CSV tables, run.json and errors.npz."""
        for attr, filename in CSV_FILES.items():
            write_table(getattr(self, attr), folder / filename)
        (folder / "run.json").write_text(
            json.dumps(
                {**self.metadata, "counts": self.counts(), "details": self.details},
                indent=2,
                sort_keys=True,
                default=str,
            ),
            encoding="utf-8",
            errors="backslashreplace",
        )
        # a zip member's name must encode: a lone surrogate is escaped, as in the CSV files
        for filename, arrays in (("errors.npz", self.errors), ("taylor.npz", self.curves)):
            np.savez_compressed(
                folder / filename,
                **{
                    "|".join(map(str, k)).encode("utf-8", "backslashreplace").decode("utf-8"): v
                    for k, v in arrays.items()
                },
            )


def read_run(folder: str | Path) -> RunResult:
    """Load a run folder back into a `RunResult`, without recomputing anything."""
    folder = Path(folder)
    frames = {
        attr: read_table(folder / f)
        for attr, f in CSV_FILES.items()
        if (folder / f).exists() or attr != "taylor"
    }  # folders from before taylor.csv
    meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    details = meta.pop("details", {})
    meta.pop("counts", None)
    return RunResult(
        **frames,
        metadata=meta,
        errors=_arrays(folder / "errors.npz"),
        details=details,
        curves=_arrays(folder / "taylor.npz"),
    )


def _arrays(path: Path) -> dict:
    if not path.exists():
        return {}
    with np.load(path) as z:
        return {tuple(k.split("|")): z[k] for k in z.files}


def _frame(rows: list, row_type) -> pd.DataFrame:
    import pandas as pd  # here, not above: worker processes import this package, not pandas

    return pd.DataFrame([vars(r) for r in rows], columns=columns(row_type))


# --- CSV files ------------------------------------------------------------------------------
# Plain `DataFrame.to_csv` output, so `pandas.read_csv` loads the numbers as float64 / int64
# without help. `read_table` also knows that an empty text cell is '' rather than a missing
# number, and turns index cells back into tuples, so a folder reads back into its tables.

KINDS = {
    name: kind for _, row_type in TABLES.values() for name, kind in column_kinds(row_type).items()
}


def write_table(frame: pd.DataFrame, path: Path) -> None:
    frame = frame.copy()
    for column in [c for c in frame if KINDS.get(c) == INDEX]:
        frame[column] = frame[column].map(_index_text)
    # a surrogate or other unencodable character in case text must not cost the table, and
    # CRLF line ends (RFC 4180) make the writer quote a lone CR inside a cell
    with open(path, "w", encoding="utf-8", errors="backslashreplace", newline="") as f:
        frame.to_csv(f, index=False, lineterminator="\r\n")


def read_table(path: str | Path) -> pd.DataFrame:
    """One CSV of a run folder: text as strings ('' stays ''), numbers as numbers, indices as
    tuples. Columns this module does not know are left to pandas' own inference."""
    header = _header(Path(path))
    text = {c: str for c in header if KINDS.get(c) in (TEXT, INDEX)}
    floats = {c: [""] for c in header if KINDS.get(c) == FLOAT}
    import pandas as pd

    frame = pd.read_csv(path, dtype=text, keep_default_na=False, na_values=floats)
    for column in [c for c in header if KINDS.get(c) == INDEX]:
        frame[column] = frame[column].map(_index_value)
    return frame


def _index_text(index) -> str:
    return "" if index is None else json.dumps([int(i) for i in index])


def _index_value(text: str):
    return tuple(json.loads(text)) if text else None


def _header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as f:
        return next(csv.reader(f), [])
