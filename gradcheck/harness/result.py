"""A run's results as tables (pandas DataFrames), plus the run's metadata."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from .compare import ERROR, FAIL, NONFINITE

FAILING = (FAIL, ERROR, NONFINITE)

CASE_COLUMNS = ["case", "dtype", "verdict", "blame", "seconds", "message", "family", "tags",
                "file", "engines", "skipped", "comparisons", "failed"]
COMPARISON_COLUMNS = ["case", "dtype", "param", "engine_a", "engine_b", "verdict",
                      "max_abs_err", "max_rel_err", "tol_ratio", "worst_index", "atol", "rtol",
                      "value_a", "value_b", "fd_err", "checked", "elements", "kinks", "message"]
ENGINE_COLUMNS = ["case", "dtype", "engine", "status", "seconds", "message"]
TIMING_COLUMNS = ("seconds",)


@dataclass
class RunResult:
    cases: pd.DataFrame
    comparisons: pd.DataFrame
    engines: pd.DataFrame
    metadata: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)      # (case, dtype, param, a, b) -> |a - b|
    details: dict = field(default_factory=dict)     # case name -> description, source, steps

    @classmethod
    def from_case_results(cls, results, metadata=None, details=None) -> "RunResult":
        errors = {(r.case["case"], r.case["dtype"]) + key: value
                  for r in results for key, value in r.errors.items()}
        return cls(_frame([r.case for r in results], CASE_COLUMNS),
                   _frame([row for r in results for row in r.comparisons], COMPARISON_COLUMNS),
                   _frame([row for r in results for row in r.engines], ENGINE_COLUMNS),
                   metadata or {}, errors, details or {})

    @property
    def ok(self) -> bool:
        return not self.cases["verdict"].isin(FAILING).any()

    @property
    def exit_code(self) -> int:
        return 0 if self.ok else 1

    def counts(self) -> dict[str, int]:
        return self.cases["verdict"].value_counts().to_dict()

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


def _frame(rows: list[dict], columns: list[str]) -> pd.DataFrame:
    frame = pd.DataFrame(rows, columns=columns)
    return frame
