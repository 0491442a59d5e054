"""Each engine's measured accuracy, as the rounding model uses it.

`gradcheck/power/engine_accuracy.py` measures every unary elementwise op of each engine in
each dtype against 50-digit mpmath values and writes the table shipped beside this module
(`python -m gradcheck.power.engine_accuracy --out gradcheck/harness/accuracy.json`). Where an
engine computes an op of a case more than an ulp or two off, its rounding bound is widened
by what was measured (`widened_ops`, harness/rounding.py): a difference explained by an
engine's own accuracy is not a FAIL. Up to CAP ulps: beyond that the engine is wrong there,
not inexact (torch's float64 gelu is 100% off at -10), and its comparisons still fail.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

SHIPPED = Path(__file__).with_name("accuracy.json")
WIDEN_ABOVE = 2.0  # ulps: what the rounding model's "about an ulp" covers
CAP = 64.0  # ulps: the most an engine's op is forgiven
# The measured functions an op computes inside it, where its output is theirs: each hidden
# state of an rnn is a tanh, an lstm's a sigmoid times a tanh. Such an op's output is
# widened by the worst of them, as the backward reads it (1 - h^2 of a saturated h).
INSIDE = {"rnn": ("tanh",), "lstm": ("sigmoid", "tanh")}


@functools.lru_cache(maxsize=1)
def table() -> dict:
    """The shipped table ({} where it is missing)."""
    try:
        return json.loads(SHIPPED.read_text())
    except FileNotFoundError:
        return {}


def widened_ops(engine: str, dtype: str, ops) -> dict[str, float]:
    """op -> the largest error measured (in ulps) of `engine`'s forward of it in `dtype`
    where the true value is a normal number (a flushed subnormal is an absolute error
    below tiny, not a relative one), for each of `ops` measured more than WIDEN_ABOVE ulps
    off, at most CAP; {} for an engine or dtype the shipped table does not name. `pow`
    (rows `pow^k`) takes the worst of its measured exponents; an op of INSIDE, the worst
    of the functions it computes."""
    measured = table().get(engine, {}).get(dtype, {})
    out: dict[str, float] = {}
    for name, row in measured.items():
        function = name.split("^")[0]
        worst = row.get("max_ulps_normal", row.get("max_ulps"))
        if worst is None or worst <= WIDEN_ABOVE:
            continue
        for op in {function} | {op for op, inside in INSIDE.items() if function in inside}:
            if op in ops:
                out[op] = min(max(out.get(op, 0.0), float(worst)), CAP)
    return out
