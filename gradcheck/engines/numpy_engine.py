"""The `numpy` engine: our own reverse mode from `reference_impls`."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

import reference_impls
from reference_impls import Primitive

from .. import dtypes
from .base import EngineOutput, constants, require_ops


class NumpyEngine:
    """Takes its op table as an argument: copy `reference_impls.OPS`, replace an entry,
    and the variant checks your own backward against the other engines. `executor` (with
    the signature of `reference_impls.backprop`) may be varied the same way.

    A low dtype (bfloat16, float16) is computed in float32 from the same rounded inputs and
    cotangent, and the value and gradients are rounded to it at the end: numpy has no
    bfloat16 arithmetic and a slow, partial float16. This reference is more accurate than
    an engine computing in the dtype itself; the rounding model bounds the difference."""

    def __init__(
        self,
        ops: Mapping[str, Primitive] | None = None,
        name: str = "numpy",
        executor: Callable = reference_impls.backprop,
        forward_mode: Callable = reference_impls.jvp,
    ):
        self.ops = reference_impls.OPS if ops is None else ops
        self.name = name
        self.executor, self.forward_mode = executor, forward_mode

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        dtype = cotangent.dtype
        with np.errstate(all="ignore"):  # NaN and Inf are judged (NONFINITE), not warned
            value, grads = self.executor(
                graph, self.ops, self._env(graph, inputs, dtype), wrt, dtypes.as_compute(cotangent)
            )
        return EngineOutput(
            _rounded(value, dtype), {w: _rounded(g, dtype) for w, g in grads.items()}
        )

    def jvp(self, graph, inputs, wrt, tangents) -> EngineOutput:
        """Forward mode from the tangent rules: one pass per input, that input alone moving."""
        dtype = np.asarray(tangents[wrt[0]]).dtype if wrt else np.dtype(np.float64)
        products = {}
        with np.errstate(all="ignore"):
            env = reference_impls.forward(graph, self.ops, self._env(graph, inputs, dtype))
            for w in wrt:  # each pass reuses the forward's values
                one = {w: dtypes.as_compute(tangents[w])}
                _, products[w] = self.forward_mode(graph, self.ops, dict(env), one)
        value = env[graph.output]
        return EngineOutput(
            _rounded(value, dtype), {w: _rounded(t, dtype) for w, t in products.items()}
        )

    def _env(self, graph, inputs, dtype) -> dict:
        """The inputs and literals in the dtype numpy computes `dtype` in."""
        require_ops(self.name, graph, self.ops)
        return {
            **{k: dtypes.as_compute(v) for k, v in inputs.items()},
            **constants(graph, dtypes.compute_dtype(dtype)),
        }


def _rounded(array, dtype) -> np.ndarray:
    """A result in the case's dtype (no copy where it is in it already)."""
    return np.asarray(array).astype(dtype, copy=False)
