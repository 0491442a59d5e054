"""summary.md: short enough for a CI job summary; failures and the engines blamed first."""

from __future__ import annotations


def render_markdown(result) -> str:
    """`result`: a `RunResult` (rendering asks it for its tables and queries)."""
    cases = result.sorted_cases()
    failing = result.failing_cases()
    lines = [_title(result, len(cases), len(failing)), "", _counts_line(result), ""]
    if len(failing):
        lines += ["| case | dtype | verdict | blame | message |", "|---|---|---|---|---|"]
        lines += [
            f"| {_cell(r.case)} | {r.dtype} | **{r.verdict}** | {_cell(r.blame)} "
            f"| {_cell(r.message)} |"
            for r in failing.itertuples()
        ]
        lines.append("")
    # Collapsed, so that a long catalog does not push the failures off the CI page.
    lines += [
        f"<details><summary>All {len(cases)} case runs</summary>",
        "",
        "| case | dtype | verdict | blame | seconds |",
        "|---|---|---|---|---:|",
    ]
    lines += [
        f"| {_cell(r.case)} | {r.dtype} | {r.verdict} | {_cell(r.blame)} | {r.seconds:.3f} |"
        for r in cases.itertuples()
    ]
    lines += ["", "</details>"]
    return "\n".join(lines) + "\n"


def _title(result, total: int, failing: int) -> str:
    if not total:
        return "## gradcheck: no case runs"
    if result.ok:
        return f"## gradcheck: all {total} case runs passed"
    if not failing:  # nothing failed, but some run had fewer than two sources (SKIP)
        return f"## gradcheck: {total} case runs, not all of them checked"
    return f"## gradcheck: {failing} of {total} case runs failed"


def _counts_line(result) -> str:
    counts = ", ".join(f"{n} {v}" for v, n in result.ordered_counts()) or "no case runs"
    blamed = ", ".join(f"`{e}` ({n})" for e, n in result.blame_counts())
    return counts + (f". Blamed: {blamed}." if blamed else ".")


def _cell(text) -> str:
    """Table-safe text: no pipes or line breaks; no HTML, which job summaries render."""
    text = text if isinstance(text, str) else ""
    for raw, escaped in (("&", "&amp;"), ("<", "&lt;"), (">", "&gt;"), ("|", "\\|")):
        text = text.replace(raw, escaped)
    return " ".join(text.split())
