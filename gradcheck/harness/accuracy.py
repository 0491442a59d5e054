"""Each engine's measured accuracy, as the rounding model uses it.

`gradcheck/power/engine_accuracy.py` measures every unary elementwise op of each engine in
each dtype against 50-digit mpmath values and writes the table shipped beside this module
(`python -m gradcheck.power.engine_accuracy --out gradcheck/harness/accuracy.json`). Where an
engine computes an op of a case more than an ulp or two off, its rounding bound is widened
by what was measured (`widened_ops`, harness/rounding.py): a difference explained by an
engine's own accuracy is not a FAIL. A unary op is widened element by element, by the error
measured near that element's input (its `curve`): torch's float32 gelu is 1e-4 off at -3.4
and exact at -1. Up to CAP ulps or REL_CAP relative error, whichever is larger: beyond that
the engine is wrong there, not inexact (torch's gelu is 100% off at -10 in float64), and its
comparisons still fail.
"""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

import reference_impls

from .. import dtypes as dt
from ..engines.base import constants

SHIPPED = Path(__file__).with_name("accuracy.json")
WIDEN_ABOVE = 2.0  # ulps: what the rounding model's "about an ulp" covers
CAP = 64.0  # ulps: the most an engine's op is forgiven, or REL_CAP where that is more
REL_CAP = 1e-2  # relative error: two digits right is inexact; none right is wrong
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


def widened_ops(engine: str, dtype: str, ops) -> dict[str, float | Curve]:
    """op -> how far `engine`'s forward of it in `dtype` was measured from the true value
    (in ulps, where the true value is a normal number: a flushed subnormal is an absolute
    error below tiny, not a relative one), for each of `ops` measured more than WIDEN_ABOVE
    ulps off; {} for an engine or dtype the shipped table does not name. A unary op: its
    `Curve`, the error near each input. `pow` (rows `pow^k`): the worst of its measured
    exponents, at most CAP; an op of INSIDE: the worst of the functions it computes, at
    most CAP."""
    measured = table().get(engine, {}).get(dtype, {})
    out: dict[str, float | Curve] = {}
    for name, row in measured.items():
        function = name.split("^")[0]
        worst = row.get("max_ulps_normal", row.get("max_ulps"))
        if worst is None or worst <= WIDEN_ABOVE:
            continue
        if function in ops and "curve" in row:
            out[function] = Curve(row["curve"], cap=max(CAP, REL_CAP / dt.eps(dtype)))
        for op in {function} | {op for op, inside in INSIDE.items() if function in inside}:
            known = out.get(op, 0.0)
            if op in ops and not isinstance(known, Curve):
                out[op] = min(max(known, float(worst)), CAP)
    return out


class Curve:
    """An op's measured error as a function of its input: `curve(x)` is, per element of
    `x`, the largest error measured in the grid's bin holding it, at most `cap` ulps (0
    outside the grid, and where it is within WIDEN_ABOVE)."""

    def __init__(self, curve: dict, cap: float):
        self.edges, self.cap = np.asarray(curve["edges"]), cap
        self.measured = np.asarray(curve["ulps"])
        # within WIDEN_ABOVE: the model's own rounding
        self.ulps = np.where(self.measured > WIDEN_ABOVE, np.minimum(self.measured, cap), 0.0)

    def __call__(self, x) -> np.ndarray:
        return self._read(self.ulps, x)

    def beyond_cap(self, x) -> np.ndarray:
        """Per element of `x`: the error measured near it where that is more than `cap`
        (the engine is wrong there, not inexact), else 0."""
        measured = self._read(self.measured, x)
        return np.where(measured > self.cap, measured, 0.0)

    def _read(self, per_bin: np.ndarray, x) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        at = np.clip(np.searchsorted(self.edges, x, side="right") - 1, 0, len(per_bin) - 1)
        inside = (x >= self.edges[0]) & (x <= self.edges[-1])
        return np.where(inside, per_bin[at], 0.0)


@dataclass(frozen=True)
class Fault:
    """An engine's op measured wrong (beyond what is forgiven) at an input a case gives it."""

    engine: str
    dtype: str
    op: str
    near: float  # the case's input to the op where the measured error is largest
    ulps: float

    def __str__(self) -> str:
        relative = min(self.ulps * dt.eps(self.dtype), 1.0)  # a value flushed to 0: all of it
        return (
            f"{self.engine}'s {self.dtype} {self.op} is measured {relative:.0%} off near "
            f"{self.near:.3g} (the engine accuracy table), more than is forgiven: "
            f"{self.engine} is wrong here"
        )


def measured_faults(engine: str, dtype: str, graph, inputs) -> list[Fault]:
    """Each op of `graph` whose measured curve in `engine` is beyond its cap at an input the
    case gives it (the inputs as the numpy reference's float64 forward computes them)."""
    if not table().get(engine, {}).get(dtype):  # your own code: nothing measured
        return []
    widened = widened_ops(engine, dtype, graph.ops())
    curves = {op: w for op, w in widened.items() if isinstance(w, Curve)}
    if not curves:
        return []
    env = {k: dt.as_float64(v) for k, v in inputs.items()}
    with np.errstate(all="ignore"):
        env = reference_impls.forward(
            graph, reference_impls.OPS, {**env, **constants(graph, np.float64)}
        )
    faults = []
    for node in graph.nodes:
        if node.op in curves:
            x = np.ravel(env[node.args[0]])
            beyond = curves[node.op].beyond_cap(x)
            if np.any(beyond):
                at = int(np.argmax(beyond))
                faults.append(Fault(engine, dtype, node.op, float(x[at]), float(beyond[at])))
    return faults
