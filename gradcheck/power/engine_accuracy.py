"""How accurate each engine's elementwise ops are, measured against mpmath.

The rounding model assumes an engine's elementary functions are accurate to about an ulp.
This module measures it: for every unary elementwise op of the vocabulary (and `x ** k` for
a few k), a grid of ~2,000 inputs per dtype, spread log-uniformly in magnitude over both
signs from 1e-6 out to the edge of the op's domain (the saturating tails of tanh, sigmoid,
gelu and softplus to +-40, exp to the dtype's overflow), each rounded to the dtype so that
the engine's input is exact; the true value of each at 50 digits (mpmath, once per grid
point and shared by every engine); and each engine's error in ulps,

    |y - y_true| / (eps(dtype) * max(|y_true|, tiny(dtype)))

skipping points whose true value overflows the dtype. Per (engine, dtype, op) the table
keeps the largest error, the input where it occurs and the 99th percentile.

    python -m gradcheck.power.engine_accuracy --out gradcheck/harness/accuracy.json

writes the table (JSON) and prints it as Markdown; `gradcheck.harness.accuracy` reads the
copy shipped with the package, and the rounding model widens an engine's bound by it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import mpmath
import numpy as np

from .. import dtypes as dt

ENGINES = ("numpy", "torch", "jax")
DIGITS = 50
POINTS = 2000
SMALLEST = 1e-6  # the smallest magnitude of a grid (besides 0)
# and evenly spaced over where most values lie: the log-uniform part puts only ~100 points
# between 0.5 and 8, and an approximation's worst errors there fall between them (jax's
# float32 tanh: 1.8 ulps by the log-uniform grid alone, 2.2 at -5.9 with these points)
BULK = 8.0
BULK_POINTS = 16000
TAIL = 40.0  # how far the saturating functions are measured
TRIG_EDGE = 1e5  # sin and cos: argument reduction is measured up to here
from ..harness.accuracy import SHIPPED, WIDEN_ABOVE  # noqa: E402

BIN = 64  # grid points a bin of an op's error curve spans (0.064 wide within BULK)

# --- the ops ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    """One measured op: the registry's op, its attributes (a constant operand `k` for pow),
    the true function in mpmath, and the domain of the grid as magnitudes per sign
    (`edges(dtype) -> (negative edge or None, positive edge)`)."""

    name: str  # the table's row
    op: str  # the registry's op
    true: Callable[[mpmath.mpf], mpmath.mpf]
    edges: Callable[[dt.DtypeInfo], tuple[float | None, float]]
    attrs: dict = field(default_factory=dict)
    k: float | None = None  # pow's exponent (a second operand)
    near_minus_one: bool = False  # log1p: also points crowding -1
    zero: bool = True  # 0 is in the grid where both signs are


def _max(d: dt.DtypeInfo) -> float:
    import ml_dtypes

    return float(ml_dtypes.finfo(d.numpy).max)


def _whole_line(d):
    return _max(d), _max(d)


def _tail(d):
    return TAIL, TAIL


def _positive(d):
    return None, _max(d)


def _exp_edges(d):
    # below, exp underflows past the smallest subnormal (the error there is 0); above, it
    # overflows (those points are skipped)
    return -math.log(d.smallest_subnormal) + 1, math.log(_max(d))


def _trig_edges(d):
    edge = min(TRIG_EDGE, _max(d))
    return edge, edge


def _root(n):
    def edges(d):
        edge = _max(d) ** (1 / n)
        return edge, edge

    return edges


def _log1p_edges(d):
    return 1.0, _max(d)


def _sigmoid(x):
    return 1 / (1 + mpmath.exp(-x))


def _softplus(x):
    return mpmath.log1p(mpmath.exp(x))


def _gelu(x):
    return x * mpmath.erfc(-x / mpmath.sqrt(2)) / 2


SLOPE = mpmath.mpf("0.01")  # leaky_relu's default slope, as written, not as rounded


def _leaky_relu(x):
    return x if x > 0 else SLOPE * x


def _elu(x):
    return x if x > 0 else mpmath.expm1(x)


def _clip(x):
    return min(max(x, mpmath.mpf(-1)), mpmath.mpf(1))


def _power(k):
    def true(x):
        return x ** (mpmath.mpf(1) / 2) if k == 0.5 else x ** int(k)

    return true


OPS: dict[str, Op] = {
    op.name: op
    for op in [
        Op("neg", "neg", lambda x: -x, _whole_line),
        Op("exp", "exp", mpmath.exp, _exp_edges),
        Op("log", "log", mpmath.log, _positive),
        Op("log1p", "log1p", mpmath.log1p, _log1p_edges, near_minus_one=True),
        Op("sqrt", "sqrt", mpmath.sqrt, _positive),
        Op("square", "square", lambda x: x * x, _root(2)),
        Op("sin", "sin", mpmath.sin, _trig_edges),
        Op("cos", "cos", mpmath.cos, _trig_edges),
        Op("tanh", "tanh", mpmath.tanh, _tail),
        Op("sigmoid", "sigmoid", _sigmoid, _tail),
        Op("softplus", "softplus", _softplus, _tail),
        Op("gelu", "gelu", _gelu, _tail),
        Op("relu", "relu", lambda x: max(x, mpmath.mpf(0)), _whole_line),
        Op("abs", "abs", abs, _whole_line),
        Op("leaky_relu", "leaky_relu", _leaky_relu, _whole_line, {"slope": 0.01}),
        Op("elu", "elu", _elu, lambda d: (TAIL, _max(d)), {"alpha": 1.0}),
        Op("clip", "clip", _clip, _whole_line, {"low": -1.0, "high": 1.0}),
        Op("pow^2", "pow", _power(2), _root(2), k=2.0),
        Op("pow^3", "pow", _power(3), _root(3), k=3.0),
        Op("pow^0.5", "pow", _power(0.5), _positive, k=0.5),
        Op("pow^-1", "pow", _power(-1), _whole_line, k=-1.0, zero=False),
    ]
}


# --- grids and true values -----------------------------------------------------------------


def grid(op: str, dtype: str, points: int = POINTS, bulk: int = BULK_POINTS) -> np.ndarray:
    """The inputs of `op` in `dtype` (sorted, distinct, each exactly representable), as
    float64: `points` log-uniform magnitudes from 1e-6 to the domain's edge on each side it
    has, and `bulk` evenly spaced within BULK of 0 (inside the domain)."""
    spec, d = OPS[op], dt.info(dtype)
    neg, pos = spec.edges(d)
    sides = [(1.0, pos)] + ([(-1.0, neg)] if neg else [])
    each = points // len(sides)
    parts = [np.zeros(1)] if neg and spec.zero and not spec.near_minus_one else []
    low = -min(neg, BULK) if neg else BULK / bulk  # a domain of positive numbers: above 0
    parts.append(np.linspace(low, min(pos, BULK), bulk))
    for sign, edge in sides:
        if spec.near_minus_one and sign < 0:
            # half towards 0, half crowding -1 (1 + x from eps to 1/2)
            small = np.geomspace(SMALLEST, 0.5, each // 2)
            close = 1 - np.geomspace(d.eps, 0.5, each - each // 2)
            parts += [-small, -close]
        else:
            with np.errstate(over="ignore"):  # the last point may round past the edge
                parts.append(sign * np.geomspace(SMALLEST, edge, each))
    x = np.concatenate(parts)
    x = dt.as_float64(dt.cast(x, dtype))  # rounded: what the engine gets
    x = x[np.isfinite(x)]
    if spec.near_minus_one:
        x = x[x > -1]
    return np.unique(x)


# true values by (op, float64 input): a bfloat16 grid point is a float32 and a float64 one
_TRUE: dict[tuple[str, float], tuple[float, float]] = {}


def true_values(op: str, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The true value of `op` at each x, at 50 digits, as a double-double: hi + lo, hi its
    float64 rounding (inf beyond float64's range) and lo what is left."""
    fn = OPS[op].true
    hi, lo = np.empty(len(x)), np.empty(len(x))
    with mpmath.workdps(DIGITS):
        for i, xi in enumerate(x.tolist()):
            key = (op, xi)
            if key not in _TRUE:
                v = fn(mpmath.mpf(xi))
                h = float(v)
                _TRUE[key] = (h, float(v - h) if math.isfinite(h) else 0.0)
            hi[i], lo[i] = _TRUE[key]
    return hi, lo


# --- the engines ---------------------------------------------------------------------------


def _numpy_runner(spec: Op, dtype: str):
    import reference_impls

    forward = reference_impls.OPS[spec.op].forward
    compute = dt.compute_dtype(dt.numpy_dtype(dtype))

    def run(x):
        x = dt.as_compute(x)
        args = (x,) if spec.k is None else (x, np.asarray(spec.k, dtype=compute))
        with np.errstate(all="ignore"):
            return np.asarray(forward(*args, **spec.attrs)).astype(dt.numpy_dtype(dtype))

    return run


def _torch_runner(spec: Op, dtype: str):
    from ..engines.torch_ops import OPS as TORCH

    fn = TORCH[spec.op]

    def run(x):
        args = [dt.to_torch(x)]
        if spec.k is not None:
            args.append(dt.to_torch(np.asarray(spec.k, dtype=dt.numpy_dtype(dtype))))
        return dt.to_numpy(fn(*args, **spec.attrs), dtype)

    return run


def _jax_runner(spec: Op, dtype: str):
    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    from ..engines.jax_ops import OPS as JAX

    fn = JAX[spec.op]
    # jitted, as the engine runs a graph; the exponent is an argument, as a constant is
    program = jax.jit(lambda *a: fn(*a, **spec.attrs))

    def run(x):
        args = [jnp.asarray(x)]
        if spec.k is not None:
            args.append(jnp.asarray(np.asarray(spec.k, dtype=dt.numpy_dtype(dtype))))
        return np.asarray(program(*args)).astype(dt.numpy_dtype(dtype))

    return run


RUNNERS = {"numpy": _numpy_runner, "torch": _torch_runner, "jax": _jax_runner}


# --- the measurement -----------------------------------------------------------------------


def ulps(y: np.ndarray, hi: np.ndarray, lo: np.ndarray, dtype: str) -> np.ndarray:
    """|y - (hi + lo)| in units of eps(dtype) * max(|true|, tiny(dtype)); inf where y is not
    finite. y - hi is exact wherever y is close to the true value (Sterbenz)."""
    d = dt.info(dtype)
    y = dt.as_float64(y)
    with np.errstate(all="ignore"):
        err = np.abs((y - hi) - lo) / (d.eps * np.maximum(np.abs(hi), d.tiny))
    return np.where(np.isfinite(y), err, np.inf)


def measure_one(engine: str, op: str, dtype: str, points: int = POINTS) -> dict:
    x = grid(op, dtype, points)
    hi, lo = true_values(op, x)
    keep = np.abs(hi) <= _max(dt.info(dtype))  # the true value does not overflow
    x, hi, lo = x[keep], hi[keep], lo[keep]
    inputs = dt.cast(x, dtype)
    y = RUNNERS[engine](OPS[op], dtype)(inputs)
    e = ulps(y, hi, lo, dtype)
    worst = int(np.argmax(e))
    row: dict = {
        "max_ulps": float(e[worst]),
        "at": float(x[worst]),
        "p99_ulps": float(np.percentile(e, 99)),
        "points": len(x),
    }
    # the same where the true value is a normal number: below, an engine that flushes
    # subnormal results to zero (XLA on CPU does) is up to 1 / eps "ulps" off, by the
    # formula's floor of tiny, where its absolute error is below tiny
    normal = np.abs(hi) >= dt.info(dtype).tiny
    if normal.any():
        at = int(np.argmax(np.where(normal, e, -1.0)))
        row.update(max_ulps_normal=float(e[at]), at_normal=float(x[at]))
        if row["max_ulps_normal"] > WIDEN_ABOVE and OPS[op].k is None:
            row["curve"] = error_curve(x, np.where(normal, e, 0.0))
    return row


def error_curve(x: np.ndarray, e: np.ndarray, width: int = BIN) -> dict:
    """The error as a function of the input, for the rounding model to widen each element
    by what was measured near it: the grid `x` (sorted) cut into bins of `width` points,
    `edges` (each bin's first input, then the last input) and each bin's largest error,
    counting the next bin's first point (the error between two points is not measured)."""
    e = np.minimum(e, 1e300)  # JSON has no infinity
    starts = np.arange(0, len(x), width)
    worst = np.maximum.reduceat(e, starts)
    worst[:-1] = np.maximum(worst[:-1], e[starts[1:]])
    edges = np.append(x[starts], x[-1])
    return {"edges": [float(v) for v in edges], "ulps": [float(f"{v:.3g}") for v in worst]}


def measure(engines=ENGINES, dtypes=dt.DTYPES, ops=None, points: int = POINTS) -> dict:
    """{engine: {dtype: {op: {"max_ulps", "at", "p99_ulps", "points"}}}}. An engine that
    cannot run an op in a dtype (torch without a kernel) gets "error" with the reason."""
    ops = list(OPS) if ops is None else list(ops)
    out: dict = {}
    for engine in engines:
        for dtype in dtypes:
            for op in ops:
                try:
                    row = measure_one(engine, op, dtype, points)
                except Exception as e:  # noqa: BLE001 - a refusal is a result
                    row = {
                        "max_ulps": None,
                        "at": None,
                        "p99_ulps": None,
                        "error": f"{type(e).__name__}: {e}"[:300],
                    }
                out.setdefault(engine, {}).setdefault(dtype, {})[op] = row
    return out


def write_table(path=SHIPPED, result: dict | None = None, **kwargs) -> dict:
    result = measure(**kwargs) if result is None else result
    Path(path).write_text(json.dumps(result, indent=1, sort_keys=False) + "\n")
    return result


def markdown(result: dict) -> str:
    columns = [(e, d) for e in result for d in result[e]]
    ops = list(dict.fromkeys(op for e, d in columns for op in result[e][d]))
    head = "| op | " + " | ".join(f"{e} {d}" for e, d in columns) + " |"
    rule = "|----|" + "---|" * len(columns)
    rows = []
    for op in ops:
        cells = []
        for e, d in columns:
            r = result[e][d].get(op)
            if r is None or r["max_ulps"] is None:
                cells.append("n/a")
                continue
            cell = f"{_num(r['max_ulps'])} @{r['at']:.3g}"
            if r.get("at_normal") is not None and r["max_ulps_normal"] < r["max_ulps"]:
                cell += f" (normal: {_num(r['max_ulps_normal'])} @{r['at_normal']:.3g})"
            cells.append(cell)
        rows.append(f"| {op} | " + " | ".join(cells) + " |")
    return "\n".join([head, rule, *rows]) + "\n"


def _num(v: float) -> str:
    if not math.isfinite(v):
        return "inf"
    return f"{v:.2g}" if v < 1e3 else f"{v:.1e}"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m gradcheck.harness.accuracy", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", default=str(SHIPPED), help="where the JSON table goes")
    parser.add_argument("--engines", default=",".join(ENGINES))
    parser.add_argument("--dtypes", default=",".join(dt.DTYPES))
    parser.add_argument("--ops", default=None, help="comma-separated; default all")
    parser.add_argument("--points", type=int, default=POINTS)
    args = parser.parse_args(argv)
    start = time.perf_counter()
    result = write_table(
        args.out,
        engines=args.engines.split(","),
        dtypes=args.dtypes.split(","),
        ops=None if args.ops is None else args.ops.split(","),
        points=args.points,
    )
    sys.stdout.write(markdown(result))
    print(f"\n{time.perf_counter() - start:.1f} s; written to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
