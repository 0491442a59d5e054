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

An array-valued f (`vector_valued=True`) is differentiated in every element of its output
from the same evaluations: the estimate, its error (f's rounding per output element), the
kink flags and the rounds are per output element, and an element of x goes round again
while any of its outputs asks for it. Its derivative along one direction is a JVP.
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
    """Per element of x, followed by f's shape for an array-valued f: NaN (False for masks)
    where not checked."""

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
    vector_valued: bool = False,
) -> Derivative:
    """The gradient of the scalar `f` at `x`, element by element.

    indices: flat indices of the elements to check (default: all). step: h relative to
    max(|x_i|, floor). vectorized: whether f takes a stack (B, *x.shape) and returns B
    values; None tries it on three rows and falls back to in-place calls. memory_budget:
    bytes for stacked inputs and intermediates; row_bytes: what one row needs (default:
    four inputs' worth). vector_valued: f returns an array (B of them for a stack), each
    element of which is differentiated: the Derivative's arrays have x's shape followed by
    f's. f is never handed the caller's array; x itself is not changed."""
    x = np.array(x, dtype=np.float64, order="C")
    flat = np.arange(x.size) if indices is None else np.asarray(indices, dtype=np.int64).ravel()
    with np.errstate(all="ignore"):
        f0 = _value_at_x(f(x), vector_valued)
        values = evaluator(f, x, vectorized, memory_budget, row_bytes)
        h = power_of_two(step * np.maximum(np.abs(x.reshape(-1)[flat]), floor))
        found = _rounds(values, f0.reshape(-1), flat, h, _measured_noise(values, flat, h))
    return _scatter(x.shape, f0.shape, flat, found, batched=not hasattr(values, "flat_x"))


def differentiate_along(
    f,
    x,
    vectors,
    *,
    step: float = 1e-3,
    vectorized: bool | None = None,
    memory_budget: int = MEMORY_BUDGET,
    row_bytes: int | None = None,
    vector_valued: bool = False,
) -> Derivative:
    """Directional derivatives of the scalar `f` at `x` along each of `vectors` (k, *x.shape):
    t -> f(x + t @ V) differentiated at t = 0 (one element per direction: same stencil,
    error estimate and kink flags). `vectorized` and `vector_valued` are about f, as in
    `differentiate`: with an array-valued f, the derivatives are (k, *f's shape)."""
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
        vector_valued=vector_valued,
    )


class _Along:
    """t -> f(x + t @ V): f along k directions at once, for one t or a stack of them."""

    def __init__(self, f, x: np.ndarray, vectors: np.ndarray):
        self.f, self.x, self.vectors = f, x, vectors

    def __call__(self, t: np.ndarray):
        t = np.asarray(t)
        return self.f(self.x + (t @ self.vectors).reshape(t.shape[:-1] + self.x.shape))


def _value_at_x(value, vector_valued: bool) -> np.ndarray:
    """f(x) as a float64 array: a 0-d one unless f is `vector_valued`."""
    value = np.asarray(value, dtype=np.float64)
    if vector_valued:
        return value
    if value.size != 1:
        raise ValueError(
            f"differentiate needs a scalar function; f(x) has shape {list(value.shape)}"
        )
    return value.reshape(())


def power_of_two(h):
    """The power of two nearest h (by ratio): a step that moves x, and divides, exactly."""
    return np.exp2(np.round(np.log2(h)))


def _measured_noise(values, flat: np.ndarray, h: np.ndarray):
    """f's own rounding, measured: f at x_i + k h_i / 2^10 (k = 1 .. 7) for three of the
    elements, on one side of x and apart from it (x, or a point just beside it, may sit on a
    kink). At that scale f is a straight line plus its rounding, so the fourth differences
    of the seven values are rounding alone (sqrt(70) times its sigma); the median over the
    three elements holds if one has a kink that close. An ill-conditioned forward (a batch
    norm over equal rows) rounds far above the few eps of |f| that the model takes;
    elsewhere this stays below it. One value per element of f's output."""
    if not len(flat):
        return 0.0
    probed = np.unique(np.linspace(0, len(flat) - 1, min(3, len(flat))).astype(int))
    k = np.arange(1, 8)
    deltas = (h[probed, None] / 2**10) * k
    points = values(np.repeat(flat[probed], len(k)), deltas.ravel())
    fourth = np.diff(points.reshape(len(probed), len(k), -1), n=4, axis=1)
    sigma = np.sqrt(np.mean(fourth**2, axis=1) / 70)  # (probed elements, outputs)
    # the median of the finite ones: none (all NaN or Inf) is no measurement
    median = np.ma.median(np.ma.masked_invalid(sigma), axis=0)
    return MEASURED * np.ma.filled(median, 0.0)


def _rounds(values, f0: np.ndarray, flat: np.ndarray, h: np.ndarray, measured=0.0) -> dict:
    """Stencils, narrower each round for the elements that showed a kink or a rough
    estimate; a smooth element keeps the estimate with the smallest error. `measured`: f's
    rounding noise as measured, where it is above the model's. Every array is per element
    of x (rows) and of f's output `f0` (columns): an entry is open until it is settled, and
    an element of x goes round again while any of its entries is open."""
    shape = (len(flat), f0.size)
    found = {k: np.full(shape, np.nan) for k in ("grad", "err", "kink_distance")}
    found["kink"], still_open = np.zeros(shape, bool), np.ones(shape, bool)
    pending = np.arange(len(flat))
    for round_ in range(MAX_SHRINKS):
        if not len(pending):
            break
        s = _stencil(values, f0, flat[pending], h[pending], measured)
        live, smooth = still_open[pending], ~(s["at_kink"] | s["inside"])
        last = _last_round(round_, s)
        # past the usual rounds, a kink beside x is stepped around from its smooth side
        beside = live & s["beside"] & (round_ >= SHRINKS - 1)
        _one_sided(values, f0, flat[pending], h[pending], s, beside)
        _widen_by_disagreement(found, pending, live & smooth, s["grad"])
        better = live & (smooth | beside) & ~(found["err"][pending] <= s["err"])  # NaN: none yet
        # a kink at x that a narrower stencil's rounding noise would drown (the noise grows
        # as 1/h, the slope's jump does not) is flagged at this scale, the last that sees it
        flagged = live & s["at_kink"] & (last | s["drowns"])
        _keep(found, pending, s, better | flagged, flagged)
        still_open[pending] = live & ((~smooth & ~flagged) | (s["rough"] & better)) & ~last
        pending = pending[still_open[pending].any(axis=1)]
        h[pending] /= NARROWING
    return found


def _keep(found: dict, pending: np.ndarray, s: dict, keep: np.ndarray, flagged: np.ndarray):
    """The stencil's estimates where `keep`, and its kinks where `flagged`, into `found`."""
    for key in ("grad", "err"):
        found[key][pending] = np.where(keep, s[key], found[key][pending])
    found["kink"][pending] |= flagged
    distance = found["kink_distance"][pending]
    found["kink_distance"][pending] = np.where(flagged, s["distance"], distance)


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
    before, err = found["grad"][pending], found["err"][pending]
    had = smooth & np.isfinite(before)
    found["err"][pending] = np.where(had, np.maximum(err, np.abs(grad - before)), err)


def _stencil(values, f0: np.ndarray, flat: np.ndarray, h: np.ndarray, measured) -> dict:
    """The stencil at x_i +- h_i, +- h_i / 2 for each element of `flat`: every array is
    (elements, outputs of f)."""
    deltas = np.stack([-h, -h / 2, h / 2, h], axis=1)
    points = values(np.repeat(flat, 4), deltas.ravel()).reshape(len(flat), 4, -1)
    fm, fm2, fp2, fp = np.moveaxis(points, 1, 0)
    h = h[:, None]  # one step per element of x, for each of its outputs
    d1, d2 = (fp - fm) / (2 * h), (fp2 - fm2) / h
    # at least 64 eps absolute: a function of O(1) quantities is resolved no finer, however
    # small its value (a saturated cross-entropy computes 0 for a true 1e-21 that moves)
    big = np.maximum(np.maximum(np.abs(fm), np.abs(fp)), np.maximum(np.abs(f0), 1.0))
    noise = np.maximum(64 * EPS * big, measured) / h
    slopes = np.stack([fm2 - fm, f0 - fm2, fp2 - f0, fp - fp2], axis=-1) / (h / 2)[..., None]
    steps = np.abs(np.diff(slopes, axis=-1))  # smooth f: three similar steps of f'' h / 2
    # a real kink moves the slope by a sizeable part of the slope itself
    floor = 4 * noise + 1e-3 * np.max(np.abs(slopes), axis=-1)
    at_kink = steps[..., 1] > KINK_FACTOR * (steps[..., 0] + steps[..., 2]) + floor
    # what the next, narrower stencil could still see: its floor, twice over, since there
    # the other steps' noise grows too (a jump 1.02 times that floor went unseen)
    next_floor = 2 * (floor + (NARROWING - 1) * 4 * noise)
    widest = np.max(steps, axis=-1)
    drowns, drowns_inside = steps[..., 1] <= next_floor, widest <= next_floor
    inside = widest > KINK_FACTOR * np.min(steps, axis=-1) + floor
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
        "values": (fm, fm2, fp2, fp),
        "noise": noise,
    }


def _one_sided(
    values, f0: np.ndarray, flat: np.ndarray, h: np.ndarray, s: dict, near: np.ndarray
) -> None:
    """A kink inside the stencil, but not at x (`near`): the derivative from the side
    without it, by the second-order one-sided difference at steps h/2 and h (one more
    evaluation, at x +- 2h), replaces the central one in `s`."""
    if not near.any():
        return
    left2, left1, right1, right2 = np.moveaxis(s["slopes"], -1, 0)
    side = np.where(np.abs(right2 - right1) <= np.abs(left1 - left2), 1.0, -1.0)
    fm, fm2, fp2, fp = s["values"]
    half, whole = np.where(side > 0, fp2, fm2), np.where(side > 0, fp, fm)  # x + side h/2, h
    double, h = _at_twice_the_step(values, flat, h, side, near), h[:, None]
    e_half = side * (-3 * f0 + 4 * half - whole) / h
    e_whole = side * (-3 * f0 + 4 * whole - double) / (2 * h)
    s["grad"] = np.where(near, e_half, s["grad"])
    s["err"] = np.where(near, np.abs(e_half - e_whole) + 2 * s["noise"], s["err"])


def _at_twice_the_step(values, flat, h: np.ndarray, side: np.ndarray, near: np.ndarray):
    """f at x + 2 h on each entry's `side`, where `near` (NaN elsewhere): one evaluation
    per element of x and side that any of its outputs needs."""
    wanted = np.stack([(near & (side > 0)).any(axis=1), (near & (side < 0)).any(axis=1)], 1)
    rows, which = np.nonzero(wanted)  # in the order of the elements
    by_side = np.full((2,) + near.shape, np.nan)
    by_side[which, rows] = values(flat[rows], 2 * np.where(which == 0, 1.0, -1.0) * h[rows])
    return np.where(side > 0, by_side[0], by_side[1])


def _kink_distance(slopes: np.ndarray, h: np.ndarray) -> np.ndarray:
    """Where a kink between x - h/2 and x + h/2 lies, from how much the slope of the inner
    interval it falls in mixes the two outer slopes (exact for a piecewise-linear f)."""
    left2, left1, right1, right2 = np.moveaxis(slopes, -1, 0)
    jump = left2 - right2
    with np.errstate(all="ignore"):
        t = (h / 2) * ((right1 - right2) + (left1 - left2)) / jump
    return np.clip(np.abs(np.nan_to_num(t, nan=0.0)), 0.0, h / 2)


def _scatter(shape, out_shape, flat: np.ndarray, found: dict, batched: bool) -> Derivative:
    """Per element of x (of `shape`) and of f's output (of `out_shape`), NaN or False where
    not checked."""
    size = int(np.prod(shape))

    def full(computed: np.ndarray, fill):
        out = np.full((size,) + out_shape, fill, dtype=type(fill))
        out[flat] = computed.reshape((len(flat),) + out_shape)
        return out.reshape(shape + out_shape)

    return Derivative(
        full(found["grad"], np.nan),
        full(found["err"], np.nan),
        full(found["kink"], False),
        full(found["kink_distance"], np.nan),
        full(np.ones((len(flat),) + out_shape, bool), False),
        batched,
    )
