"""The `numpy` engine: our own reverse mode from `reference_impls`."""
from __future__ import annotations

from typing import Callable, Mapping

import numpy as np

import reference_impls
from reference_impls import Primitive

from .base import EngineOutput, constants, require_ops


class NumpyEngine:
    """Takes its op table as an argument: copy `reference_impls.OPS`, replace an entry,
    and the variant checks your own backward against the other engines. `executor` (with
    the signature of `reference_impls.backprop`) may be varied the same way."""

    def __init__(self, ops: Mapping[str, Primitive] | None = None, name: str = "numpy",
                 executor: Callable = reference_impls.backprop):
        self.ops = reference_impls.OPS if ops is None else ops
        self.name = name
        self.executor = executor

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        require_ops(self.name, graph, self.ops)
        env = {**inputs, **constants(graph, cotangent.dtype)}
        with np.errstate(all="ignore"):     # NaN and Inf are judged (NONFINITE), not warned
            value, grads = self.executor(graph, self.ops, env, wrt, cotangent)
        return EngineOutput(np.asarray(value), grads)
