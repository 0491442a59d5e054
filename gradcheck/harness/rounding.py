"""How much rounding error each element of a value or gradient can carry in a dtype.

Monte Carlo arithmetic on the numpy reference: the same graph runs forward and backward in
float64, several times, with every array leaving every op (forward and gradient rule),
and every tensor entering one, multiplied by (1 + d), d uniform in [-eps, eps] of the case's dtype: what
each rounding step of a float32 (or float64) evaluation may do. The spread of the results
around the unperturbed float64 ones is the element's rounding scale. Where terms cancel
(1 - tanh^2 near saturation, a sum of opposite terms, a gradient that is zero by symmetry)
the perturbed terms no longer cancel, and the scale follows the terms' magnitudes, not the
element's own small size. Any op works, with no rule of its own.
"""
from __future__ import annotations

import dataclasses
import zlib
from typing import Mapping

import numpy as np

from ..engines.base import EngineOutput
from ..engines.numpy_engine import NumpyEngine

SAMPLES = 8          # perturbed evaluations: the root-mean-square of 8 is a steady scale


class Noise:
    """Multiplies floating arrays by (1 + d), d ~ U[-eps, eps]; integer data passes as is."""

    def __init__(self, eps: float, rng: np.random.Generator):
        self.eps, self.rng = eps, rng

    def __call__(self, x):
        x = np.asarray(x)
        if not np.issubdtype(x.dtype, np.floating):
            return x
        return x * (1 + self.eps * self.rng.uniform(-1, 1, x.shape))


class Perturbed:
    """An op's forward or gradient rule whose result and tensor arguments carry rounding
    noise. Tensor arguments too, so that the rounding of each product inside a sum (a
    matmul, a convolution) is modelled; 0-d ones are left exact, since they are literal
    numbers (an exponent of 2 must stay 2) or results already perturbed where computed."""

    def __init__(self, fn, noise: Noise):
        self.fn, self.noise = fn, noise

    def __call__(self, *args, **attrs):
        return self.noise(self.fn(*(self.noise(a) if np.ndim(a) else a for a in args), **attrs))


def perturbed_ops(ops: Mapping, noise: Noise) -> dict:
    """A copy of an op table in which every forward and gradient rule carries noise (any
    other field of a `Primitive`, such as a joint rule, is kept as it is)."""
    return {name: dataclasses.replace(
                prim, forward=Perturbed(prim.forward, noise),
                grads=tuple(None if r is None else Perturbed(r, noise) for r in prim.grads))
            for name, prim in ops.items()}


def rounding_scale(graph, inputs: Mapping[str, np.ndarray], wrt: list[str], cotangent,
                   dtype: str, seed: str = "", ops: Mapping | None = None) -> EngineOutput:
    """Per element of the value and of each gradient: the root-mean-square deviation of
    noisy float64 evaluations from the exact-as-can-be float64 one, with noise at the
    rounding unit of `dtype`. Seeded by `seed` (the case's name): the same on every run."""
    import reference_impls
    ops = reference_impls.OPS if ops is None else ops
    inputs = {k: _float64(v) for k, v in inputs.items()}
    cotangent = np.asarray(cotangent, dtype=np.float64)
    exact = NumpyEngine(ops).vjp(graph, inputs, wrt, cotangent)
    noise = Noise(float(np.finfo(dtype).eps), np.random.default_rng(zlib.crc32(seed.encode())))
    noisy = NumpyEngine(perturbed_ops(ops, noise))
    runs = [noisy.vjp(graph, inputs, wrt, cotangent) for _ in range(SAMPLES)]
    return EngineOutput(_rms([r.value for r in runs], exact.value),
                        {w: _rms([r.grads[w] for r in runs], exact.grads[w]) for w in wrt})


def _rms(samples: list, exact) -> np.ndarray:
    deviations = np.asarray(samples, dtype=np.float64) - np.asarray(exact, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        return np.sqrt(np.mean(deviations ** 2, axis=0))


def _float64(array) -> np.ndarray:
    array = np.asarray(array)
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array
