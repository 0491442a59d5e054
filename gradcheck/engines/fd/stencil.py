"""`differentiate(f, x)`: the Richardson gradient of a scalar function, with a per-element
error estimate and kink flags, for any callable.

For each checked element x_i, f is evaluated at x_i +- h and x_i +- h/2 (h a power of two,
so that every stencil point is exact in floating point), giving
- the Richardson extrapolation (4 D(h/2) - D(h)) / 3 as the derivative;
- an error estimate |D(h) - D(h/2)| plus rounding noise;
- the four one-sided slopes across the stencil. On a smooth function their three steps are
  alike (each about f'' h / 2). A step much larger than the others is a kink: at x_i when
  it is the middle step, elsewhere in the stencil otherwise -- downstream of x_i, where a
  relu input or the top two values of a max are closer than h apart.
Any kink makes the element go round again with a stencil 16 times narrower, up to three
times: a nearby kink falls outside a narrow enough stencil and the element is judged as
the differentiable point it is. A kink still inside the fourth stencil but not at x_i
is stepped around with a one-sided difference from its smooth side, and narrower stencils
are tried while rounding noise lets the kink be seen (up to MAX_SHRINKS): two kinks closer
than the stencil, one of them at x_i, look like a single kink beside x_i until one of them
falls outside; a narrower estimate replaces the one-sided one only where its error is
smaller. A kink at x_i stays at every scale and is flagged, with its estimated distance
from x_i (under half the narrowest stencil), or at the last scale whose rounding noise
still lets it be seen. That noise is f's rounding, 64 eps max(|f|, 1) or, where more, as
measured beside x (`_measured_noise`).
A smooth element whose error estimate is a sizeable part of its derivative (the function
bends within the stencil: a chaotic recurrence, a steep exponential) goes round again too,
and keeps whichever estimate has the smaller error: at h the four points can agree by chance
on a slope far from the tangent, where a narrower stencil sees the tangent.

Rounds are vectorized over elements: each round is one call of the evaluator (in place or
batched, see `evaluate`), and only the elements with a kink or a rough estimate go round
again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .evaluate import MEMORY_BUDGET, ROW_FACTOR, accepts_stacks, evaluator

EPS = np.finfo(np.float64).eps
KINK_FACTOR = 10.0  # a slope step this many times the others' is a kink
SHRINKS = 4  # stencils tried, each 16 times narrower, to step past a nearby kink
MAX_SHRINKS = 8  # ... and, for a kink still beside x, while rounding lets it be seen
NARROWING = 16.0
MEASURED = 10.0  # f's rounding noise: this many of its measured sigmas
ROUGH = 1e-3  # an estimate whose truncation error is above this fraction of it
# goes round again with a narrower stencil


@dataclass
class Derivative:
    """Per element of x: NaN (False for masks) where not checked."""

    grad: np.ndarray
    err: np.ndarray  # estimated absolute error of grad
    kink: np.ndarray  # bool: x sits on a non-differentiable point
    kink_distance: np.ndarray  # how far the kink was from x, where one was flagged
    checked: np.ndarray  # bool: computed
    batched: bool  # evaluated through stacked calls (or in place)


def differentiate(
    f,
    x,
    *,
    indices=None,
    step: float = 1e-3,
    floor: float = 1e-2,
    vectorized: bool | None = None,
    memory_budget: int = MEMORY_BUDGET,
    row_bytes: int | None = None,
) -> Derivative:
    """The gradient of the scalar `f` at `x`, element by element.

    indices: flat indices of the elements to check (default: all). step: h relative to
    max(|x_i|, floor). vectorized: whether f takes a stack (B, *x.shape) and returns B
    values; None tries it on three rows and falls back to in-place calls. memory_budget:
    bytes for stacked inputs and intermediates; row_bytes: what one row needs (default:
    four inputs' worth). f is never handed the caller's array; x itself is not changed."""
    x = np.array(x, dtype=np.float64, order="C")
    flat = np.arange(x.size) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    with np.errstate(all="ignore"):
        f0 = _scalar(f(x))
        values = evaluator(f, x, vectorized, memory_budget, row_bytes)
        h = _power_of_two(step * np.maximum(np.abs(x.reshape(-1)[flat]), floor))
        found = _rounds(values, f0, flat, h, _measured_noise(values, flat, h))
    return _scatter(x.shape, flat, found, batched=not hasattr(values, "flat_x"))


def differentiate_along(
    f,
    x,
    vectors,
    *,
    step: float = 1e-3,
    vectorized: bool | None = None,
    memory_budget: int = MEMORY_BUDGET,
    row_bytes: int | None = None,
) -> Derivative:
    """Directional derivatives of the scalar `f` at `x` along each of `vectors` (k, *x.shape):
    t -> f(x + t @ V) differentiated at t = 0 (one element per direction: same stencil,
    error estimate and kink flags). `vectorized` is about f, as in `differentiate`."""
    x = np.asarray(x, dtype=np.float64)
    vectors = np.asarray(vectors, dtype=np.float64).reshape(-1, x.size)
    if vectorized is None:
        vectorized = accepts_stacks(f, np.array(x, order="C"))
    along = _Along(f, x, vectors)
    row_bytes = (row_bytes or ROW_FACTOR * max(x.nbytes, 8)) + 2 * x.nbytes
    return differentiate(
        along,
        np.zeros(len(vectors)),
        step=step,
        floor=1.0,
        vectorized=vectorized,
        memory_budget=memory_budget,
        row_bytes=row_bytes,
    )


class _Along:
    """t -> f(x + t @ V): f along k directions at once, for one t or a stack of them."""

    def __init__(self, f, x: np.ndarray, vectors: np.ndarray):
        self.f, self.x, self.vectors = f, x, vectors

    def __call__(self, t: np.ndarray):
        t = np.asarray(t)
        return self.f(self.x + (t @ self.vectors).reshape(t.shape[:-1] + self.x.shape))


def _scalar(value) -> float:
    if np.size(value) != 1:
        raise ValueError(
            f"differentiate needs a scalar function; f(x) has shape {list(np.shape(value))}"
        )
    return float(np.asarray(value).reshape(()))


def _power_of_two(h: np.ndarray) -> np.ndarray:
    return np.exp2(np.round(np.log2(h)))


def _measured_noise(values, flat: np.ndarray, h: np.ndarray) -> float:
    """f's own rounding, measured: f at x_i + k h_i / 2^10 (k = 1 .. 7) for three of the
    elements, on one side of x and apart from it (x, or a point just beside it, may sit on a
    kink). At that scale f is a straight line plus its rounding, so the fourth differences
    of the seven values are rounding alone (sqrt(70) times its sigma); the median over the
    three elements holds if one has a kink that close. An ill-conditioned forward (a batch
    norm over equal rows) rounds far above the few eps of |f| that the model takes;
    elsewhere this stays below it."""
    if not len(flat):
        return 0.0
    probed = np.unique(np.linspace(0, len(flat) - 1, min(3, len(flat))).astype(int))
    k = np.arange(1, 8)
    deltas = (h[probed, None] / 2**10) * k
    points = values(np.repeat(flat[probed], len(k)), deltas.ravel()).reshape(len(probed), -1)
    fourth = np.diff(points, n=4, axis=1)
    sigma = np.sqrt(np.mean(fourth**2, axis=1) / 70)
    sigma = sigma[np.isfinite(sigma)]
    return MEASURED * float(np.median(sigma)) if sigma.size else 0.0


def _rounds(values, f0: float, flat: np.ndarray, h: np.ndarray, measured: float = 0.0) -> dict:
    """Stencils, narrower each round for the elements that showed a kink or a rough
    estimate; a smooth element keeps the estimate with the smallest error. `measured`: f's
    rounding noise as measured, where it is above the model's."""
    found = {k: np.full(len(flat), np.nan) for k in ("grad", "err", "kink_distance")}
    found["kink"] = np.zeros(len(flat), bool)
    pending = np.arange(len(flat))
    for round_ in range(MAX_SHRINKS):
        s = _stencil(values, f0, flat[pending], h[pending], measured)
        smooth = ~(s["at_kink"] | s["inside"])
        last = _last_round(round_, s)
        # past the usual rounds, a kink beside x is stepped around from its smooth side
        beside = s["beside"] & (round_ >= SHRINKS - 1)
        _one_sided(values, f0, flat[pending], h[pending], s, beside)
        _widen_by_disagreement(found, pending, smooth, s["grad"])
        better = (smooth | beside) & ~(found["err"][pending] <= s["err"])  # NaN: none yet
        # a kink at x that a narrower stencil's rounding noise would drown (the noise grows
        # as 1/h, the slope's jump does not) is flagged at this scale, the last that sees it
        flagged = s["at_kink"] & (last | s["drowns"])
        keep = better | flagged
        for key in ("grad", "err"):
            found[key][pending[keep]] = s[key][keep]
        found["kink"][pending[flagged]] = True
        found["kink_distance"][pending[flagged]] = s["distance"][flagged]
        pending = pending[((~smooth & ~flagged) | (s["rough"] & better)) & ~last]
        if not len(pending):
            break
        h[pending] /= NARROWING
    return found


def _last_round(round_: int, s: dict) -> np.ndarray:
    """Which elements end at this round: all of them after SHRINKS rounds, except a kink
    beside x (not at it) that a narrower stencil still sees above its rounding noise: two
    kinks closer than this stencil, one of them at x, look like a single kink beside x,
    and only a narrower stencil tells them apart."""
    still_seen = s["beside"] & ~s["drowns_inside"]
    return (round_ >= SHRINKS - 1) & ~(still_seen & (round_ < MAX_SHRINKS - 1))


def _widen_by_disagreement(
    found: dict, pending: np.ndarray, smooth: np.ndarray, grad: np.ndarray
) -> None:
    """A wider stencil's error estimate is only as good as its agreement with the narrower
    one: where the two estimates differ by more than it claims, the difference is its error."""
    had = smooth & np.isfinite(found["grad"][pending])
    kept = pending[had]
    found["err"][kept] = np.maximum(found["err"][kept], np.abs(grad[had] - found["grad"][kept]))


def _stencil(values, f0: float, flat: np.ndarray, h: np.ndarray, measured: float) -> dict:
    deltas = np.stack([-h, -h / 2, h / 2, h], axis=1)
    fm, fm2, fp2, fp = values(np.repeat(flat, 4), deltas.ravel()).reshape(-1, 4).T
    d1, d2 = (fp - fm) / (2 * h), (fp2 - fm2) / h
    # at least 64 eps absolute: a function of O(1) quantities is resolved no finer, however
    # small its value (a saturated cross-entropy computes 0 for a true 1e-21 that moves)
    big = np.maximum.reduce([np.abs(fm), np.abs(fp), np.full(len(h), max(abs(f0), 1.0))])
    noise = np.maximum(64 * EPS * big, measured) / h
    slopes = np.stack([fm2 - fm, f0 - fm2, fp2 - f0, fp - fp2], axis=1) / (h / 2)[:, None]
    steps = np.abs(np.diff(slopes, axis=1))  # smooth f: three similar steps of f'' h / 2
    # a real kink moves the slope by a sizeable part of the slope itself
    floor = 4 * noise + 1e-3 * np.max(np.abs(slopes), axis=1)
    at_kink = steps[:, 1] > KINK_FACTOR * (steps[:, 0] + steps[:, 2]) + floor
    # what the next, narrower stencil could still see: its floor, twice over, since there
    # the other steps' noise grows too (a jump 1.02 times that floor went unseen)
    next_floor = 2 * (floor + (NARROWING - 1) * 4 * noise)
    drowns, drowns_inside = steps[:, 1] <= next_floor, np.max(steps, axis=1) <= next_floor
    inside = np.max(steps, axis=1) > KINK_FACTOR * np.min(steps, axis=1) + floor
    grad, truncation = (4 * d2 - d1) / 3, np.abs(d2 - d1)
    # the function bends within the stencil: a 16 times narrower one cuts the truncation
    # error 256-fold, and helps where that error is well above the rounding noise
    rough = (truncation > ROUGH * np.abs(grad)) & (truncation > NARROWING * noise)
    return {
        "grad": grad,
        "err": truncation + noise,
        "at_kink": at_kink,
        "drowns": drowns,
        "drowns_inside": drowns_inside,
        "rough": rough,
        "inside": inside,
        "beside": inside & ~at_kink,
        "distance": _kink_distance(slopes, h),
        "slopes": slopes,
        "values": np.stack([fm, fm2, fp2, fp], axis=1),
        "noise": noise,
    }


def _one_sided(
    values, f0: float, flat: np.ndarray, h: np.ndarray, s: dict, near: np.ndarray
) -> None:
    """A kink inside the stencil, but not at x (`near`): the derivative from the side
    without it, by the second-order one-sided difference at steps h/2 and h (one more
    evaluation, at x +- 2h), replaces the central one in `s`."""
    if not near.any():
        return
    left2, left1, right1, right2 = s["slopes"][near].T
    side = np.where(np.abs(right2 - right1) <= np.abs(left1 - left2), 1.0, -1.0)
    hn = h[near]
    columns = np.where(side > 0, 2, 1), np.where(side > 0, 3, 0)  # x + side h/2, x + side h
    rows = np.arange(near.sum())
    half, whole = s["values"][near][rows, columns[0]], s["values"][near][rows, columns[1]]
    double = values(flat[near], 2 * side * hn)
    e_half = side * (-3 * f0 + 4 * half - whole) / hn
    e_whole = side * (-3 * f0 + 4 * whole - double) / (2 * hn)
    s["grad"][near] = e_half
    s["err"][near] = np.abs(e_half - e_whole) + 2 * s["noise"][near]


def _kink_distance(slopes: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Where a kink between x - h/2 and x + h/2 lies, from how much the slope of the inner
    interval it falls in mixes the two outer slopes (exact for a piecewise-linear f)."""
    left2, left1, right1, right2 = slopes.T
    jump = left2 - right2
    with np.errstate(all="ignore"):
        t = (h / 2) * ((right1 - right2) + (left1 - left2)) / jump
    return np.clip(np.abs(np.nan_to_num(t, nan=0.0)), 0.0, h / 2)


def _scatter(shape, flat: np.ndarray, found: dict, batched: bool) -> Derivative:
    def full(key, fill):
        out = np.full(int(np.prod(shape)), fill, dtype=type(fill))
        out[flat] = found[key]
        return out.reshape(shape)

    checked = np.zeros(int(np.prod(shape)), bool)
    checked[flat] = True
    return Derivative(
        full("grad", np.nan),
        full("err", np.nan),
        full("kink", False),
        full("kink_distance", np.nan),
        checked.reshape(shape),
        batched,
    )
