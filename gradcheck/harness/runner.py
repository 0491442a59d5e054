"""Run cases through engines and judge them.

`run_case` is a pure function of a case, a dtype, the engines and the options, and
returns plain data (`CaseResult`), so that cases can run in worker processes.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable

import numpy as np

from ..engines import EngineOutput, EngineSkip, Settings, as_output, call_vjp
from . import taylor
from .compare import (EXPECT, VALUE, blame, disagrees, judge, judge_directions, tolerance_for,
                      with_directions)
from .rounding import RoundingBound
from .rows import CaseRow, ComparisonRow, EngineRow, TaylorRow
from .verdict import Verdict

OK = "ok"                   # engines.csv status of an engine that gave results


@dataclass
class RunOptions:
    fd_max_elements: int | None = None   # None: the fd engine's own default
    fd_coverage: str | None = None       # auto, full or directional; None: the engine's own
    timeout: float | None = None         # seconds per case and dtype, in a worker process;
                                         # None or 0: run in this process, with no time limit
    taylor: bool = True                  # the Taylor-remainder test of each engine


@dataclass
class CaseResult:
    case: CaseRow
    comparisons: list[ComparisonRow]
    engines: list[EngineRow]
    errors: dict = field(default_factory=dict)   # (param, a, b) -> element-wise |a - b|
    taylor: list[TaylorRow] = field(default_factory=list)
    curves: dict = field(default_factory=dict)   # engine -> rows: eps, then R per direction


def run_case(case, dtype: str, engines: list, options: RunOptions | None = None,
             announce: Callable[[str], None] | None = None) -> CaseResult:
    """`announce(engine name)` is called as each engine starts (a worker tells its parent
    which engine to blame when the time limit passes)."""
    options = options or RunOptions()
    start = time.perf_counter()
    settings = Settings(dtype, case.fd_max_elements or options.fd_max_elements,
                        case.fd_coverage or options.fd_coverage)
    arrays = case.arrays(dtype)
    outputs, engine_rows = {}, []
    for engine in engines:
        if announce is not None:
            announce(engine.name)
        row, output = _call(engine, case, arrays, settings)
        engine_rows.append(row)
        if output is not None:
            outputs[engine.name] = output
    expect = _expect_output(case)
    if expect is not None:
        outputs[EXPECT] = expect
    bounds = _rounding_bounds(case, arrays, settings)
    rows, errors = _compare_all(case, dtype, outputs, bounds)
    checks = _taylor(case, arrays, dtype, outputs, bounds) if options.taylor else []
    summary = _summarize(case, dtype, engine_rows, rows, outputs, checks)
    summary.seconds = round(time.perf_counter() - start, 4)
    return CaseResult(summary, rows, engine_rows, errors,
                      [_taylor_row(case.name, dtype, t) for t in checks],
                      {t.engine: np.vstack([t.eps] + t.remainders) for t in checks})


def _rounding_bounds(case, arrays, settings: Settings) -> EngineOutput | None:
    """Each exact engine's per-element rounding bound; None where the case sets its own
    tolerance (it wins) or the numpy reference cannot bound every element."""
    if case.tolerance is not None:
        return None
    try:
        with np.errstate(all="ignore"):
            bounds = _run_engine(RoundingBound(case.name), case, arrays, settings)
    except Exception:       # an op the reference lacks: the fixed tolerances still judge
        return None
    finite = all(np.isfinite(b).all() for b in [bounds.value, *bounds.grads.values()])
    return bounds if finite else None     # a NaN bound would pass anything


def _taylor(case, arrays, dtype, outputs, bounds) -> list:
    try:
        return taylor.check_engines(case, arrays, case.cotangent(dtype), outputs, bounds)
    except Exception:       # the numpy forward cannot evaluate the case: no evidence
        return []


def _taylor_row(case: str, dtype: str, t) -> TaylorRow:
    lo, hi = t.windows[int(np.nanargmin(t.rates))] if np.isfinite(t.rate) else (0, 0)
    return TaylorRow(case, dtype, t.engine, t.rate, t.verdict,
                     " ".join(f"{r:.3f}" for r in t.rates),
                     float(t.eps[lo]) if hi > lo else np.nan,
                     float(t.eps[hi - 1]) if hi > lo else np.nan, t.message)


def _call(engine, case, arrays, settings: Settings) -> tuple[EngineRow, EngineOutput | None]:
    start = time.perf_counter()
    try:
        output = _run_engine(engine, case, arrays, settings)
        _check_output(output, case)
        status, message = OK, ""
    except EngineSkip as e:
        output, status, message = None, Verdict.SKIP, str(e)
    except Exception as e:  # an engine's failure stays in its case
        output, status, message = None, Verdict.ERROR, f"{type(e).__name__}: {e}"
    seconds = round(time.perf_counter() - start, 4)
    return EngineRow(case.name, settings.dtype, engine.name, status, seconds, message), output


def _run_engine(engine, case, arrays, settings: Settings) -> EngineOutput:
    if not case.jacobian:
        return call_vjp(engine, case.graph, arrays, case.wrt, case.cotangent(settings.dtype),
                        settings)
    return _jacobian(engine, case, arrays, settings)


def _jacobian(engine, case, arrays, settings: Settings) -> EngineOutput:
    """The full Jacobian, one VJP per output element, stacked: (outputs, *input shape).
    The loader bounds the number of rows."""
    shape = case.graph.output_shape
    size = int(np.prod(shape))
    cotangents = np.eye(size, dtype=settings.dtype).reshape((size, *shape))
    if hasattr(engine, "batched_vjp"):        # every row in one call (one compiled program)
        return as_output(engine.batched_vjp(case.graph, arrays, case.wrt, cotangents))
    rows = [call_vjp(engine, case.graph, arrays, case.wrt, c, settings) for c in cotangents]
    parts = [_stacked(rows, part)
             for part in ("grads", "grad_err", "checked", "kinks", "kink_distance")]
    # one row's directional checks do not apply to the stacked rows: elements only
    return EngineOutput(rows[0].value, *parts, coverage=rows[0].coverage)


def _stacked(rows: list[EngineOutput], part: str) -> dict:
    """One field of several outputs, each array stacked along a new first axis."""
    return {k: np.stack([getattr(r, part)[k] for r in rows]) for k in getattr(rows[0], part)}


def _check_output(output: EngineOutput, case) -> None:
    want = case.graph.output_shape
    if np.shape(output.value) != want:
        raise ValueError(f"output value has shape {list(np.shape(output.value))}, expected {list(want)}")
    for name in case.wrt:
        if name not in output.grads:
            raise ValueError(f"no gradient returned for {name!r}")
        expected = case.graph.inputs[name].shape
        if case.jacobian:
            expected = (int(np.prod(want)),) + expected
        if np.shape(output.grads[name]) != expected:
            raise ValueError(f"gradient for {name!r} has shape "
                             f"{list(np.shape(output.grads[name]))}, expected {list(expected)}")


def _expect_output(case) -> EngineOutput | None:
    expected = case.expected()
    return None if expected is None else EngineOutput(*expected)


def _compare_all(case, dtype: str, outputs: dict[str, EngineOutput], bounds=None):
    rows, errors = [], {}
    for param in [VALUE] + case.wrt:
        kinks = _kinks(outputs.values(), param)
        for a, b in combinations(outputs, 2):
            pair = _pick(outputs[a], param), _pick(outputs[b], param)
            if pair[0] is None or pair[1] is None:
                continue
            estimate = _estimate(outputs[a], outputs[b], param)
            tol = tolerance_for(dtype, estimate is not None, case.tolerance, bounds is not None)
            j = judge(*pair, tol, **_estimate_extras(estimate, param), kinks=kinks,
                      round_err=_pair_rounding(bounds, (outputs[a], outputs[b]), param))
            # directions are judged as fd judges them: the fixed tables, no rounding bound
            j = _directional(j, estimate, (outputs[a], outputs[b]), param,
                             tolerance_for(dtype, estimate is not None, case.tolerance))
            rows.append(_row(case.name, dtype, param, a, b, j, pair[0],
                             _coverage(estimate, param)))
            if j.abs_err is not None:
                errors[(param, a, b)] = j.abs_err
    return rows, errors


def _pair_rounding(bounds: EngineOutput | None, pair, param: str):
    """Each exact side of the pair may carry its rounding bound; an estimate's (fd's) error
    is its own."""
    if bounds is None:
        return None
    exact = sum(1 for o in pair if not (o.numerical and param in o.grad_err))
    return exact * _pick(bounds, param)


def _pick(output: EngineOutput, param: str):
    return output.value if param == VALUE else output.grads.get(param)


def _kinks(outputs, param: str):
    """Elements that some numerical estimate found on a non-differentiable point."""
    found = [o.kinks[param] for o in outputs if param in o.kinks]
    return np.logical_or.reduce(found) if found else None


def _estimate(a: EngineOutput, b: EngineOutput, param: str) -> EngineOutput | None:
    """The side of a gradient pair that is a numerical estimate (its error is part of the
    tolerance, and only its checked elements are compared), if any."""
    if param == VALUE:
        return None
    return next((o for o in (a, b) if o.numerical and param in o.grad_err), None)


def _estimate_extras(estimate: EngineOutput | None, param: str) -> dict:
    if estimate is None:
        return {}
    return {"fd_err": estimate.grad_err.get(param), "checked": estimate.checked.get(param)}


def _directional(j, estimate: EngineOutput | None, pair, param: str, tol):
    """Where the estimate covered `param` by directions, the other side's <g, v> must match."""
    found = estimate.directions.get(param) if estimate is not None else None
    other = next((o for o in pair if o is not estimate), None)
    if found is None or other is None or other.numerical:
        return j
    return with_directions(j, judge_directions(other.grads[param], found, tol))


def _coverage(estimate: EngineOutput | None, param: str) -> tuple[str, int, float]:
    """How the estimate covered `param`, its number of directions, the farthest kink."""
    if estimate is None:
        return "full", 0, float("nan")
    found, distance = estimate.directions.get(param), estimate.kink_distance.get(param)
    flagged = np.asarray(estimate.kinks.get(param, False)) & estimate.checked.get(param, True)
    farthest = np.max(distance[flagged]) if distance is not None and flagged.any() else np.nan
    return (estimate.coverage.get(param, "full"), 0 if found is None else len(found.slopes),
            float(farthest))


def _row(case: str, dtype: str, param: str, a: str, b: str, j, array, covered) -> ComparisonRow:
    coverage, directions, kink_distance = covered
    return ComparisonRow(case, dtype, param, a, b, j.verdict, j.max_abs_err, j.max_rel_err,
                         j.tol_ratio, j.worst_index, j.atol, j.rtol, j.value_a, j.value_b,
                         j.fd_err, j.round_err, j.bound, j.checked, int(np.size(array)),
                         j.kinks, j.message, coverage, directions, kink_distance)


def _summarize(case, dtype, engine_rows, rows, outputs, checks=()) -> CaseRow:
    errored = [r.engine for r in engine_rows if r.status == Verdict.ERROR]
    skipped = [r.engine for r in engine_rows if r.status == Verdict.SKIP]
    bad = {(r.engine_a, r.engine_b) for r in rows if disagrees(r.verdict, r.message)
           and not _overflow_of_the_dtype(r, outputs)}
    verdict, message = _case_verdict(errored, {r.verdict for r in rows}, outputs,
                                     engine_rows, rows)
    suspects = [t.engine for t in checks if t.verdict == Verdict.FAIL]
    blamed = errored or blame(list(outputs), bad, suspects)
    return _case_row(case, dtype, verdict, " ".join(blamed), message,
                     engines=" ".join(o for o in outputs if o != EXPECT),
                     skipped=" ".join(skipped), comparisons=len(rows),
                     failed=sum(r.verdict != Verdict.PASS for r in rows))


def _overflow_of_the_dtype(row, outputs) -> bool:
    """Non-finite numbers on the exact side of a pair with a finite estimate, in the same
    places in another exact engine: the estimate evaluates in float64, so they come from
    the case's dtype (exp overflowing in float32), not from either engine. One engine alone
    with them (a user's backward against fd) stays the one to blame."""
    if row.verdict != Verdict.NONFINITE or row.param == VALUE:
        return False
    pair = outputs[row.engine_a], outputs[row.engine_b]
    estimate = _estimate(*pair, row.param)
    exact = next((o for o in pair if not o.numerical), None)
    if estimate is None or exact is None:
        return False
    finite = np.isfinite(exact.grads[row.param])
    checked = estimate.grads[row.param][estimate.checked.get(row.param, True)]
    if finite.all() or not np.isfinite(checked).all():
        return False
    return any(o is not exact and not o.numerical and row.param in o.grads
               and np.array_equal(np.isfinite(o.grads[row.param]), finite)
               for o in outputs.values())


def _case_row(case, dtype, verdict, blamed, message, engines="", skipped="", comparisons=0,
              failed=0) -> CaseRow:
    return CaseRow(case.name, dtype, verdict, blamed, 0.0, message, case.family,
                   " ".join(case.tags), case.file, engines, skipped, comparisons, failed)


def _case_verdict(errored, verdicts, outputs, engine_rows, rows) -> tuple[Verdict, str]:
    if errored:
        first = next(r for r in engine_rows if r.status == Verdict.ERROR)
        return Verdict.ERROR, f"{first.engine}: {first.message}"
    for verdict in (Verdict.NONFINITE, Verdict.FAIL):
        if verdict in verdicts:
            return verdict, _first_message(rows, verdict)
    kinks = max((r.kinks for r in rows), default=0)
    if Verdict.NONDIFF in verdicts or kinks:
        return Verdict.NONDIFF, f"input on a non-differentiable point ({kinks} element(s))"
    if len(outputs) < 2:
        return Verdict.SKIP, "fewer than two engines produced results"
    return Verdict.PASS, ""


def _first_message(rows, verdict) -> str:
    r = max((r for r in rows if r.verdict == verdict), key=lambda r: r.tol_ratio)
    where = list(r.worst_index) if r.worst_index is not None else "-"
    return (f"{r.param}: {r.engine_a} vs {r.engine_b}: {r.message} "
            f"(tol ratio {r.tol_ratio:.3g} at {where})")


def error_result(case, dtype: str, engines: list, message: str, culprit: str | None,
                 done: tuple[str, ...] = ()) -> CaseResult:
    """An ERROR result for a case that produced none (it timed out, or its worker died):
    `culprit` is the engine that was running, `done` the engines that had finished."""
    rows = [EngineRow(case.name, dtype, e.name, *_status(e.name, culprit, done, message))
            for e in engines]
    return CaseResult(_case_row(case, dtype, Verdict.ERROR, culprit or "", message), [], rows)


def _status(name: str, culprit: str | None, done: tuple[str, ...], message: str) -> tuple:
    if name == culprit:
        return Verdict.ERROR, 0.0, message
    if name in done:
        return OK, 0.0, ""
    return Verdict.SKIP, 0.0, "not run: the case was stopped"
