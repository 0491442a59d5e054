"""The folder `gradcheck mutate` writes: mutants.csv, matrix.csv, baseline.csv and
mutants.html (one self-contained page in the style of report.html, whose stylesheet it
borrows rather than copies)."""

from __future__ import annotations

import re

from markupsafe import Markup

from .html import _ENV, _command, _template_source

# The status of a mutant as the report's verdict badges show it.
STATUS_BADGE = {
    "killed": "PASS",
    "survived": "FAIL",
    "unexercised": "FAIL",
    "blame shared": "NONDIFF",
    "equivalent": "SKIP",
    "not applicable": "SKIP",
}
# A matrix cell: (css class, symbol) by what the mutant did on that case run.
CELL = {"killed": ("pass", "✓"), "survived": ("none-run", "·"), "": ("", "")}


def render_mutants_html(result) -> str:
    rows = result.mutants.fillna("").to_dict("records")
    return _ENV.get_template("mutants.html.j2").render(
        style=Markup(_report_style()),
        meta=result.metadata,
        command=_command(result.metadata),
        rate=f"{100 * result.kill_rate:.1f}%",
        ok=result.ok,
        counts=_counts(result),
        rows=[_row(r) for r in rows],
        matrix=_matrix(result),
    )


def _report_style() -> str:
    """report.html's stylesheet, so both pages look alike and it lives in one place."""
    style = re.search(r"<style>(.*?)</style>", _template_source("report.html.j2"), re.S)
    assert style is not None, "report.html.j2 has lost its <style> block"
    return style.group(1)


def _counts(result) -> list[tuple[str, str, int]]:
    counts = result.mutants["status"].value_counts()
    return [
        (status, STATUS_BADGE[status], int(counts[status]))
        for status in STATUS_BADGE
        if status in counts
    ]


def _row(r: dict) -> dict:
    return {**r, "badge": STATUS_BADGE.get(r["status"], "SKIP")}


def _matrix(result) -> dict:
    """Applicable mutants x case runs; a cell says whether that run killed the mutant."""
    frame = result.matrix.set_index("mutant")
    shown = [m for m in result.mutants["mutant"] if m in frame.index and (frame.loc[m] != "").any()]
    columns = [c for c in frame.columns if (frame.loc[shown, c] != "").any()] if shown else []
    return {
        "columns": columns,
        "rows": [(m, [_cell(frame.at[m, c]) for c in columns]) for m in shown],
    }


def _cell(value: str) -> dict:
    cls, text = CELL.get(value, ("NONDIFF", "b"))
    return {"cls": cls, "text": text, "title": value}
