"""Run cases through engines and judge them.

`run_case` is a pure function of a case, a dtype, the engines and the options, and
returns plain data (`CaseResult`), so that cases can run in worker processes.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from itertools import combinations

import numpy as np

from .. import dtypes as dt
from ..engines import EngineOutput, EngineSkip, Settings, as_output, call_vjp
from ..engines.base import UserCodeError
from ..engines.own.engine import jiggle
from . import products, taylor
from .accuracy import measured_faults, widened_ops
from .compare import (
    EXPECT,
    VALUE,
    blame,
    comparison_row,
    disagrees,
    judge,
    judge_directions,
    tolerance_for,
    with_directions,
)
from .rounding import ENGINE_FACTOR, RoundingBound, root_mean_square
from .rows import HVP, JVP, VJP, CaseRow, ComparisonRow, EngineRow, TaylorRow, error_key
from .verdict import Verdict

OK = "ok"  # engines.csv status of an engine that gave results


@dataclass
class RunOptions:
    fd_max_elements: int | None = None  # None: the fd engine's own default
    fd_coverage: str | None = None  # auto, full or directional; None: the engine's own
    timeout: float | None = None  # seconds per case and dtype, in a worker process;
    # None or 0: run in this process, with no time limit
    taylor: bool = True  # the Taylor-remainder test of each engine
    modes: list[str] | None = None  # rev and/or fwd for every case; None: each case's own
    order: int | None = None  # 2: Hessian-vector products too; None: each case's own
    # the rounding bounds, kept by (case, dtype, product, engines) between runs of the same
    # cases (mutation testing: they come from the unmutated reference, whatever the mutant)
    bounds_memo: dict | None = None


@dataclass
class CaseResult:
    case: CaseRow
    comparisons: list[ComparisonRow]
    engines: list[EngineRow]
    errors: dict = field(default_factory=dict)  # (param, a, b) -> element-wise |a - b|
    taylor: list[TaylorRow] = field(default_factory=list)
    curves: dict = field(default_factory=dict)  # engine -> rows: eps, then R per direction
    faults: list = field(default_factory=list)  # a blamed engine's ops measured wrong here


def run_case(
    case,
    dtype: str,
    engines: list,
    options: RunOptions | None = None,
    announce: Callable[[str], None] | None = None,
) -> CaseResult:
    """`announce(engine name)` is called as each engine starts (a worker tells its parent
    which engine to blame when the time limit passes)."""
    options = options or RunOptions()
    start = time.perf_counter()
    settings = Settings(
        dtype,
        case.fd_max_elements or options.fd_max_elements,
        case.fd_coverage or options.fd_coverage,
    )
    arrays = case.arrays(dtype)
    checked = products.wanted(case, options.modes, options.order)
    tangents = case.tangents(dtype) if checked != [VJP] else {}
    runs = {
        p: _product_run(p, case, arrays, settings, engines, announce, tangents, options)
        for p in checked
    }
    for run in runs.values():
        _second_look_again(run, case, arrays, dtype, engines, tangents)
    vjp = runs.get(VJP) or ProductRun()
    rows = [row for run in runs.values() for row in run.rows]
    if JVP in runs and VJP in runs:
        bounds = {p: run.bounds for p, run in runs.items()}
        rows += products.adjoint_rows(case, dtype, vjp.outputs, runs[JVP].outputs, bounds, tangents)
    shaped = {k: o for k, o in vjp.outputs.items() if _shaped(o, case)}
    model = vjp.bounds and vjp.bounds.model
    hessians = _hessians(case, arrays, dtype, engines, runs.get(HVP))
    checks = _taylor(case, arrays, dtype, shaped, model, hessians) if options.taylor else []
    forward_names = {e.name: getattr(e, "forward_name", e.name) for e in engines}
    every = {name: o for run in runs.values() for name, o in run.outputs.items()}
    engine_rows = [row for run in runs.values() for row in run.engine_rows]
    summary = _summarize(case, dtype, engine_rows, rows, vjp.outputs, checks, forward_names, every)
    summary.message = summary.message or _rounding_note(vjp.outputs, model, dtype, forward_names)
    faults = _faults_of_the_blamed(case, arrays, dtype, summary)
    summary.seconds = round(time.perf_counter() - start, 4)
    return CaseResult(
        summary,
        rows,
        engine_rows,
        {key: e for run in runs.values() for key, e in run.errors.items()},
        [_taylor_row(case.name, dtype, t) for t in checks],
        {error_key(t.product, t.engine): np.vstack([t.eps] + t.remainders) for t in checks},
        faults,
    )


def _faults_of_the_blamed(case, arrays, dtype: str, summary: CaseRow) -> list:
    """A FAIL's blamed engines' ops that the accuracy table measures wrong at this case's
    inputs, each said in the message: the engine, not your code, is off there."""
    if summary.verdict != Verdict.FAIL:
        return []
    faults = [
        f for e in summary.blame.split() for f in measured_faults(e, dtype, case.graph, arrays)
    ]
    summary.message = "; ".join(filter(None, [summary.message, *map(str, faults)]))
    return faults


@dataclass
class ProductRun:
    """One product (VJP, JVP or HVP) of every engine that gives it, and its comparisons."""

    outputs: dict[str, EngineOutput] = field(default_factory=dict)
    engine_rows: list[EngineRow] = field(default_factory=list)
    bounds: Bounds | None = None
    rows: list[ComparisonRow] = field(default_factory=list)
    errors: dict = field(default_factory=dict)
    failing: dict = field(default_factory=dict)
    product: str = VJP


def _product_run(
    product, case, arrays, settings, engines, announce, tangents, options
) -> ProductRun:
    run = ProductRun(product=product)
    for engine in engines:
        if announce is not None:
            announce(engine.name)
        row, output = _call(engine, case, arrays, settings, product, tangents)
        if row is not None:
            run.engine_rows.append(row)
        if output is not None:
            run.outputs[engine.name] = output
    expect = _expect_output(case) if product == VJP else None
    if expect is not None:
        run.outputs[EXPECT] = expect
    run.bounds = _kept_bounds(options.bounds_memo, case, arrays, settings, run, tangents)
    if product == HVP and case.tolerance is None:
        run.bounds = _measured_bounds(run, case, arrays, settings, engines, tangents)
    _compare_run(run, case, settings.dtype)
    return run


# Hessian-vector products have no rounding model: an exact engine's H u is computed again in
# a probe dtype, a finer one where there is one (float32 -> float64: the difference is its
# rounding), else the next coarser (float64 -> float32, scaled by the ratio of their eps)
HVP_ULPS = 16
JIGGLED = 2  # runs from inputs moved by a few ulps
PROBE = {"float64": "float32", "float32": "float64", "bfloat16": "float32", "float16": "float32"}
# Where the probe dtype is coarser, runs with u and v scaled too: H u is linear in each, so
# H(c u; c' v) / (c c') is H u but for rounding, and the tangents and cotangents round anew
# where cancellation amplifies them (a saturated softmax's s (u - <s, u>)), which neither the
# coarser dtype (where s is 1) nor moved inputs (s stays the same double) see: in the
# false-alarm benchmark's softmax-00034, torch and jax were 1e-14 off a 60-digit truth
# where those probes measured 4e-15. A difference above LINEAR_LIMIT of the element itself
# is no rounding (measured: up to 0.5%, in a saturated cross-entropy whose H u is 1e-14)
# but an H u that is not linear in u or v (a second backward that returns the gradient
# moves by 26% and 29%): it widens nothing there, and the comparisons judge
RESCALED = ((1.4142, 0.618), (0.7937, 1.2599))
LINEAR_LIMIT = 0.1


def _measured_bounds(run: ProductRun, case, arrays, settings, engines, tangents) -> Bounds | None:
    """Each exact engine's measured rounding of its H u as its bound (an engine whose probe
    cannot run gets the first measured one's)."""
    exact = [e for e in engines if e.name in run.outputs and not run.outputs[e.name].numerical]
    own = {e.name: _probed(e, run, case, arrays, settings, tangents) for e in exact}
    measured = {name: b for name, b in own.items() if b is not None}
    if not measured:
        return None
    return Bounds(next(iter(measured.values())), measured)


def _probed(engine, run: ProductRun, case, arrays, settings, tangents) -> EngineOutput | None:
    """The engine's H u again: in the probe dtype (scaled to the checked dtype's eps), and in
    the checked dtype with the inputs moved by a few ulps, and with u and v rescaled
    (rounding that cancellation amplifies looks like that); per element the largest, at
    least HVP_ULPS of the product's largest element."""
    dtype, probe = settings.dtype, PROBE[settings.dtype]
    checked = {w: dt.as_float64(g) for w, g in run.outputs[engine.name].grads.items()}
    scale = 1.0 if dt.eps(probe) < dt.eps(dtype) else dt.eps(dtype) / dt.eps(probe)
    runs = [(probe, 0, scale)] + [(dtype, k, 1.0) for k in range(1, JIGGLED + 1)]
    again = [_again(engine, case, arrays, tangents, checked, *r) for r in runs]
    if scale < 1:  # a coarser probe
        rescaled = [
            _again(engine, case, arrays, tangents, checked, dtype, 0, 1.0, *c) for c in RESCALED
        ]
        again += [_linear(r, checked) for r in rescaled]
    found = [f for f in again if f is not None]
    if not found:
        return None
    # an element zero by structure (a shift-invariant input's) keeps a residue of rounding
    # the size of the terms that cancelled, which a probe that cancels too does not see
    largest = max((float(np.max(np.abs(g), initial=0.0)) for g in checked.values()), default=0.0)
    floor = ENGINE_FACTOR * HVP_ULPS * dt.eps(dtype) * largest
    bound = {
        w: np.maximum(np.max([_measured_scale(f[w]) for f in found], axis=0), floor)
        for w in checked
    }
    return EngineOutput(np.zeros(()), bound)


def _again(engine, case, arrays, tangents, checked, dtype, k, scale, cu=1.0, cv=1.0):
    """|H u - H(cu u; cv v) / (cu cv) in `dtype` from inputs jiggled by the k-th draw| *
    scale, per input (None: the engine cannot run it)."""
    moved = {n: jiggle(a, dtype, k) for n, a in arrays.items()}
    along = {w: dt.cast(dt.as_float64(u) * cu, dtype) for w, u in tangents.items()}
    cotangent = dt.cast(dt.as_float64(case.cotangent(dtype)) * cv, dtype)
    try:
        output = products.call(HVP, engine, case, moved, Settings(dtype), along, cotangent)
    except Exception:  # noqa: BLE001 -- no probe (a kernel missing in it): others measure
        return None
    if output is None:
        return None
    return {
        w: scale * np.abs(checked[w] - dt.as_float64(g) / (cu * cv))
        for w, g in output.grads.items()
    }


def _linear(differences: dict | None, checked: dict) -> dict | None:
    """A rescaled run's differences, 0 where one is more than LINEAR_LIMIT of the element."""
    if differences is None:
        return None
    return {
        w: np.where(d <= LINEAR_LIMIT * np.abs(checked[w]), d, 0.0) for w, d in differences.items()
    }


def _measured_scale(d: np.ndarray) -> np.ndarray:
    return ENGINE_FACTOR * np.maximum(d, root_mean_square(d))


def _compare_run(run: ProductRun, case, dtype: str) -> None:
    run.rows, run.errors, run.failing = _compare_all(
        case, dtype, run.outputs, run.bounds, run.product
    )


def _second_look_again(run: ProductRun, case, arrays, dtype, engines, tangents) -> None:
    if run.outputs and _second_look(case, arrays, dtype, engines, run, tangents):
        _compare_run(run, case, dtype)


@dataclass
class Bounds:
    """Each exact engine's per-element rounding bound: the model's, or the engine's own
    where an op of the case was measured less accurate in it (harness/accuracy.py)."""

    model: EngineOutput
    own: dict[str, EngineOutput] = field(default_factory=dict)

    def of(self, engine: str) -> EngineOutput:
        return self.own.get(engine, self.model)


def _kept_bounds(memo, case, arrays, settings, run: ProductRun, tangents) -> Bounds | None:
    """`_rounding_bounds` of the run, computed once per key where a memo is kept."""
    args = (case, arrays, settings, list(run.outputs), run.product, tangents)
    if memo is None:
        return _rounding_bounds(*args)
    key = (case.name, settings.dtype, run.product, tuple(run.outputs))
    if key not in memo:
        memo[key] = _rounding_bounds(*args)
    return memo[key]


def _rounding_bounds(
    case, arrays, settings: Settings, engines=(), product=VJP, tangents=None
) -> Bounds | None:
    """None where the case sets its own tolerance (it wins) or the numpy reference cannot
    bound every element."""
    if case.tolerance is not None:
        return None
    model = _bound(case, arrays, settings, None, product, tangents)
    if model is None:
        return None
    own = {
        e: _bound(case, arrays, settings, w, product, tangents)
        for e in engines
        if (w := widened_ops(e, settings.dtype, case.graph.ops()))
    }
    return Bounds(model, {e: b for e, b in own.items() if b is not None})


def _bound(case, arrays, settings: Settings, widened, product, tangents) -> EngineOutput | None:
    try:
        with np.errstate(all="ignore"):
            bound = RoundingBound(case.name, widened)
            bounds = _run_engine(bound, case, arrays, settings, product, tangents)
    except Exception:  # noqa: BLE001 -- an op the reference lacks: the fixed tolerances still judge
        return None
    if bounds is None:  # no model of this product's rounding: the fixed tolerances judge
        return None
    finite = all(np.isfinite(b).all() for b in [bounds.value, *bounds.grads.values()])
    return bounds if finite else None  # a NaN bound would pass anything


def _hessians(case, arrays, dtype: str, engines, run: ProductRun | None) -> dict:
    """Per engine whose HVP ran: u -> its H u (float64), for the second-order Taylor test."""
    if run is None or case.jacobian:
        return {}

    def along(engine, u):
        tangents = {w: dt.cast(u[w], dtype) for w in case.wrt}
        output = products.call(HVP, engine, case, arrays, Settings(dtype), tangents)
        assert output is not None  # only engines whose HVP ran are asked
        return {w: dt.as_float64(g) for w, g in output.grads.items()}

    # an estimate's (fd's) H u has its own error estimate against the exact engines; a sweep
    # of it would cost two more estimates of the whole Hessian-vector product
    exact = [e for e in engines if e.name in run.outputs and not run.outputs[e.name].numerical]
    return {e.name: partial(along, e) for e in exact}


def _taylor(case, arrays, dtype, outputs, bounds, hessians=None) -> list:
    try:
        return taylor.check_engines(
            case, arrays, case.cotangent(dtype), outputs, bounds, hessians, 64 * dt.eps(dtype)
        )
    except Exception:  # noqa: BLE001 -- the numpy forward cannot evaluate the case: no evidence
        return []


def _taylor_row(case: str, dtype: str, t) -> TaylorRow:
    lo, hi = t.windows[int(np.nanargmin(t.rates))] if np.isfinite(t.rate) else (0, 0)
    return TaylorRow(
        case,
        dtype,
        t.engine,
        t.rate,
        t.verdict,
        " ".join(f"{r:.3f}" for r in t.rates),
        float(t.eps[lo]) if hi > lo else np.nan,
        float(t.eps[hi - 1]) if hi > lo else np.nan,
        t.message,
        t.product,
    )


def _call(
    engine, case, arrays, settings: Settings, product=VJP, tangents=None
) -> tuple[EngineRow | None, EngineOutput | None]:
    """The engine's result and its engines.csv row (no row: it does not give `product`)."""
    start = time.perf_counter()
    try:
        output = _run_engine(engine, case, arrays, settings, product, tangents)
        if output is None:
            return None, None
        _check_output(output, case)
        status, message = OK, ""
    except EngineSkip as e:
        output, status, message = None, Verdict.SKIP, str(e)
    except UserCodeError as e:  # its message names your function and what happened
        output, status, message = None, Verdict.ERROR, str(e)
    except Exception as e:  # noqa: BLE001 -- an engine's failure stays in its case
        output, status, message = None, Verdict.ERROR, f"{type(e).__name__}: {e}"
    seconds = round(time.perf_counter() - start, 4)
    row = EngineRow(case.name, settings.dtype, engine.name, status, seconds, message, product)
    return row, output


def _run_engine(engine, case, arrays, settings: Settings, product=VJP, tangents=None):
    if product != VJP:
        return products.call(product, engine, case, arrays, settings, tangents)
    if not case.jacobian:
        return call_vjp(
            engine, case.graph, arrays, case.wrt, case.cotangent(settings.dtype), settings
        )
    return _jacobian(engine, case, arrays, settings)


def _jacobian(engine, case, arrays, settings: Settings) -> EngineOutput:
    """The full Jacobian, one VJP per output element, stacked: (outputs, *input shape).
    The loader bounds the number of rows."""
    shape = case.graph.output_shape
    size = int(np.prod(shape))
    cotangents = np.eye(size, dtype=settings.dtype).reshape((size, *shape))
    if hasattr(engine, "batched_vjp"):  # every row in one call (one compiled program)
        return as_output(engine.batched_vjp(case.graph, arrays, case.wrt, cotangents))
    rows = [call_vjp(engine, case.graph, arrays, case.wrt, c, settings) for c in cotangents]
    grads, grad_err, checked, kinks, kink_distance = (
        _stacked(rows, part) for part in ("grads", "grad_err", "checked", "kinks", "kink_distance")
    )
    # one row's directional checks do not apply to the stacked rows: elements only
    return EngineOutput(
        rows[0].value, grads, grad_err, checked, kinks, kink_distance, coverage=rows[0].coverage
    )


def _stacked(rows: list[EngineOutput], part: str) -> dict:
    """One field of several outputs, each array stacked along a new first axis."""
    return {k: np.stack([getattr(r, part)[k] for r in rows]) for k in getattr(rows[0], part)}


def _check_output(output: EngineOutput, case) -> None:
    """A missing value or gradient is the engine's error; a gradient of the wrong shape is a
    wrong result, which its comparisons FAIL naming both shapes."""
    want = case.graph.output_shape
    if np.shape(output.value) != want:
        raise ValueError(
            f"output value has shape {list(np.shape(output.value))}, expected {list(want)}"
        )
    missing = [name for name in case.wrt if name not in output.grads]
    if missing:
        raise ValueError(f"no gradient returned for {missing[0]!r}")


def _shaped(output: EngineOutput, case) -> bool:
    """Every gradient has its input's shape (a full Jacobian's: one per output element)."""
    rows = (int(np.prod(case.graph.output_shape)),) if case.jacobian else ()
    return all(
        np.shape(output.grads[w]) == rows + case.graph.inputs[w].shape
        for w in case.wrt
        if w in output.grads
    )  # (`expect` may give a few)


def _expect_output(case) -> EngineOutput | None:
    expected = case.expected()
    return None if expected is None else EngineOutput(*expected)


def _compare_all(case, dtype: str, outputs: dict[str, EngineOutput], bounds=None, product=VJP):
    """The rows, and per failing (param, a, b): |a - b| and the elements out of tolerance
    (a product other than the VJP files its errors by `error_key`). Forward values are
    compared once, with the VJPs."""
    rows, errors, failing = [], {}, {}
    for param in ([VALUE] if product == VJP else []) + case.wrt:
        kinks = _kinks(outputs.values(), param)
        for a, b in combinations(outputs, 2):
            pair = _pick(outputs[a], param), _pick(outputs[b], param)
            if pair[0] is None or pair[1] is None:
                continue
            estimate = _estimate(outputs[a], outputs[b], param)
            tol = tolerance_for(dtype, estimate is not None, case.tolerance, bounds is not None)
            j = judge(
                *pair,
                tol,
                **_estimate_extras(estimate, param),
                kinks=kinks,
                round_err=_pair_rounding(bounds, {a: outputs[a], b: outputs[b]}, param),
            )
            # directions are judged as fd judges them: the fixed tables, no rounding bound
            j = _directional(
                j,
                estimate,
                (outputs[a], outputs[b]),
                param,
                tolerance_for(dtype, estimate is not None, case.tolerance),
            )
            covered = _coverage(estimate, param)
            rows.append(
                comparison_row(
                    case.name, dtype, param, (a, b), j, np.size(pair[0]), covered, product
                )
            )
            if j.abs_err is not None:
                errors[(error_key(product, param), a, b)] = j.abs_err
            if j.failing is not None:
                failing[(param, a, b)] = j.failing
    return rows, errors, failing


def _second_look(case, arrays, dtype, engines, run: ProductRun, tangents) -> bool:
    """Where a numerical estimate (fd) disagrees with an exact engine on some elements of a
    VJP or a JVP, it goes round again (its `second_look` or `second_look_jvp`): agreement, a
    kink flagged, or a FAIL that survived. Its new estimates are its own (no engine's value
    enters them): only where to look comes from the comparisons, so a wrong exact engine is
    still caught, and blamed alone where fd's first look had also stumbled beside it.
    Whether anything was looked at again (the comparisons are then made anew)."""
    looked = False
    method, arguments = SECOND_LOOKS.get(run.product, ("", None))
    for engine in engines:
        output = run.outputs.get(engine.name)
        look = getattr(engine, method, None)
        if case.jacobian or output is None or look is None or arguments is None:
            continue
        for param in case.wrt:
            disputed = _disputed(engine.name, param, run.outputs, run.failing)
            if disputed is not None:
                found = look(*arguments(case, arrays, dtype, tangents, param, disputed))
                _take(output, param, disputed, found)
                looked = True
    return looked


def _vjp_look(case, arrays, dtype, tangents, param, disputed) -> tuple:
    """`second_look`'s arguments: the disputed elements of the input's gradient."""
    return case.graph, arrays, case.cotangent(dtype), param, np.flatnonzero(disputed)


def _jvp_look(case, arrays, dtype, tangents, param, disputed) -> tuple:
    """`second_look_jvp`'s arguments: all of J_x u_x again (each output element is one
    directional derivative along the same u, so none is cheaper alone)."""
    return case.graph, arrays, tangents, param


# a numerical engine's second look at each product: its method, and its arguments
SECOND_LOOKS = {VJP: ("second_look", _vjp_look), JVP: ("second_look_jvp", _jvp_look)}


def _disputed(name: str, param: str, outputs, failing: dict):
    """The elements where `name` fails against an exact engine; None if there are none."""
    exact = {n for n, o in outputs.items() if not (o.numerical and param in o.grad_err)}
    if name in exact:
        return None
    masks = [
        m
        for (p, a, b), m in failing.items()
        if p == param and name in (a, b) and ({a, b} - {name}) <= exact
    ]
    if not masks:
        return None
    disputed = np.logical_or.reduce(masks) & ~np.asarray(outputs[name].kinks.get(param, False))
    return disputed if disputed.any() else None


def _take(output: EngineOutput, param: str, where: np.ndarray, found) -> None:
    """The second look's estimate, error and kinks in place of the first's, where looked."""
    output.grads[param] = np.where(where, found.grad, output.grads[param])
    output.grad_err[param] = np.where(where, found.err, output.grad_err[param])
    kink = where & found.kink
    output.kinks[param] = np.asarray(output.kinks.get(param, False)) | kink
    distance = output.kink_distance.get(param, np.full(where.shape, np.nan))
    output.kink_distance[param] = np.where(kink, found.kink_distance, distance)


def _pair_rounding(bounds: Bounds | None, pair: dict, param: str):
    """Each exact side of the pair (name -> output) may carry its rounding bound, and the
    rounding it measured of itself (your code's, see engines/own); an estimate's (fd's)
    error is its own."""
    exact = {n: o for n, o in pair.items() if not (o.numerical and param in o.grad_err)}
    measured = [m for m in (_measured(o, param) for o in exact.values()) if m is not None]
    if bounds is None and not measured:
        return None
    total = 0.0 if bounds is None else sum(_pick(bounds.of(n), param) for n in exact)
    return total + sum(measured)


def _measured(output: EngineOutput, param: str):
    """An engine's measured rounding as a bound: one measurement is one draw of each
    element's rounding, so an element where it happens to be small still gets the tensor's
    root-mean-square, and the whole the margin of an engine's rounding bound."""
    d = output.value_rounding if param == VALUE else output.grad_rounding.get(param)
    if d is None or not np.size(d):
        return d
    return _measured_scale(d)


def _rounding_note(outputs, bounds, dtype: str, forward_names: dict) -> str:
    """How many digits your forward loses to its own rounding, beyond an engine's model:
    a note (the tolerance already holds it), said from one digit on."""
    notes = []
    for name, output in outputs.items():
        if output.value_rounding is None or not np.size(output.value_rounding):
            continue
        largest = float(np.max(np.abs(np.asarray(output.value, np.float64))))
        model = (
            np.max(bounds.value) if bounds is not None else ENGINE_FACTOR * dt.eps(dtype) * largest
        )
        measured = float(np.max(_measured(output, VALUE)))
        lost = np.log10(max(measured, 1e-300) / max(model, 1e-300))
        if lost >= 1:
            notes.append(
                f"note: {forward_names.get(name, name)} loses about {lost:.0f} "
                "digit(s) to its own rounding (measured; its tolerance holds it)"
            )
    return "; ".join(notes)


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
    if found is None or other is None or other.numerical or j.worst_index is None:
        return j  # (no worst index: the shapes differ, a FAIL already)
    return with_directions(j, judge_directions(other.grads[param], found, tol))


def _coverage(estimate: EngineOutput | None, param: str) -> tuple[str, int, float]:
    """How the estimate covered `param`, its number of directions, the farthest kink."""
    if estimate is None:
        return "full", 0, float("nan")
    found, distance = estimate.directions.get(param), estimate.kink_distance.get(param)
    flagged = np.asarray(estimate.kinks.get(param, False)) & estimate.checked.get(param, True)
    farthest = np.max(distance[flagged]) if distance is not None and flagged.any() else np.nan
    return (
        estimate.coverage.get(param, "full"),
        0 if found is None else len(found.slopes),
        float(farthest),
    )


def _summarize(
    case, dtype, engine_rows, rows, outputs, checks=(), forward_names=None, every=None
) -> CaseRow:
    """`outputs`: the VJPs; `every`: each engine's result of any product (default: outputs)."""
    every = outputs if every is None else every
    errored = [r.engine for r in engine_rows if r.status == Verdict.ERROR]
    skipped = [r.engine for r in engine_rows if r.status == Verdict.SKIP]
    bad = {
        (r.engine_a, r.engine_b)
        for r in rows
        if disagrees(r.verdict, r.message) and not _overflow_of_the_dtype(r, outputs)
    }
    verdict, message = _case_verdict(errored, {r.verdict for r in rows}, every, engine_rows, rows)
    suspects = [t.engine for t in checks if t.verdict == Verdict.FAIL]
    blamed = list(dict.fromkeys(errored)) or blame(list(every), bad, suspects)
    wrong_forward = bad & {(r.engine_a, r.engine_b) for r in _value_rows(rows)}
    if wrong_forward and not errored:
        blamed, message = _forward_blame(outputs, wrong_forward, rows, verdict, forward_names)
    return _case_row(
        case,
        dtype,
        verdict,
        " ".join(blamed),
        message,
        engines=" ".join(o for o in every if o != EXPECT),
        skipped=" ".join(skipped),
        comparisons=len(rows),
        failed=sum(r.verdict != Verdict.PASS for r in rows),
    )


def _overflow_of_the_dtype(row, outputs) -> bool:
    """Non-finite numbers on the exact side of a pair with a finite estimate, in the same
    places in another exact engine: the estimate evaluates in float64, so they come from
    the case's dtype (exp overflowing in float32), not from either engine. One engine alone
    with them (a user's backward against fd) stays the one to blame."""
    if row.verdict != Verdict.NONFINITE or row.param == VALUE or row.product != VJP:
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
    return any(
        o is not exact
        and not o.numerical
        and row.param in o.grads
        and np.array_equal(np.isfinite(o.grads[row.param]), finite)
        for o in outputs.values()
    )


def _case_row(
    case, dtype, verdict, blamed, message, engines="", skipped="", comparisons=0, failed=0
) -> CaseRow:
    return CaseRow(
        case.name,
        dtype,
        verdict,
        blamed,
        0.0,
        message,
        case.family,
        " ".join(case.tags),
        case.file,
        engines,
        skipped,
        comparisons,
        failed,
    )


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


def _value_rows(rows) -> list:
    return [r for r in rows if r.param == VALUE and disagrees(r.verdict, r.message)]


def _forward_blame(outputs, wrong_forward: set, rows, verdict, forward_names) -> tuple:
    """Forward values that disagree are the finding, and the gradients' rows follow from
    them: the blame names the forward (an engine's `forward_name`: your forward function),
    the headline the worst value row."""
    names = forward_names or {}
    blamed = [names.get(e, e) for e in blame(list(outputs), wrong_forward)]
    return blamed, f"the forward disagrees: {_first_message(_value_rows(rows), verdict)}"


def _first_message(rows, verdict) -> str:
    r = max(
        (r for r in rows if r.verdict == verdict), key=lambda r: r.tol_ratio, default=None
    ) or max(rows, key=lambda r: r.tol_ratio)
    where = list(r.worst_index) if r.worst_index is not None else "-"
    return (
        f"{error_key(r.product, r.param)}: {r.engine_a} vs {r.engine_b}: {r.message} "
        f"(tol ratio {r.tol_ratio:.3g} at {where})"
    )


def stopped_result(
    case, dtype: str, engines: list, verdict: Verdict, message: str, blamed: str
) -> CaseResult:
    """The result of a case that could not start: your forward failed (ERROR) or gave
    outputs of other shapes than the reference's (FAIL); no engine ran."""
    rows = [
        EngineRow(case.name, dtype, e.name, Verdict.SKIP, 0.0, "not run: " + message)
        for e in engines
    ]
    return CaseResult(_case_row(case, dtype, verdict, blamed, message), [], rows)


def error_result(
    case, dtype: str, engines: list, message: str, culprit: str | None, done: tuple[str, ...] = ()
) -> CaseResult:
    """An ERROR result for a case that produced none (it timed out, or its worker died):
    `culprit` is the engine that was running, `done` the engines that had finished."""
    rows = [
        EngineRow(case.name, dtype, e.name, *_status(e.name, culprit, done, message))
        for e in engines
    ]
    return CaseResult(_case_row(case, dtype, Verdict.ERROR, culprit or "", message), [], rows)


def _status(name: str, culprit: str | None, done: tuple[str, ...], message: str) -> tuple:
    if name == culprit:
        return Verdict.ERROR, 0.0, message
    if name in done:
        return OK, 0.0, ""
    return Verdict.SKIP, 0.0, "not run: the case was stopped"
