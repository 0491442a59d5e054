"""The comparator: one helper judges every pair of engines, forward value first, then each
gradient, element by element, against dtype- and pair-aware tolerances.

An element passes when |a - b| <= atol + rtol * max(|a|, |b|) (+ 2 * fd error estimate
when one side is a numerical estimate such as `fd`); the tolerance ratio is the worst
|a - b| / that bound, and at most 1 passes. `atol` is stated relative to the larger
magnitude in the two tensors, so that large sums do not fail on rounding alone; the rows
report the absolute value used.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from itertools import combinations

import numpy as np

from ..dtypes import DTYPES, info
from .rows import ComparisonRow
from .verdict import Verdict

EXPECT = "expect"  # the source name of a case's hand-written values
VALUE = "(value)"  # the `param` of forward-value rows: cannot clash with an input


@dataclass(frozen=True)
class Tolerance:
    rtol: float
    atol: float  # relative to the larger magnitude in the two tensors
    floor: float = 0.0  # the least absolute atol (see SMALLEST_NORMAL)


# Below its smallest normal number a dtype keeps few digits, and an engine may flush such
# values to zero (XLA does on CPU): a difference smaller than that is no evidence.
SMALLEST_NORMAL = {d: info(d).tiny for d in DTYPES}


# A low dtype's fixed tolerances, in units of its eps: the smallest powers of two under which
# every catalog case passes in bfloat16 and in float16 without rounding bounds (worst ratio
# 0.82). float32's 1e-4 and 2e-5 are some 840 and 170 of its eps: as many of bfloat16's
# would pass anything (rtol 6.5).
LOW_IN_EPS = Tolerance(rtol=16, atol=8)
LOW = {
    d: Tolerance(rtol=LOW_IN_EPS.rtol * info(d).eps, atol=LOW_IN_EPS.atol * info(d).eps)
    for d in DTYPES
    if info(d).low
}
# Exact pairs (backprop, autograd, hand values) agree to near machine precision; pairs with
# a numerical estimate (`fd`) are judged against its own error estimate on top of these.
EXACT = {
    "float64": Tolerance(rtol=1e-7, atol=1e-9),
    "float32": Tolerance(rtol=1e-4, atol=2e-5),
    **LOW,
}
WITH_FD = {
    "float64": Tolerance(rtol=1e-6, atol=1e-8),
    "float32": Tolerance(rtol=1e-4, atol=2e-5),
    **LOW,
}
FD_ERR_FACTOR = 2.0
# When each exact engine's rounding bound is known (harness/rounding.py), it carries the
# comparison: exact pairs keep only a floor of a few units in the last place of the element
# and of the tensor's largest one (an engine may compute an element from a quantity of the
# tensor's scale: x - logsumexp(x) as x - (max + log(sum))), and pairs with fd keep fd's
# float64 tolerance in every dtype (fd differences in float64; the other side's rounding is
# in its bound). The fixed tables above serve a case that sets its own `tolerance`.
ULPS = 4
KNOWN_ROUNDING = {d: Tolerance(rtol=ULPS * info(d).eps, atol=ULPS * info(d).eps) for d in DTYPES}


# With the rounding bounds known, a pair with fd keeps fd's float64 tolerance, but its rtol at
# least eps: the exact side was rounded to its dtype at the end, by up to eps/2 of each element,
# a step its bound may not hold (an op's rule that adds in place, np.add.at, rounds unseen);
# float64's and float32's eps are below fd's 1e-6, which covers it for them.
FD_KNOWN_ROUNDING = {
    d: replace(WITH_FD["float64"], rtol=max(WITH_FD["float64"].rtol, info(d).eps)) for d in DTYPES
}


def tolerance_for(
    dtype: str, numerical: bool, override=None, rounding_known: bool = False
) -> Tolerance:
    """`numerical`: one side of the pair is an estimate with its own error (fd).
    `rounding_known`: the exact sides' rounding bounds are part of the comparison. Every
    tolerance keeps the floor of the run's dtype."""
    return replace(
        _table_tolerance(dtype, numerical, override, rounding_known), floor=SMALLEST_NORMAL[dtype]
    )


def _table_tolerance(dtype: str, numerical: bool, override, rounding_known: bool) -> Tolerance:
    if override is None and rounding_known:
        return (FD_KNOWN_ROUNDING if numerical else KNOWN_ROUNDING)[dtype]
    base = (WITH_FD if numerical else EXACT)[dtype]
    if override is None:
        return base
    return Tolerance(
        rtol=override.rtol if override.rtol is not None else base.rtol,
        atol=override.atol if override.atol is not None else base.atol,
    )


@dataclass
class Judgement:
    verdict: Verdict
    max_abs_err: float
    max_rel_err: float
    tol_ratio: float
    worst_index: tuple | None  # None when the shapes differ
    value_a: float
    value_b: float
    atol: float
    rtol: float
    fd_err: float
    round_err: float  # the rounding bound at the worst element (both sides together)
    bound: float  # all that |a - b| may be at the worst element
    checked: int
    kinks: int
    message: str
    abs_err: np.ndarray | None = None  # element-wise, kept for heatmaps of failures
    failing: np.ndarray | None = None  # element-wise: out of tolerance (fd's second look)


def judge(a, b, tol: Tolerance, fd_err=None, checked=None, kinks=None, round_err=None) -> Judgement:
    """Compare two arrays: shape first, then finiteness, then values (masked by `checked`).
    `round_err`: per element, the rounding error that the pair's exact sides may carry."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        return _shape_mismatch(a, b, tol)
    mask = None if checked is None else np.asarray(checked, bool)
    mask = None if mask is None or mask.all() else mask  # None: every element counts
    kinks = (
        np.zeros(a.shape, bool) if kinks is None else _masked(np.asarray(kinks, bool), mask, False)
    )
    err = np.zeros(a.shape) if fd_err is None else _masked(fd_err, mask, 0.0)
    rounding = np.broadcast_to(0.0 if round_err is None else round_err, a.shape)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):  # NaN/Inf are verdicts
        diff, rel, ratio, atol, bound = _errors(a, b, tol, err, mask, rounding)
    worst = _worst(ratio)
    verdict, message = _verdict(a, b, mask, ratio, kinks)
    return Judgement(
        verdict,
        _max(diff),
        _max(rel),
        _max(ratio),
        worst,
        _at(a, worst),
        _at(b, worst),
        atol,
        tol.rtol,
        _max(err),
        _at(rounding, worst),
        _at(bound, worst),
        a.size if mask is None else int(mask.sum()),
        int(kinks.sum()),
        message,
        abs_err=_masked(diff, mask, np.nan) if verdict != Verdict.PASS else None,
        failing=ratio > 1 if verdict != Verdict.PASS else None,
    )


def _masked(x, mask, fill):
    """x where `mask`, `fill` elsewhere; x itself where every element counts (mask None)."""
    return np.asarray(x) if mask is None else np.where(mask, x, fill)


@dataclass
class DirectionalJudgement:
    tol_ratio: float  # the worst |<g, v> - J v| / bound over the directions
    failing: int  # directions out of tolerance
    count: int  # directions compared (those without a kink along them)


def judge_directions(g, directions, tol: Tolerance) -> DirectionalJudgement:
    """A gradient g against a numerical estimate's directional derivatives J v (`Directions`).
    The bound is the element-wise tolerance carried through the dot product, so that a g
    within tolerance at every element cannot fail here: atol * sum|v| + rtol * sum|g v|,
    plus twice the estimate's own error."""
    g = np.asarray(g, dtype=np.float64)
    v = np.asarray(directions.vectors, dtype=np.float64)
    smooth = ~np.asarray(directions.kinks, bool)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.abs(np.tensordot(v, g, axes=g.ndim) - directions.slopes)
        atol = max(tol.atol * float(np.max(np.abs(g), initial=0)), tol.floor) * np.abs(v).reshape(
            len(v), -1
        ).sum(1)
        bound = (
            atol
            + tol.rtol * np.tensordot(np.abs(v), np.abs(g), axes=g.ndim)
            + FD_ERR_FACTOR * directions.err
        )
        ratio = np.where(diff == 0, 0.0, np.nan_to_num(diff / bound, nan=np.inf))
    ratio = np.where(smooth, ratio, 0.0)
    return DirectionalJudgement(
        float(np.max(ratio, initial=0)), int(np.sum(ratio > 1)), int(smooth.sum())
    )


def with_directions(j: Judgement, d: DirectionalJudgement) -> Judgement:
    """A judgement of sampled elements, completed by the directional checks."""
    if not d.failing:
        return replace(j, tol_ratio=max(j.tol_ratio, d.tol_ratio))
    failed = f"{d.failing} of {d.count} direction(s) out of tolerance"
    if j.verdict in (Verdict.PASS, Verdict.NONDIFF):
        return replace(j, verdict=Verdict.FAIL, message=failed, tol_ratio=d.tol_ratio)
    return replace(j, message=f"{j.message}; {failed}", tol_ratio=max(j.tol_ratio, d.tol_ratio))


def _errors(a, b, tol: Tolerance, err, mask, rounding):
    """Element-wise |a - b|, relative error, tolerance ratio and bound, and the absolute
    atol used."""
    magnitude = np.maximum(np.abs(a), np.abs(b))
    diff = _masked(np.abs(a - b), mask, 0.0)
    atol = max(tol.atol * float(np.max(_masked(magnitude, mask, 0), initial=0)), tol.floor)
    bound = atol + tol.rtol * magnitude + FD_ERR_FACTOR * err + rounding
    ratio = _masked(np.where(diff == 0, 0.0, diff / bound), mask, 0.0)
    rel = _masked(diff / np.maximum(magnitude, 1e-300), mask, 0.0)
    return diff, rel, ratio, atol, bound


def _worst(ratio: np.ndarray) -> tuple[int, ...]:
    if not ratio.size:
        return ()
    flat = int(np.argmax(np.where(np.isnan(ratio), np.inf, ratio)))
    return tuple(int(i) for i in np.unravel_index(flat, ratio.shape))


def _at(x: np.ndarray, index: tuple) -> float:
    return float(x[index]) if x.size else float("nan")


def _verdict(a, b, mask, ratio, kinks) -> tuple[Verdict, str]:
    finite = np.isfinite(a) & np.isfinite(b)
    mask = np.ones(a.shape, bool) if mask is None else mask
    if not np.all(finite[mask]):
        both = "the same in both" if _same_nonfinite(a, b, mask) else "not the same in both"
        return Verdict.NONFINITE, f"{int((~finite & mask).sum())} non-finite element(s), {both}"
    failing = ratio > 1
    if not failing.any():
        return Verdict.PASS, ""
    if not (failing & ~kinks).any():
        return Verdict.NONDIFF, f"differs only at {int(kinks.sum())} non-differentiable point(s)"
    return Verdict.FAIL, f"{int(failing.sum())} of {int(mask.sum())} element(s) out of tolerance"


def _same_nonfinite(a, b, mask) -> bool:
    """NaN where the other has NaN, the same infinity where it has one."""
    odd = mask & ~(np.isfinite(a) & np.isfinite(b))
    return bool(np.array_equal(a[odd], b[odd], equal_nan=True))


def disagrees(verdict: str, message: str) -> bool:
    """Whether a pair's row is evidence against one of its two sources: a FAIL, or
    non-finite numbers that the other source does not share (shared ones are the case's)."""
    return verdict == Verdict.FAIL or (verdict == Verdict.NONFINITE and "not the same" in message)


def _shape_mismatch(a, b, tol) -> Judgement:
    return Judgement(
        Verdict.FAIL,
        np.nan,
        np.nan,
        np.inf,
        None,
        np.nan,
        np.nan,
        0.0,
        tol.rtol,
        0.0,
        0.0,
        0.0,
        0,
        0,
        f"shapes differ: {list(a.shape)} vs {list(b.shape)}",
    )


def _max(x) -> float:
    """The largest non-NaN element; 0 when there is none."""
    x = np.asarray(x, dtype=np.float64)
    largest = np.fmax.reduce(x, axis=None) if x.size else np.nan  # fmax skips NaN
    return 0.0 if np.isnan(largest) else float(largest)


def blame(engines: list[str], disagreeing: set[tuple[str, str]], suspects=()) -> list[str]:
    """The smallest set of engines whose removal leaves the rest agreeing (a minimum vertex
    cover of the disagreement graph). Several equally small sets: the ones holding the most
    `suspects` (engines that failed a test of their own, the Taylor test), so that of two
    engines that disagree the one whose gradient does not converge is named; where that
    cannot tell them apart either, their union."""
    if not disagreeing:
        return []
    for size in range(1, len(engines) + 1):
        covers = [
            set(c)
            for c in combinations(engines, size)
            if all(a in c or b in c for a, b in disagreeing)
        ]
        if covers:
            most = max(len(c & set(suspects)) for c in covers)
            best = [c for c in covers if len(c & set(suspects)) == most]
            return sorted(set().union(*best), key=engines.index)
    return list(engines)


def comparison_row(
    case: str, dtype: str, param: str, pair, j: Judgement, elements, covered=None, product="vjp"
) -> ComparisonRow:
    """A judgement as its comparisons.csv row. `covered`: how a numerical side covered the
    input (coverage, its directions, the farthest kink; default: every element, none)."""
    coverage, directions, kink_distance = covered or ("full", 0, float("nan"))
    return ComparisonRow(
        case, dtype, param, pair[0], pair[1], j.verdict, j.max_abs_err, j.max_rel_err, j.tol_ratio,
        j.worst_index, j.atol, j.rtol, j.value_a, j.value_b, j.fd_err, j.round_err, j.bound,
        j.checked, int(elements), j.kinks, j.message, coverage, directions, kink_distance,
        product,
    )  # fmt: skip
