"""summary.md: short enough for a CI job summary; failures and the engines blamed first."""
from __future__ import annotations

from collections import Counter

import pandas as pd

from ..harness.result import FAILING, RunResult

VERDICT_ORDER = ["ERROR", "NONFINITE", "FAIL", "NONDIFF", "SKIP", "PASS"]


def sorted_cases(result: RunResult) -> pd.DataFrame:
    """Case runs, the worst verdicts first, then by name and dtype."""
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    cases = result.cases.copy()
    cases["_rank"] = cases["verdict"].map(order).fillna(len(order))
    return cases.sort_values(["_rank", "case", "dtype"], kind="stable").drop(columns="_rank")


def ordered_counts(result: RunResult) -> list[tuple[str, int]]:
    """(verdict, count) pairs, failures first; verdicts this module does not know last."""
    counts = result.counts()
    known = [(v, counts[v]) for v in VERDICT_ORDER if counts.get(v)]
    return known + sorted((v, n) for v, n in counts.items() if v not in VERDICT_ORDER)


def blame_counts(cases: pd.DataFrame) -> list[tuple[str, int]]:
    """How many failing case runs blame each engine, most blamed first."""
    failing = cases[cases["verdict"].isin(FAILING)]
    counts = Counter(e for blame in failing["blame"] for e in _words(blame))
    return sorted(counts.items(), key=lambda item: (-item[1], item[0]))


def render_markdown(result: RunResult) -> str:
    cases = sorted_cases(result)
    failing = cases[cases["verdict"].isin(FAILING)]
    lines = [_title(result, len(cases), len(failing)), "", _counts_line(result), ""]
    if len(failing):
        lines += ["| case | dtype | verdict | blame | message |", "|---|---|---|---|---|"]
        lines += [f"| {_cell(r.case)} | {r.dtype} | **{r.verdict}** | {_cell(r.blame)} "
                  f"| {_cell(r.message)} |" for r in failing.itertuples()]
        lines.append("")
    # Collapsed, so that a long catalog does not push the failures off the CI page.
    lines += [f"<details><summary>All {len(cases)} case runs</summary>", "",
              "| case | dtype | verdict | blame | seconds |", "|---|---|---|---|---:|"]
    lines += [f"| {_cell(r.case)} | {r.dtype} | {r.verdict} | {_cell(r.blame)} | {r.seconds:.3f} |"
              for r in cases.itertuples()]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _title(result: RunResult, total: int, failing: int) -> str:
    if not total:
        return "## gradcheck: no case runs"
    if result.ok:
        return f"## gradcheck: all {total} case runs passed"
    return f"## gradcheck: {failing} of {total} case runs failed"


def _counts_line(result: RunResult) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in ordered_counts(result)) or "no case runs"
    blamed = ", ".join(f"`{e}` ({n})" for e, n in blame_counts(result.cases))
    return counts + (f". Blamed: {blamed}." if blamed else ".")


def _words(text) -> list[str]:
    return str(text).split() if isinstance(text, str) else []


def _cell(text) -> str:
    """Table-safe text: no pipes or line breaks; no HTML, which job summaries render."""
    text = text if isinstance(text, str) else ""
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, escaped)
    return " ".join(text.split())
