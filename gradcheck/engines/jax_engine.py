"""The `jax` engine: jax.vjp over jax.numpy / jax.lax ops, float64 enabled."""
from __future__ import annotations

import numpy as np

from ..ir.graph import interpret
from .base import EngineOutput, constants, require, require_ops


class JaxEngine:
    def __init__(self, device: str = "cpu", name: str = "jax"):
        self.device, self.name = device, name

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        jax = require("jax")
        # x64 must be on before any array is made, or float64 inputs silently become float32
        jax.config.update("jax_enable_x64", True)
        from .jax_ops import OPS
        require_ops(self.name, graph, OPS)
        fixed = {k: v for k, v in inputs.items() if k not in wrt}
        fixed.update(constants(graph, cotangent.dtype))

        def forward(arrays, fixed):
            return interpret(graph, OPS, {**fixed, **dict(zip(wrt, arrays))})[graph.output]

        def value_and_vjp(arrays, fixed, cotangent):
            out, pullback = jax.vjp(lambda *a: forward(a, fixed), *arrays)
            return out, pullback(cotangent)

        # one compiled program per case instead of one per primitive and shape: compiling
        # is what dominates on a catalog of small graphs
        with jax.default_device(jax.devices(self.device)[0]):
            out, grads = jax.jit(value_and_vjp)([inputs[w] for w in wrt], fixed, cotangent)
        return EngineOutput(np.asarray(out), {w: np.asarray(g) for w, g in zip(wrt, grads)})
