"""How much rounding error each element of a value or gradient can carry in a dtype.

Monte Carlo arithmetic on the numpy reference: the same graph runs forward and backward in
float64, several times, with every floating intermediate that an op (forward or gradient
rule) computes multiplied by (1 + d), d uniform in [-eps, eps] of the case's dtype: what
each rounding step of an evaluation in that dtype (float64, float32, bfloat16, float16) may
do; a sum or a matrix product also errs by eps * sqrt(n * (the sum of its terms' squares +
its total^2 / 3)), as its partial sums round (see `Noise.of_sum`).
The spread of the results around the unperturbed float64 ones is the element's rounding
scale. Where terms cancel
(1 - tanh^2 near saturation, a sum of opposite terms, a gradient that is zero by symmetry)
the perturbed terms no longer cancel, and the scale follows the terms' magnitudes, not the
element's own small size. Any op works, with no rule of its own.
"""

from __future__ import annotations

import dataclasses
import zlib
from functools import partial
from typing import Mapping

import numpy as np

from reference_impls import JointPart, backprop, unbroadcast

from ..dtypes import DTYPES, as_float64, info
from ..engines.base import EngineOutput
from ..engines.numpy_engine import NumpyEngine

SAMPLES = 8  # perturbed evaluations: the root-mean-square of 8 is a steady scale
# Half of a dtype's smallest subnormal: the most one of its rounding steps errs where its
# result underflows. float64's (2.5e-324) never shows beside its eps, and subnormal operands
# would slow every noisy product; float64 runs model relative rounding alone.
UNDERFLOW = {d: info(d).smallest_subnormal / 2 for d in DTYPES if d != "float64"}
# Whole numbers below this are exact in every dtype modelled here, as below 2 / eps in any one
# (an exponent k - 1 must stay 1); float64's limit stays float32's (2^24), as it always was.
WHOLE = {d: min(2.0**24, 2 / info(d).eps) for d in DTYPES}


class Noise:
    """Multiplies floating arrays by (1 + d), d ~ U[-eps, eps], and adds u * `tiny`, u the
    same draw in [-1, 1]: where a result underflows, rounding errs by up to half the
    smallest subnormal whatever the result's size; integer data passes as is. Whole
    numbers below `whole` (exact in the dtype) are not rounded.

    The uniform draws come from a pool filled a block at a time: the same stream, in the
    same order, as one draw per array (a Generator's doubles do not depend on how they are
    requested), without a generator call for every small array."""

    POOL = 1 << 15

    def __init__(
        self, eps: float, rng: np.random.Generator, tiny: float = 0.0, whole: float = 2.0**24
    ):
        self.eps, self.rng, self.tiny, self.whole = eps, rng, tiny, whole
        self._pool, self._factors, self._floors, self._at = np.empty(0), np.empty(0), None, 0

    def _start(self, size: int) -> int:
        """Where the next `size` draws begin: u ~ U[-1, 1] in `_pool`, 1 + eps * u in
        `_factors` (this runs for every array an op makes: kept to a few steps)."""
        at = self._at
        if at + size > len(self._pool):
            rest = self._pool[at:]
            self._pool = np.concatenate([rest, self.rng.uniform(-1, 1, max(self.POOL, size))])
            self._factors, at = 1 + self.eps * self._pool, 0
            self._floors = self.tiny * self._pool if self.tiny else None
        self._at = at + size
        return at

    def __call__(self, x, operands=None):
        """`operands`: what the ufunc that made `x` took, where known: a whole number is
        exact only as arithmetic on whole numbers (an exponent k - 1 must stay 1); one made
        from others (tanh(-19.2) rounds to -1, 1 + 4e-18 to 1) is a rounding like any."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            return x
        at = self._start(x.size)
        rounded = np.asarray(x * self._factors[at : self._at].reshape(x.shape))
        if self._floors is not None:
            rounded += self._floors[at : self._at].reshape(x.shape)
        whole = np.rint(x) == x
        if np.count_nonzero(whole):
            exact = whole & (np.abs(x) < self.whole) & _of_whole_numbers(operands, x.shape)
            np.copyto(rounded, x, where=exact)
        return rounded

    def widened(self, x, ulps: float):
        """`x` rounded once more, by up to `ulps` eps: the result of an engine's op that was
        measured that many ulps from the true value (harness/accuracy.py)."""
        x = np.asarray(x)
        if x.dtype.kind != "f":
            return x
        at = self._start(x.size)
        return np.asarray(x * (1 + ulps * self.eps * self._pool[at : self._at].reshape(x.shape)))

    def of_sum(self, total, squares, count: int):
        """A sum of `count` terms, whose squares add up to `squares`: each partial sum is
        rounded, so the error grows with the terms' magnitudes, however much they cancel,
        and with the partial sums' own: terms of one sign make them grow to the total, and
        a sum taken in order (a float32 matmul's) rounds each. Over the n partial sums,
        their squares add up to about n total^2 / 3 (terms in no particular order)."""
        spread = self.eps * np.sqrt(count * (np.asarray(squares) + np.square(total) / 3))
        at = self._start(np.size(total))
        return np.asarray(total + spread * self._pool[at : self._at].reshape(np.shape(total)))


def _of_whole_numbers(operands, shape) -> np.ndarray | bool:
    """Per element of a result: whether each floating operand is a whole number there
    (every one, for an operand that does not broadcast to the result: a reduction's)."""
    flags = True
    for a in operands or ():
        a = np.asarray(a)
        if a.dtype.kind == "f":
            whole = np.rint(a) == a
            try:
                flags = flags & np.broadcast_to(whole, shape)
            except ValueError:
                flags = flags & bool(whole.all())
    return flags


def _sum_of_squares(ufunc, method, inputs, kwargs):
    """For a sum (add.reduce: np.sum, np.mean) or a sum of products (matmul): the same
    sum over the terms' squares, and the number of terms in each; None for other ufuncs."""
    if ufunc is np.add and method == "reduce":
        x = np.asarray(inputs[0])
        total = np.add.reduce(x * x, *inputs[1:], **kwargs)
        return total, max(x.size // max(np.size(total), 1), 1)
    if ufunc is np.matmul and method == "__call__" and np.ndim(inputs[0]) >= 1:
        a, b = (np.asarray(x) for x in inputs[:2])
        return np.matmul(a * a, b * b), a.shape[-1]
    return None


# Ufuncs whose result is one of their arguments, or its exact negation or size: no rounding
# (and a max must stay equal to the element it picked, which its gradient rule looks for)
EXACT_UFUNCS = {
    np.maximum,
    np.minimum,
    np.fmax,
    np.fmin,
    np.absolute,
    np.negative,
    np.positive,
    np.sign,
}
SUMS = {np.add, np.matmul}  # ufuncs with a method that sums (add.reduce, matmul)
# Array functions whose floating result is a fresh sum of products (not a view or a copy);
# those of two operands also err with the magnitudes of the terms (einsum: only relatively)
PRODUCTS = {np.dot, np.tensordot, np.inner, np.vdot, np.einsum}
TWO_OPERANDS = {np.dot, np.tensordot, np.inner, np.vdot}


class Noisy(np.ndarray):
    """An array whose every floating ufunc result (and sum of products) inside an op is
    rounded at random: the rounding of intermediates an op never returns (the 1 + tiny
    inside a saturated log-sum-exp, p - 1 for a probability near 1)."""

    noise: Noise | None = None

    def __array_finalize__(self, obj):
        self.noise = getattr(obj, "noise", None)

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o) for o in out)
        inputs = [x.view(np.ndarray) if isinstance(x, Noisy) else x for x in inputs]
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if ufunc in EXACT_UFUNCS:
            return result if out is not None else _view(result, self.noise)
        squares = (
            _sum_of_squares(ufunc, method, inputs, kwargs)
            if out is None and ufunc in SUMS
            else None
        )
        if squares is not None and np.asarray(result).dtype.kind == "f":
            result = self.noise.of_sum(result, *squares)
        if out is not None:
            for o in kwargs["out"]:
                o[...] = self.noise(o)
            return out[0] if len(out) == 1 else out
        if isinstance(result, tuple):
            return tuple(noisy(r, self.noise, inputs) for r in result)
        return None if result is None else noisy(result, self.noise, inputs)

    def __array_function__(self, func, types, args, kwargs):
        result = super().__array_function__(func, types, args, kwargs)
        if func in TWO_OPERANDS and np.size(result):
            a, b = (np.asarray(_plain(x)) for x in args[:2])
            count = int(round(np.sqrt(a.size * b.size / np.size(result))))  # terms per sum
            squares = func(a * a, b * b, *args[2:], **kwargs)
            result = self.noise.of_sum(result, squares, max(count, 1))
        if func in PRODUCTS:
            return noisy(result, self.noise)
        # a function that only moves or selects values (pad, concatenate, stack) is exact,
        # but what is later computed from its result must still round
        return _view(result, self.noise) if isinstance(result, np.ndarray) else result


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, Noisy) else x


def noisy(x, noise: Noise, operands=None):
    """`x` rounded at random, as a `Noisy` array that keeps rounding what is made from it."""
    return _view(noise(x, operands), noise)


def _view(x, noise: Noise):
    """`x` as it is, as a `Noisy` array (integer data stays a plain array)."""
    x = np.asarray(x)
    if x.dtype.kind != "f":
        return x
    view = x.view(Noisy)
    view.noise = noise
    return view


class Perturbed:
    """An op's forward or gradient rule evaluated in random rounding: every floating
    intermediate it computes from its arguments is rounded where it is made. Arguments
    enter as they are (each was rounded where its op made it, and a gradient rule must see
    the very values the forward saw), and a result that only selects or moves values (a
    max, a reshape) comes out exact, as it does in any engine."""

    def __init__(self, fn, noise: Noise, ulps: float = 0.0):
        self.fn, self.noise, self.ulps = fn, noise, ulps

    def __call__(self, *args, **attrs):
        result = self.fn(*(_view(a, self.noise) for a in args), **attrs)
        if isinstance(result, tuple):  # a joint backward: one per argument
            return tuple(np.asarray(r).view(np.ndarray) for r in result)
        if self.ulps:
            result = self.noise.widened(np.asarray(result).view(np.ndarray), self.ulps)
        return np.asarray(result).view(np.ndarray)


def perturbed_ops(ops: Mapping, noise: Noise, widened: Mapping[str, float] | None = None) -> dict:
    """A copy of an op table in which every forward and gradient rule carries noise (any
    other field of a `Primitive` is kept as it is). The parts of a joint backward stay
    parts of one perturbed pass, which the executor runs once per node, as it runs the
    exact one. `widened`: op -> ulps by which an engine's forward of it errs beyond
    rounding (its value, and so every rule that reads it, carries that too)."""
    widened = widened or {}
    return {
        name: dataclasses.replace(
            prim,
            forward=Perturbed(prim.forward, noise, widened.get(name, 0.0)),
            grads=_perturbed_rules(prim.grads, noise),
        )
        for name, prim in ops.items()
    }


def _perturbed_rules(rules: tuple, noise: Noise) -> tuple:
    joints: dict = {}

    def perturbed(rule):
        if rule is None:
            return None
        if isinstance(rule, JointPart):
            return JointPart(
                joints.setdefault(rule.joint, Perturbed(rule.joint, noise)), rule.index
            )
        return Perturbed(rule, noise)

    return tuple(perturbed(r) for r in rules)


def rounded_executor(noise: Noise):
    """The backprop executor with its own arithmetic rounded too: the sum of a broadcast
    gradient back to its input's shape (a bias's gradient is a sum over the batch) and the
    addition of the gradients of a value that fans out."""
    return partial(
        backprop, combine=partial(_rounded_add, noise), reduce=partial(_rounded_unbroadcast, noise)
    )


def _rounded_add(noise: Noise, a, b):
    return np.asarray(_view(a, noise) + _view(b, noise)).view(np.ndarray)


def _rounded_unbroadcast(noise: Noise, g, shape):
    return np.asarray(unbroadcast(_view(g, noise), shape)).view(np.ndarray)


def rounding_scale(
    graph,
    inputs: Mapping[str, np.ndarray],
    wrt: list[str],
    cotangent,
    dtype: str,
    seed: str = "",
    ops: Mapping | None = None,
    widened: Mapping[str, float] | None = None,
) -> EngineOutput:
    """Per element of the value and of each gradient: the root-mean-square deviation of
    noisy float64 evaluations from the exact-as-can-be float64 one, with noise at the
    rounding unit of `dtype` (and `widened`, op -> ulps, for an engine whose op is measured
    that far off). Seeded by `seed` (the case's name): the same on every run."""
    import reference_impls

    ops = reference_impls.OPS if ops is None else ops
    inputs = {k: as_float64(v) for k, v in inputs.items()}
    cotangent = np.asarray(cotangent, dtype=np.float64)
    exact = NumpyEngine(ops).vjp(graph, inputs, wrt, cotangent)
    noise = _noise(info(dtype).name, seed)
    noisy = NumpyEngine(
        perturbed_ops({op: ops[op] for op in graph.ops() & set(ops)}, noise, widened),
        executor=rounded_executor(noise),
    )
    runs = [noisy.vjp(graph, inputs, wrt, cotangent) for _ in range(SAMPLES)]
    return EngineOutput(
        _rms([r.value for r in runs], exact.value),
        {w: _rms([r.grads[w] for r in runs], exact.grads[w]) for w in wrt},
    )


def _noise(dtype: str, seed: str) -> Noise:
    return Noise(
        info(dtype).eps,
        np.random.default_rng(zlib.crc32(seed.encode())),
        UNDERFLOW.get(dtype, 0.0),
        WHOLE[dtype],
    )


def _rms(samples: list, exact) -> np.ndarray:
    deviations = np.asarray(samples, dtype=np.float64) - np.asarray(exact, dtype=np.float64)
    return root_mean_square(deviations, axis=0)


def root_mean_square(x: np.ndarray, axis=None) -> np.ndarray:
    """sqrt(mean(x ** 2)) computed in units of the largest |x|: the square of 1e-170 or
    less underflows to 0 (a subnormal gradient's scale must not), that of 1e155 or more
    overflows."""
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        largest = np.max(np.abs(x), axis=axis, initial=0.0)
        unit = np.where(largest > 0, largest, 1.0)
        if axis is not None:
            unit = np.expand_dims(unit, axis)
        return largest * np.sqrt(np.mean((x / unit) ** 2, axis=axis))


ENGINE_FACTOR = 8.0  # an exact engine's error stays within 8 rounding scales (measured:
# |numpy - torch| at most 3 scales over 1,300 random tensors)


class RoundingBound:
    """Engine-shaped: `vjp` returns, for the value and each gradient, the per-element bound
    on the rounding error an exact engine may carry in the cotangent's dtype, so that the
    runner gets it for a VJP or a full Jacobian alike."""

    name = "rounding"

    def __init__(self, seed: str = "", widened: Mapping[str, float] | None = None):
        self.seed, self.widened = seed, widened

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        scale = rounding_scale(
            graph,
            inputs,
            wrt,
            cotangent,
            np.asarray(cotangent).dtype.name,
            self.seed,
            widened=self.widened,
        )
        return EngineOutput(
            ENGINE_FACTOR * scale.value, {w: ENGINE_FACTOR * g for w, g in scale.grads.items()}
        )
