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
        with jax.default_device(jax.devices(self.device)[0]):
            fixed = {k: jax.numpy.asarray(v) for k, v in inputs.items() if k not in wrt}
            fixed.update(constants(graph, cotangent.dtype))

            def f(*arrays):
                env = {**fixed, **dict(zip(wrt, arrays))}
                return interpret(graph, OPS, env)[graph.output]

            out, pullback = jax.vjp(f, *(jax.numpy.asarray(inputs[w]) for w in wrt))
            grads = pullback(jax.numpy.asarray(cotangent))
        return EngineOutput(np.asarray(out), {w: np.asarray(g) for w, g in zip(wrt, grads)})
