"""The `fd` engine: central finite differences on the numpy forward pass, in float64.

For each checked element x_i it evaluates f = <cotangent, forward(x)> at x_i +- h and
x_i +- h/2 and returns:
- the Richardson extrapolation (4 D(h/2) - D(h)) / 3 as the gradient;
- an error estimate |D(h) - D(h/2)| plus rounding noise, which the comparator adds to
  its tolerance for every pair with `fd`;
- a kink flag when the one-sided slopes on each side of x_i jump by much more than the
  curvature seen within each side (relu or abs at 0, a max tie): the input sits on a
  non-differentiable point, detected from the forward function itself, for any op.
  A kink seen in the stencil is re-examined with narrower ones: a kink near x_i but not
  at it (relu at 1e-6) is stepped past, so that such a point is neither flagged nor
  misjudged, and a kink at x_i is confirmed at every scale.

float32 cases are differenced in float64 from the same rounded inputs: finite
differences in float32 are too noisy to judge anything. Inputs with more elements than
`max_elements` are checked on a seeded random sample of coordinates.
"""
from __future__ import annotations

import zlib
from typing import Mapping

import numpy as np

import reference_impls
from reference_impls import Primitive

from .base import EngineOutput, Settings, constants, require_ops

EPS = np.finfo(np.float64).eps
KINK_FACTOR = 10.0      # a slope jump this many times the in-side curvature is a kink
SHRINKS = 4             # stencils tried, each 16 times narrower, to step past a nearby kink


class FiniteDifferences:
    def __init__(self, ops: Mapping[str, Primitive] | None = None, step: float = 1e-3,
                 max_elements: int = 256, seed: int = 0, name: str = "fd"):
        self.ops = reference_impls.OPS if ops is None else ops
        self.step, self.max_elements, self.seed, self.name = step, max_elements, seed, name

    def vjp(self, graph, inputs, wrt, cotangent, settings: Settings | None = None) -> EngineOutput:
        require_ops(self.name, graph, self.ops)
        limit = settings.fd_max_elements if settings and settings.fd_max_elements else None
        with np.errstate(all="ignore"):     # NaN and Inf are judged (NONFINITE), not warned
            return self._vjp(graph, inputs, wrt, cotangent, limit or self.max_elements)

    def _vjp(self, graph, inputs, wrt, cotangent, max_elements: int) -> EngineOutput:
        env = {k: _float64(v) for k, v in inputs.items()}
        env.update(constants(graph, np.float64))
        env = reference_impls.forward(graph, self.ops, env)
        weights = np.asarray(cotangent, dtype=np.float64)
        result = EngineOutput(np.asarray(env[graph.output]), {})
        f0 = float(np.sum(env[graph.output] * weights))
        for name in wrt:
            self._differentiate(self._objective(graph, env, name, weights), f0, name,
                                env[name], result, max_elements)
        return result

    def _objective(self, graph, env: dict, name: str, weights: np.ndarray):
        """x -> <cotangent, output> with input `name` set to x; only the nodes that depend
        on `name` are recomputed, the rest is read from the unperturbed pass."""
        order = reference_impls.topological_order(graph)
        touched = reference_impls.dependents(order, [name])
        nodes = [node for node in order if node.name in touched]

        def f(value):
            out = reference_impls.forward(graph, self.ops, {**env, name: value}, nodes)
            return float(np.sum(out[graph.output] * weights))
        return f

    def _differentiate(self, f, f0: float, name: str, x: np.ndarray,
                       result: EngineOutput, max_elements: int) -> None:
        grad = np.full(x.shape, np.nan)
        err = np.full(x.shape, np.nan)
        kink = np.zeros(x.shape, dtype=bool)
        checked = np.zeros(x.shape, dtype=bool)
        for index in self._coordinates(name, x, max_elements):
            grad[index], err[index], kink[index] = self._element(f, f0, x, index)
            checked[index] = True
        result.grads[name], result.grad_err[name] = grad, err
        result.kinks[name], result.checked[name] = kink, checked

    def _coordinates(self, name: str, x: np.ndarray, max_elements: int) -> list[tuple]:
        flat = np.arange(x.size)
        if x.size > max_elements:
            rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()), x.size])
            flat = np.sort(rng.choice(x.size, max_elements, replace=False))
        return [tuple(int(i) for i in np.unravel_index(k, x.shape)) for k in flat]

    def _element(self, f, f0: float, x: np.ndarray, index: tuple) -> tuple[float, float, bool]:
        h = self.step * max(abs(float(x[index])), 1e-2)
        for _ in range(SHRINKS):
            grad, err, at_kink, kink_inside = _stencil(f, f0, x, index, h)
            if not (at_kink or kink_inside):
                break
            # a kink seen in the stencil: a narrower one steps past a kink near x, and
            # confirms one at x, which stays at every scale
            h /= 16
        return grad, err, at_kink


def _stencil(f, f0: float, x: np.ndarray, index: tuple, h: float):
    """Richardson gradient and error estimate from the stencil x +- h, x +- h/2, and
    whether its four one-sided slopes show a kink at x, or one elsewhere inside it."""
    fm, fm2, fp2, fp = (f(_moved(x, index, d)) for d in (-h, -h / 2, h / 2, h))
    d1, d2 = (fp - fm) / (2 * h), (fp2 - fm2) / h
    noise = 64 * EPS * max(abs(f0), abs(fp), abs(fm), 1.0) / h
    slopes = np.array([fm2 - fm, f0 - fm2, fp2 - f0, fp - fp2]) / (h / 2)   # L2 L1 R1 R2
    steps = np.abs(np.diff(slopes))          # smooth f: three similar steps of f'' h / 2
    # a real kink moves the slope by a sizeable part of the slope itself
    floor = 4 * noise + 1e-3 * np.max(np.abs(slopes))
    at_kink = steps[1] > KINK_FACTOR * (steps[0] + steps[2]) + floor
    kink_inside = np.max(steps) > KINK_FACTOR * np.min(steps) + floor
    return (4 * d2 - d1) / 3, abs(d2 - d1) + noise, bool(at_kink), bool(kink_inside)


def _float64(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    return array.astype(np.float64) if np.issubdtype(array.dtype, np.floating) else array


def _moved(x: np.ndarray, index: tuple, delta: float) -> np.ndarray:
    moved = x.copy()
    moved[index] += delta
    return moved
