"""Run cases through engines and judge them.

`run_case` is a pure function of a case, a dtype, the engines and the options, and
returns plain data (`CaseResult`), so that cases can later run in worker processes.
"""
from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from itertools import combinations
from typing import Callable

import numpy as np

from ..engines import EngineOutput, EngineSkip, as_output
from .compare import (ERROR, EXPECT, FAIL, FD, NONDIFF, NONFINITE, PASS, SKIP, VALUE, blame,
                      judge, tolerance_for)

MAX_JACOBIAN_ROWS = 4096


@dataclass
class RunOptions:
    fd_max_elements: int | None = None   # None: the fd engine's own default
    timeout: float | None = None         # seconds per case and dtype, in a worker process;
                                         # None: run in this process, with no time limit


@dataclass
class CaseResult:
    case: dict                           # one row of cases.csv
    comparisons: list[dict]              # rows of comparisons.csv
    engines: list[dict]                  # rows of engines.csv
    errors: dict = field(default_factory=dict)   # (param, a, b) -> element-wise |a - b|


def run_case(case, dtype: str, engines: list, options: RunOptions | None = None,
             announce: Callable[[str], None] | None = None) -> CaseResult:
    """`announce(engine name)` is called as each engine starts (a worker tells its parent
    which engine to blame when the time limit passes)."""
    options = options or RunOptions()
    start = time.perf_counter()
    arrays = case.arrays(dtype)
    outputs, engine_rows = {}, []
    for engine in engines:
        if announce is not None:
            announce(engine.name)
        row, output = _call(_configured(engine, case, options), case, arrays, dtype)
        engine_rows.append({"case": case.name, "dtype": dtype, **row})
        if output is not None:
            outputs[engine.name] = output
    expect = _expect_output(case)
    if expect is not None:
        outputs[EXPECT] = expect
    rows, errors = _compare_all(case, dtype, outputs)
    summary = _summarize(case, dtype, engine_rows, rows, outputs)
    summary["seconds"] = round(time.perf_counter() - start, 4)
    return CaseResult(summary, rows, engine_rows, errors)


def _configured(engine, case, options: RunOptions):
    """The fd engine's sample size may be set per run and per case."""
    limit = case.model.fd_max_elements or options.fd_max_elements
    if limit is None or not hasattr(engine, "max_elements"):
        return engine
    engine = copy.copy(engine)
    engine.max_elements = limit
    return engine


def _call(engine, case, arrays, dtype) -> tuple[dict, EngineOutput | None]:
    start = time.perf_counter()
    try:
        output = _run_engine(engine, case, arrays, dtype)
        _check_output(output, case)
        status, message = "ok", ""
    except EngineSkip as e:
        output, status, message = None, SKIP, str(e)
    except Exception as e:  # an engine's failure stays in its case
        output, status, message = None, ERROR, f"{type(e).__name__}: {e}"
    seconds = round(time.perf_counter() - start, 4)
    return {"engine": engine.name, "status": status, "seconds": seconds, "message": message}, output


def _run_engine(engine, case, arrays, dtype) -> EngineOutput:
    if not case.model.jacobian:
        return as_output(engine.vjp(case.graph, arrays, case.wrt, case.cotangent(dtype)))
    return _jacobian(engine, case, arrays, dtype)


def _jacobian(engine, case, arrays, dtype) -> EngineOutput:
    """The full Jacobian, one VJP per output element, stacked: (outputs, *input shape)."""
    shape = case.graph.output_shape
    size = int(np.prod(shape))
    if size > MAX_JACOBIAN_ROWS:
        raise EngineSkip(f"Jacobian of {size} rows exceeds {MAX_JACOBIAN_ROWS}")
    cotangents = np.eye(size, dtype=dtype).reshape((size, *shape))
    if hasattr(engine, "batched_vjp"):        # every row in one call (one compiled program)
        return as_output(engine.batched_vjp(case.graph, arrays, case.wrt, cotangents))
    rows = [as_output(engine.vjp(case.graph, arrays, case.wrt, c)) for c in cotangents]
    parts = [_stacked(rows, part) for part in ("grads", "grad_err", "checked", "kinks")]
    return EngineOutput(rows[0].value, *parts)


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
        if case.model.jacobian:
            expected = (int(np.prod(want)),) + expected
        if np.shape(output.grads[name]) != expected:
            raise ValueError(f"gradient for {name!r} has shape "
                             f"{list(np.shape(output.grads[name]))}, expected {list(expected)}")


def _expect_output(case) -> EngineOutput | None:
    expect = case.model.expect
    if expect is None:
        return None
    value = None if expect.value is None else np.asarray(expect.value, dtype=np.float64)
    return EngineOutput(value, {k: np.asarray(v, dtype=np.float64) for k, v in expect.grad.items()})


def _compare_all(case, dtype: str, outputs: dict[str, EngineOutput]):
    rows, errors = [], {}
    fd = outputs.get(FD)
    for param in [VALUE] + case.wrt:
        kinks = fd.kinks.get(param) if fd is not None else None
        for a, b in combinations(outputs, 2):
            pair = _pick(outputs[a], param), _pick(outputs[b], param)
            if pair[0] is None or pair[1] is None:
                continue
            j = judge(*pair, tolerance_for(dtype, (a, b), case.model.tolerance),
                      **_fd_extras(outputs, (a, b), param), kinks=kinks)
            rows.append(_row(case, dtype, param, a, b, j, pair[0]))
            if j.abs_err is not None:
                errors[(param, a, b)] = j.abs_err
    return rows, errors


def _pick(output: EngineOutput, param: str):
    return output.value if param == VALUE else output.grads.get(param)


def _fd_extras(outputs, pair, param) -> dict:
    if FD not in pair or param == VALUE:
        return {}
    fd = outputs[FD]
    return {"fd_err": fd.grad_err.get(param), "checked": fd.checked.get(param)}


def _row(case, dtype, param, a, b, j, array) -> dict:
    return {"case": case.name, "dtype": dtype, "param": param, "engine_a": a, "engine_b": b,
            "verdict": j.verdict, "max_abs_err": j.max_abs_err, "max_rel_err": j.max_rel_err,
            "tol_ratio": j.tol_ratio, "worst_index": j.worst_index, "atol": j.atol,
            "rtol": j.rtol, "value_a": j.value_a, "value_b": j.value_b, "fd_err": j.fd_err,
            "checked": j.checked, "elements": int(np.size(array)), "kinks": j.kinks,
            "message": j.message}


def _summarize(case, dtype, engine_rows, rows, outputs) -> dict:
    errored = [r["engine"] for r in engine_rows if r["status"] == ERROR]
    skipped = [r["engine"] for r in engine_rows if r["status"] == SKIP]
    bad = {(r["engine_a"], r["engine_b"]) for r in rows if r["verdict"] in (FAIL, NONFINITE)}
    verdicts = {r["verdict"] for r in rows}
    verdict, message = _case_verdict(errored, verdicts, outputs, engine_rows, rows)
    blamed = errored or blame(list(outputs), bad)
    return {"case": case.name, "dtype": dtype, "verdict": verdict, "blame": " ".join(blamed),
            "seconds": 0.0, "message": message, "family": case.family,
            "tags": " ".join(case.tags), "file": case.file,
            "engines": " ".join(o for o in outputs if o != EXPECT),
            "skipped": " ".join(skipped), "comparisons": len(rows),
            "failed": sum(r["verdict"] != PASS for r in rows)}


def _case_verdict(errored, verdicts, outputs, engine_rows, rows) -> tuple[str, str]:
    if errored:
        first = next(r for r in engine_rows if r["status"] == ERROR)
        return ERROR, f"{first['engine']}: {first['message']}"
    for verdict in (NONFINITE, FAIL):
        if verdict in verdicts:
            return verdict, _first_message(rows, verdict)
    kinks = max((r["kinks"] for r in rows), default=0)
    if NONDIFF in verdicts or kinks:
        return NONDIFF, f"input on a non-differentiable point ({kinks} element(s))"
    if len(outputs) < 2:
        return SKIP, "fewer than two engines produced results"
    return PASS, ""


def _first_message(rows, verdict) -> str:
    r = max((r for r in rows if r["verdict"] == verdict), key=lambda r: r["tol_ratio"])
    return (f"{r['param']}: {r['engine_a']} vs {r['engine_b']}: {r['message']} "
            f"(tol ratio {r['tol_ratio']:.3g} at {r['worst_index']})")


def error_result(case, dtype: str, engines: list, message: str, culprit: str | None,
                 done: tuple[str, ...] = ()) -> CaseResult:
    """An ERROR result for a case that produced none (it timed out, or its worker died):
    `culprit` is the engine that was running, `done` the engines that had finished."""
    rows = [{"case": case.name, "dtype": dtype, "engine": e.name, **_status(e.name, culprit,
                                                                            done, message)}
            for e in engines]
    summary = {"case": case.name, "dtype": dtype, "verdict": ERROR, "blame": culprit or "",
               "seconds": 0.0, "message": message, "family": case.family,
               "tags": " ".join(case.tags), "file": case.file, "engines": "",
               "skipped": "", "comparisons": 0, "failed": 0}
    return CaseResult(summary, [], rows)


def _status(name: str, culprit: str | None, done: tuple[str, ...], message: str) -> dict:
    if name == culprit:
        return {"status": ERROR, "seconds": 0.0, "message": message}
    if name in done:
        return {"status": "ok", "seconds": 0.0, "message": ""}
    return {"status": SKIP, "seconds": 0.0, "message": "not run: the case was stopped"}
