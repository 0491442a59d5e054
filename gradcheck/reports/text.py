"""The discrepancy table a person reads in a terminal or a failing test: one block per case
run, its verdict and blame, then every engine pair that did not pass, with the worst
element and both engines' values there."""

from __future__ import annotations

import math

from ..harness.verdict import Verdict

HEADER = ("input", "pair", "verdict", "worst", "value a", "value b", "tol_ratio", "max_abs_err")
RIGHT = {"value a", "value b", "tol_ratio", "max_abs_err"}  # numbers line up on the right


def render_text(result) -> str:
    """`result`: a `RunResult`."""
    blocks = [_block(result, case) for case in result.cases.itertuples()]
    return "\n\n".join(_tf32(result) + blocks) if blocks else "no case runs"


def _tf32(result) -> list[str]:
    """A run whose engines had TF32 on says so first: their float32 matmuls and
    convolutions kept 10 bits."""
    on = [
        name for name, o in (result.metadata.get("engine_options") or {}).items() if o.get("tf32")
    ]
    return [f"TF32 on for: {', '.join(on)}"] if on else []


def _block(result, case) -> str:
    lines = [f"{case.verdict}: case {case.case} [{case.dtype}]" + _blame(case.blame)]
    rows = _rows(result.comparisons, case)
    if case.verdict == Verdict.PASS:
        worst = max(rows["tol_ratio"], default=0.0)
        line = (
            lines[0] + f"; engines {case.engines.replace(' ', ', ')} agree "
            f"(worst tol_ratio {worst:.3g} of 1)"
        )
        return line + (f"\n  {case.message}" if case.message else "")  # a note
    if case.message:
        lines.append(f"  {case.message}")
    failing = rows[rows["verdict"] != Verdict.PASS]
    if len(failing):
        lines += [""] + _aligned([HEADER] + [_cells(r) for r in failing.itertuples()])
    lines += [
        f"  engine {e.engine}: {e.status}: {e.message}"
        for e in _rows(result.engines, case).itertuples()
        if e.status != "ok"
    ]
    return "\n".join(lines)


def _rows(frame, case):
    return frame[(frame["case"] == case.case) & (frame["dtype"] == case.dtype)]


def _blame(blame) -> str:
    return f" blame: {blame}" if isinstance(blame, str) and blame else ""


def _cells(r) -> tuple[str, ...]:
    return (
        r.param,
        f"{r.engine_a} vs {r.engine_b}",
        str(r.verdict),
        _index(r.worst_index),
        _number(r.value_a),
        _number(r.value_b),
        _number(r.tol_ratio, 3),
        _number(r.max_abs_err, 3),
    )


def _aligned(rows: list[tuple[str, ...]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(HEADER))]
    return [
        "  "
        + "  ".join(
            cell.rjust(w) if name in RIGHT else cell.ljust(w)
            for name, cell, w in zip(HEADER, row, widths)
        ).rstrip()
        for row in rows
    ]


def _index(index) -> str:
    """A tuple of ints ([] for a scalar); None when the shapes differ."""
    return "-" if index is None else str([int(i) for i in index])


def _number(x, digits: int = 8) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}g}"
