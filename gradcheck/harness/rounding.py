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
import math
import string
import zlib
from collections.abc import Callable, Mapping
from functools import partial

import numpy as np

from reference_impls import JointPart, TangentPart, backprop, jvp, unbroadcast

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
        self._pool, self._factors, self._at = np.empty(0), np.empty(0), 0
        self._floors: np.ndarray | None = None

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

    def widened(self, x, ulps):
        """`x` rounded once more, by up to `ulps` eps (a number, or one per element): the
        result of an engine's op that was measured that many ulps from the true value
        (harness/accuracy.py)."""
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
    flags: np.ndarray | bool = True
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


def _products_of_two(func, args, kwargs):
    """dot, tensordot, inner, vdot: the same function of the operands squared; each sum
    has n terms, n^2 = a.size * b.size / result.size (the sizes a and b share, in each)."""
    a, b = (np.asarray(_plain(x)) for x in args[:2])
    squares = func(a * a, b * b, *args[2:], **kwargs)
    return squares, round(np.sqrt(a.size * b.size / np.size(squares)))


LETTERS = string.ascii_uppercase + string.ascii_lowercase  # einsum's sublist labels, in order


def _einsum_products(func, args, kwargs):
    """einsum: the same einsum of the operands squared; each sum has as many terms as the
    product of the sizes of the letters it contracts (its operands' letters that its result
    lacks; an ellipsis always stays in the result). None for one operand that contracts
    nothing: it only moves values (a transpose, a diagonal)."""
    if isinstance(args[0], str):
        subscripts, operands = args[0].replace(" ", ""), args[1:]
    else:  # einsum(a, [0, 1], b, [1, 2], [0, 2]): sublists as letters
        lists = [_letters(sub) for sub in args[1::2]]
        operands = args[0::2][: len(lists)]
        subscripts = ",".join(lists) + ("->" + _letters(args[-1]) if len(args) % 2 else "")
    operands = [np.asarray(_plain(x)) for x in operands]
    inputs, arrow, result = subscripts.partition("->")
    sizes: dict = {}
    for term, op in zip(inputs.split(","), operands):
        head, _, tail = term.partition("...")
        for letter, size in (*zip(head, op.shape), *zip(tail[::-1], op.shape[::-1])):
            sizes[letter] = size if sizes.get(letter, 1) == 1 else sizes[letter]  # 1 broadcasts
    if not arrow:  # implicit: the result has the letters that occur once
        result = "".join(c for c in sizes if inputs.count(c) == 1)
    count = math.prod(size for letter, size in sizes.items() if letter not in result)
    if count <= 1 and len(operands) == 1:
        return None
    return np.einsum(subscripts, *(op * op for op in operands), **kwargs), count


def _letters(sublist) -> str:
    """An einsum sublist as subscripts: labels 0-25 are A-Z, 26-51 a-z."""
    return "".join("..." if k is Ellipsis else LETTERS[k] for k in sublist)


# Array functions whose floating result is a fresh product of operands (not a view or a
# copy), rounded where made. A sum of products also errs with the magnitudes of its terms,
# as a matmul does: each of these gives the sum of the terms' squares and their number, per
# element of the result (one term: a lone product, rounded once)
SUMS_OF_PRODUCTS = {
    np.dot: _products_of_two,
    np.tensordot: _products_of_two,
    np.inner: _products_of_two,
    np.vdot: _products_of_two,
    np.einsum: _einsum_products,
}
PRODUCTS = {*SUMS_OF_PRODUCTS, np.outer}


class Noisy(np.ndarray):
    """An array whose every floating ufunc result (and sum of products) inside an op is
    rounded at random: the rounding of intermediates an op never returns (the 1 + tiny
    inside a saturated log-sum-exp, p - 1 for a probability near 1)."""

    noise: Noise | None = None

    def __array_finalize__(self, obj):
        self.noise = getattr(obj, "noise", None)

    def _noise(self) -> Noise:
        """The noise this array rounds with: `_view` sets it, what is made from it inherits it."""
        assert self.noise is not None, "a Noisy array made without `_view`"
        return self.noise

    def __array_ufunc__(self, ufunc, method, *inputs, **kwargs):
        noise = self._noise()
        out = kwargs.get("out")
        if out is not None:
            kwargs["out"] = tuple(np.asarray(o) for o in out)
        inputs = tuple(x.view(np.ndarray) if isinstance(x, Noisy) else x for x in inputs)
        result = getattr(ufunc, method)(*inputs, **kwargs)
        if ufunc in EXACT_UFUNCS:
            return result if out is not None else _view(result, noise)
        squares = (
            _sum_of_squares(ufunc, method, inputs, kwargs)
            if out is None and ufunc in SUMS
            else None
        )
        if squares is not None and np.asarray(result).dtype.kind == "f":
            result = noise.of_sum(result, *squares)
        if out is not None:
            for o in kwargs["out"]:
                o[...] = noise(o)
            return out[0] if len(out) == 1 else out
        if isinstance(result, tuple):
            return tuple(noisy(r, noise, inputs) for r in result)
        return None if result is None else noisy(result, noise, inputs)

    def __array_function__(self, func, types, args, kwargs):
        noise = self._noise()
        result = super().__array_function__(func, types, args, kwargs)
        terms = SUMS_OF_PRODUCTS.get(func)
        if terms is not None and np.size(result) and np.asarray(result).dtype.kind == "f":
            terms = terms(func, args, {k: v for k, v in kwargs.items() if k != "out"})
            if terms is None:
                return _view(result, noise)
            if terms[1] > 1:
                result = noise.of_sum(result, *terms)
        if func in PRODUCTS:
            return noisy(result, noise)
        # a function that only moves or selects values (pad, concatenate, stack) is exact,
        # but what is later computed from its result must still round
        return _view(result, noise) if isinstance(result, np.ndarray) else result


def _plain(x):
    return x.view(np.ndarray) if isinstance(x, Noisy) else x


def noisy(x, noise: Noise, operands=None):
    """`x` rounded at random, as a `Noisy` array that keeps rounding what is made from it."""
    return _view(noise(x, operands), noise)


def _view(x, noise: Noise):
    """`x` as it is, as a `Noisy` array (integer data stays a plain array); a joint tangent
    rule's tuple of tangents, each (None: that argument does not move)."""
    if isinstance(x, tuple):
        return tuple(None if t is None else _view(t, noise) for t in x)
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

    def __init__(self, fn, noise: Noise, ulps: float | Callable = 0.0, at: int = 0):
        # `at`: where the op's input is among the call's arguments (a rule's: g, out, x)
        self.fn, self.noise, self.ulps, self.at = fn, noise, ulps, at

    def __call__(self, *args, **attrs):
        result = self.fn(*(_view(a, self.noise) for a in args), **attrs)
        if isinstance(result, tuple):  # a joint backward: one per argument
            return tuple(np.asarray(r).view(np.ndarray) for r in result)
        if self.ulps:
            # a measured curve: each element as far off as the engine was near its input
            ulps = self.ulps(_plain(args[self.at])) if callable(self.ulps) else self.ulps
            result = self.noise.widened(np.asarray(result).view(np.ndarray), ulps)
        return np.asarray(result).view(np.ndarray)


def perturbed_ops(
    ops: Mapping, noise: Noise, widened: Mapping[str, float | Callable] | None = None
) -> dict:
    """A copy of an op table in which every forward and gradient rule carries noise (any
    other field of a `Primitive` is kept as it is). The parts of a joint backward stay
    parts of one perturbed pass, which the executor runs once per node, as it runs the
    exact one. `widened`: op -> ulps by which an engine's forward of it errs beyond
    rounding (its value, and so every rule that reads it, carries that too); where that is
    a unary op's measured curve, its derivative rules carry it as well: an engine computes
    them from the same approximations (torch's gelu' from the same 1 + erf), and each is
    measured within its forward's error (tests/test_accuracy.py)."""
    widened = widened or {}
    return {name: _perturbed(prim, noise, widened.get(name, 0.0)) for name, prim in ops.items()}


def _perturbed(prim, noise: Noise, widening: float | Callable):
    curve = widening if callable(widening) else 0.0  # a single number widens the value alone
    return dataclasses.replace(
        prim,
        forward=Perturbed(prim.forward, noise, widening),
        grads=_perturbed_rules(prim.grads, noise, JointPart, curve),
        tangents=_perturbed_rules(prim.tangents, noise, TangentPart, curve),
    )


def _perturbed_rules(rules: tuple, noise: Noise, part_type, ulps: Callable | float) -> tuple:
    """Gradient rules (`part_type` JointPart) or tangent rules (TangentPart) with noise;
    `ulps`: a unary op's measured curve, read at its input (the rule's third argument)."""
    joints: dict = {}

    def perturbed(rule):
        if rule is None:
            return None
        if isinstance(rule, part_type):
            return part_type(
                joints.setdefault(rule.joint, Perturbed(rule.joint, noise)), rule.index
            )
        return Perturbed(rule, noise, ulps, at=2)

    return tuple(perturbed(r) for r in rules)


def rounded_executor(noise: Noise):
    """The backprop executor with its own arithmetic rounded too: the sum of a broadcast
    gradient back to its input's shape (a bias's gradient is a sum over the batch) and the
    addition of the gradients of a value that fans out."""
    return partial(
        backprop, combine=partial(_rounded_add, noise), reduce=partial(_rounded_unbroadcast, noise)
    )


def rounded_forward_mode(noise: Noise):
    """The forward-mode executor with its sums of tangents (an op with several moving
    arguments) rounded too."""
    return partial(jvp, combine=partial(_rounded_add, noise))


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
    widened: Mapping[str, float | Callable] | None = None,
) -> EngineOutput:
    """Per element of the value and of each gradient: the root-mean-square deviation of
    noisy float64 evaluations from the exact-as-can-be float64 one, with noise at the
    rounding unit of `dtype` (and `widened`, op -> ulps, for an engine whose op is measured
    that far off). Seeded by `seed` (the case's name): the same on every run."""
    return _spread(
        graph, inputs, wrt, dtype, seed, ops, widened, lambda e, x: e.vjp(graph, x, wrt, cotangent)
    )


def tangent_rounding_scale(
    graph, inputs, wrt: list[str], tangents, dtype: str, seed: str = "", ops=None, widened=None
) -> EngineOutput:
    """`rounding_scale` of the forward-mode products J_x u_x (one per input x)."""
    tangents = {k: as_float64(v) for k, v in tangents.items()}
    return _spread(
        graph, inputs, wrt, dtype, seed, ops, widened, lambda e, x: e.jvp(graph, x, wrt, tangents)
    )


def _spread(graph, inputs, wrt, dtype, seed, ops, widened, product) -> EngineOutput:
    """The root-mean-square deviation of SAMPLES noisy evaluations of `product(engine,
    inputs)` from the exact float64 one, for the value and each input's product."""
    import reference_impls

    ops = reference_impls.OPS if ops is None else ops
    inputs = {k: as_float64(v) for k, v in inputs.items()}
    exact = product(NumpyEngine(ops), inputs)
    noise = _noise(info(dtype).name, seed)
    noisy = NumpyEngine(
        perturbed_ops({op: ops[op] for op in graph.ops() & set(ops)}, noise, widened),
        executor=rounded_executor(noise),
        forward_mode=rounded_forward_mode(noise),
    )
    runs = [product(noisy, inputs) for _ in range(SAMPLES)]
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

    def __init__(self, seed: str = "", widened: Mapping[str, float | Callable] | None = None):
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
        return _bound(scale)

    def jvp(self, graph, inputs, wrt, tangents) -> EngineOutput:
        """The bound of each forward-mode product J_x u_x, as `vjp` bounds the VJP's."""
        dtype = np.asarray(next(iter(tangents.values()))).dtype.name if tangents else "float64"
        scale = tangent_rounding_scale(
            graph, inputs, wrt, tangents, dtype, self.seed, widened=self.widened
        )
        return _bound(scale)


def _bound(scale: EngineOutput) -> EngineOutput:
    return EngineOutput(
        ENGINE_FACTOR * scale.value, {w: ENGINE_FACTOR * g for w, g in scale.grads.items()}
    )
