"""summary.md: short enough for a CI job summary; failures and the engines blamed first."""
from __future__ import annotations

from ..harness.result import FAILING, RunResult

VERDICT_ORDER = ["ERROR", "NONFINITE", "FAIL", "NONDIFF", "SKIP", "PASS"]


def sorted_cases(result: RunResult):
    order = {v: i for i, v in enumerate(VERDICT_ORDER)}
    cases = result.cases.copy()
    cases["_rank"] = cases["verdict"].map(order).fillna(len(order))
    return cases.sort_values(["_rank", "case", "dtype"], kind="stable").drop(columns="_rank")


def render_markdown(result: RunResult) -> str:
    counts = result.counts()
    head = ", ".join(f"{counts[v]} {v}" for v in VERDICT_ORDER if counts.get(v))
    lines = [f"# gradcheck: {'all passed' if result.ok else 'failures'}", "",
             f"{len(result.cases)} case runs: {head or 'none'}.", ""]
    failing = sorted_cases(result)
    failing = failing[failing["verdict"].isin(FAILING)]
    if len(failing):
        lines += ["## Failures", "", "| case | dtype | verdict | blame | message |",
                  "|---|---|---|---|---|"]
        lines += [f"| {r.case} | {r.dtype} | {r.verdict} | {r.blame or ''} | {_cell(r.message)} |"
                  for r in failing.itertuples()]
        lines.append("")
    lines += ["## All cases", "", "| case | dtype | verdict | blame | seconds |",
              "|---|---|---|---|---|"]
    lines += [f"| {r.case} | {r.dtype} | {r.verdict} | {r.blame or ''} | {r.seconds:.3f} |"
              for r in sorted_cases(result).itertuples()]
    return "\n".join(lines) + "\n"


def _cell(text) -> str:
    text = "" if text is None or text != text else str(text)
    return text.replace("|", "\\|").replace("\n", " ")
