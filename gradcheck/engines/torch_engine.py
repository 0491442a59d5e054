"""The `torch` engine: PyTorch autograd over torch's own ops."""
from __future__ import annotations

import numpy as np

from ..ir.graph import interpret
from .base import EngineOutput, constants, require, require_ops


class TorchEngine:
    def __init__(self, device: str = "cpu", name: str = "torch"):
        self.device, self.name = device, name

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        torch = require("torch")
        from .torch_ops import OPS
        require_ops(self.name, graph, OPS)
        leaves = {k: self._tensor(v, requires_grad=k in wrt) for k, v in inputs.items()}
        env = {**leaves, **{k: self._tensor(v) for k, v in constants(graph, cotangent.dtype).items()}}
        out = interpret(graph, OPS, env)[graph.output]
        grads = torch.autograd.grad(out, [leaves[w] for w in wrt], self._tensor(cotangent),
                                    allow_unused=True, materialize_grads=True)
        return EngineOutput(self._numpy(out), {w: self._numpy(g) for w, g in zip(wrt, grads)})

    def _tensor(self, array, requires_grad=False):
        import torch
        return torch.tensor(np.asarray(array), device=self.device, requires_grad=requires_grad)

    @staticmethod
    def _numpy(tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy()
