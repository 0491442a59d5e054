"""The Taylor-remainder test: judges one engine's gradient alone, by a convergence rate.

For a direction u and f = <cotangent, output> (the numpy forward, in float64):
R(eps) = |f(x + eps u) - f(x) - eps <g, u>| shrinks like eps^2 when g is the gradient and
like eps when it is not. Over a geometric sweep of eps, the slope of log R against log eps
is fitted over the most linear window of points that stand clear of rounding: R must be
well above what rounding alone could give (f's own float64 noise, plus eps times the
gradient's rounding bound along u); among windows whose local slopes agree, the one at
the smallest eps is taken, before the nonlinearity of large steps (or a kink crossed far
from x) bends the curve. No tolerance: the rate is dimensionless.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

import reference_impls

from ..dtypes import as_float64
from ..engines.base import constants
from ..engines.fd.batching import dependent_nodes, row_bytes, stacked_forward
from ..engines.fd.evaluate import MEMORY_BUDGET
from .rounding import root_mean_square
from .verdict import Verdict

EPS64 = np.finfo(np.float64).eps
DIRECTIONS = 2
STEPS = 28  # eps = 0.1 * 2^-k: from 0.1 down to 7e-10 (times each input's scale)
WINDOW = 5  # points in a fitted window: a factor 16 in eps
LINEAR = 0.25  # the local slopes of a window may spread this much
CLEAR = 4.0  # R must exceed rounding's share this many times
PASS_RATE = 1.5  # halfway between a right gradient's 2 and a wrong one's 1
PASS, FAIL = Verdict.PASS, Verdict.FAIL


@dataclass
class Sweep:
    """f along seeded directions: what every engine's remainder is computed from."""

    eps: np.ndarray  # the step sizes, largest first
    directions: list[dict[str, np.ndarray]]
    f0: float
    f: list[np.ndarray] = field(default_factory=list)  # per direction, f(x + eps u)


@dataclass
class TaylorResult:
    engine: str
    eps: np.ndarray
    rate: float  # the lowest over the directions; NaN: no fit
    verdict: str
    rates: list[float]
    remainders: list[np.ndarray]  # per direction, R(eps) over the sweep
    windows: list[tuple[int, int]]  # per direction, the fitted points [lo, hi)
    message: str = ""
    product: str = "vjp"  # hvp: the remainder less the Hessian term, rate 3 expected


def sweep(objective, inputs: Mapping[str, np.ndarray], wrt: list[str], seed: str) -> Sweep:
    """Evaluate the objective at x and along each direction's eps sweep:
    `objective(x, offsets)` gives f at x + e u for each (u, e) in `offsets` (u None: x)."""
    x = {w: np.asarray(inputs[w], dtype=np.float64) for w in wrt}
    rng = np.random.default_rng(zlib.crc32(f"{seed}/<taylor>".encode()))
    directions = [
        {w: rng.standard_normal(x[w].shape) * _scale(x[w]) for w in wrt} for _ in range(DIRECTIONS)
    ]
    eps = 0.1 * 2.0 ** -np.arange(STEPS)
    values = objective(x, [(None, 0.0)] + [(u, e) for u in directions for e in eps])
    return Sweep(eps, directions, float(values[0]), list(values[1:].reshape(DIRECTIONS, STEPS)))


def _scale(x: np.ndarray) -> float:
    with np.errstate(over="ignore"):  # near float64's limit: scale 1
        rms = float(np.sqrt(np.mean(x**2))) if x.size else 0.0
    return rms if rms > 0 and np.isfinite(rms) else 1.0


def judge_engine(
    name: str,
    s: Sweep,
    grads: Mapping[str, np.ndarray],
    bounds: Mapping[str, np.ndarray] | None = None,
    hessian: list | None = None,
    hessian_noise: float = 0.0,
) -> TaylorResult:
    """The engine's rate: per direction, the slope of its remainder's cleanest window.
    `hessian`: per direction u, the engine's H u (per input): the remainder then also
    drops eps^2/2 <u, H u> and shrinks like eps^3 when H is right, eps^2 when not;
    `hessian_noise`: the relative rounding of H u."""
    rates, remainders, windows = [], [], []
    for k, (u, f) in enumerate(zip(s.directions, s.f)):
        slope = _along(grads, u)
        remainder = np.abs(f - s.f0 - s.eps * slope)
        floor = _rounding_floor(s, f, u, bounds)
        if hessian is not None:
            curvature = _along(hessian[k], u)
            remainder = np.abs(f - s.f0 - s.eps * slope - s.eps**2 / 2 * curvature)
            floor = floor + CLEAR * s.eps**2 / 2 * abs(curvature) * hessian_noise
        rate, window = fit_rate(s.eps, remainder, floor)
        rates.append(rate)
        remainders.append(remainder)
        windows.append(window)
    order = 1 if hessian is None else 2
    return _verdict(name, s.eps, rates, remainders, windows, order)


def _along(arrays: Mapping[str, np.ndarray], u: Mapping[str, np.ndarray]) -> float:
    return sum(float(np.sum(np.asarray(arrays[w], np.float64) * u[w])) for w in u)


def _root_sum_of_squares(arrays: list) -> float:
    flat = np.concatenate([np.ravel(a) for a in arrays])
    return float(root_mean_square(flat)) * float(np.sqrt(flat.size)) if flat.size else 0.0


def _rounding_floor(s: Sweep, f: np.ndarray, u: Mapping, bounds) -> np.ndarray:
    """What rounding alone could make R: f's float64 noise, and eps times the gradient's
    rounding bound along u (its elements' errors add up like random signs, as u's do)."""
    noise = 64 * EPS64 * np.maximum(abs(s.f0), np.abs(f))
    along = 0.0 if bounds is None else _root_sum_of_squares([bounds[w] * u[w] for w in u])
    return CLEAR * (noise + s.eps * along)


def fit_rate(eps: np.ndarray, remainder: np.ndarray, floor: np.ndarray) -> tuple[float, tuple]:
    """Least-squares slope of log R vs log eps over the smallest-eps window of WINDOW
    consecutive points clear of the floor whose local slopes agree within LINEAR; failing
    that, over the most linear such window; NaN when fewer than 3 points are clear."""
    clear = np.isfinite(remainder) & (remainder > floor)
    if len(eps) < WINDOW:
        return _short_fit(eps, remainder, clear)
    starts = np.flatnonzero(sliding_window_view(clear, WINDOW).all(axis=1))
    if not len(starts):
        return _short_fit(eps, remainder, clear)
    with np.errstate(all="ignore"):  # points off the floor are never used
        logs = np.log(eps), np.log(remainder)
        local = np.diff(logs[1]) / np.diff(logs[0])
    spread = np.ptp(sliding_window_view(local, WINDOW - 1), axis=1)[starts]
    linear = starts[spread <= LINEAR]
    lo = int(linear[-1] if len(linear) else starts[np.argmin(spread)])
    return _slope(logs[0][lo : lo + WINDOW], logs[1][lo : lo + WINDOW]), (lo, lo + WINDOW)


def _slope(x: np.ndarray, y: np.ndarray) -> float:
    """The least-squares slope of y against x."""
    centred = x - x.mean()
    return float(np.dot(centred, y - y.mean()) / np.dot(centred, centred))


def _short_fit(eps, remainder, clear) -> tuple[float, tuple]:
    index = np.flatnonzero(clear)
    if len(index) < 3:
        return float("nan"), (0, 0)
    index = index[-WINDOW:]
    return _slope(np.log(eps[index]), np.log(remainder[index])), (int(index[0]), int(index[-1]) + 1)


def _verdict(name, eps, rates, remainders, windows, order: int = 1) -> TaylorResult:
    """Rate order + 1 expected of a right derivative of that order, order of a wrong one."""
    product = "vjp" if order == 1 else "hvp"
    fitted = [r for r in rates if np.isfinite(r)]
    if not fitted:
        return TaylorResult(
            name,
            eps,
            float("nan"),
            PASS,
            rates,
            remainders,
            windows,
            "remainder at rounding level at every step: nothing to fit",
            product,
        )
    rate = min(fitted)
    if rate > PASS_RATE + order - 1:
        return TaylorResult(name, eps, rate, PASS, rates, remainders, windows, "", product)
    what = "the gradient" if order == 1 else "the Hessian-vector product"
    return TaylorResult(
        name,
        eps,
        rate,
        FAIL,
        rates,
        remainders,
        windows,
        f"remainder shrinks like eps^{rate:.2f}, not eps^{order + 1}: {what} is off",
        product,
    )


def check_engines(
    case,
    arrays: Mapping[str, np.ndarray],
    cotangent,
    outputs: Mapping,
    bounds=None,
    hessians: Mapping | None = None,
    hessian_noise: float = 0.0,
) -> list[TaylorResult]:
    """The Taylor test of every output whose gradient is complete (fd's sample is not), on
    f = <cotangent, output> by the numpy forward in float64 (through the case's own op table
    where it has one: your forward, in a check of your code); a full Jacobian is contracted
    with the same cotangent. `bounds`: the exact engines' rounding bounds (EngineOutput);
    an engine that estimates its own error (fd) is judged against that instead.
    `hessians`: engine name -> a function of a direction u giving that engine's H u: its
    second-order test (rate 3) follows its first."""
    cotangent = np.asarray(cotangent, dtype=np.float64)
    s = sweep(
        _objective(case.graph, arrays, cotangent, case.wrt, case.ops), arrays, case.wrt, case.name
    )
    results = []
    for name, output in outputs.items():
        grads = _contracted(case, output.grads, cotangent)
        errors = output.grad_err or (bounds.grads if bounds is not None else None)
        if not all(w in grads and np.isfinite(grads[w]).all() for w in case.wrt):
            continue
        along = errors and _contracted(
            case, {w: np.abs(e) for w, e in errors.items()}, np.abs(cotangent)
        )
        results.append(judge_engine(name, s, grads, along))
        if hessians and name in hessians:
            second = [hessians[name](u) for u in s.directions]
            results.append(judge_engine(name, s, grads, along, second, hessian_noise))
    return results


def _contracted(case, grads: Mapping, cotangent: np.ndarray) -> dict:
    if not case.jacobian:
        return {w: np.asarray(g, dtype=np.float64) for w, g in grads.items()}
    return {
        w: np.tensordot(cotangent.ravel(), np.asarray(g, np.float64), axes=1)
        for w, g in grads.items()
    }


def _objective(
    graph, arrays: Mapping, cotangent: np.ndarray, wrt: list[str], ops: Mapping | None = None
):
    """f(x, offsets) = <cotangent, numpy forward at x + e u> for each (u, e), in float64:
    the points stacked along a first axis, a chunk that fits the fd engine's memory budget
    at a time, through its batching rules."""
    env = {k: as_float64(v) for k, v in arrays.items()}  # bfloat16 is of kind 'V', not 'f'
    env.update(constants(graph, np.float64))
    ops = reference_impls.OPS if ops is None else ops
    with np.errstate(all="ignore"):
        env = reference_impls.forward(graph, ops, env)
    nodes = dependent_nodes(graph, wrt)
    forward = stacked_forward(graph, ops, env, nodes, wrt)
    rows = max(1, MEMORY_BUDGET // max(row_bytes(env, wrt, nodes), 1))

    def f(x: Mapping[str, np.ndarray], offsets: list) -> np.ndarray:
        values = []
        for start in range(0, len(offsets), rows):
            chunk = offsets[start : start + rows]
            stacks = [
                _points(x[w], [(None if u is None else u[w], e) for u, e in chunk]) for w in wrt
            ]
            with np.errstate(all="ignore"):
                out = forward(*stacks)
            values.append(np.sum(out * cotangent, axis=tuple(range(1, out.ndim))))
        return np.concatenate(values)

    return f


def _points(x: np.ndarray, offsets: list) -> np.ndarray:
    """x + e u for each (u, e) (u None: x), stacked, written in place (no copy per point)."""
    stack = np.empty((len(offsets),) + x.shape)
    for i, (u, e) in enumerate(offsets):
        row = stack[i : i + 1].reshape(x.shape)  # a view, also of a 0-d input
        if u is None:
            row[...] = x
        else:
            np.multiply(u, e, out=row)
            row += x
    return stack
