"""The `torch` engine: PyTorch autograd over torch's own ops."""
from __future__ import annotations

import numpy as np

from ..ir.graph import interpret
from .base import EngineOutput, constants, require, require_ops


class TorchEngine:
    """`device`: where tensors live ("cpu", "cuda", "cuda:1"). `allow_tf32`: on a GPU, float32
    matmuls and convolutions may use TF32's 10-bit mantissa; a reference wants the full
    dtype, so it is off unless asked for."""

    def __init__(self, device: str = "cpu", name: str = "torch", allow_tf32: bool = False):
        self.device, self.name, self.allow_tf32 = device, name, allow_tf32

    def prepare(self) -> None:
        """Import torch and its op table: what a worker process does while the parent still
        loads the cases."""
        require("torch")
        from . import torch_ops  # noqa: F401

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        torch = require("torch")
        torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = self.allow_tf32
        from .torch_ops import OPS
        require_ops(self.name, graph, OPS)
        leaves = {k: self._tensor(v, requires_grad=k in wrt) for k, v in inputs.items()}
        env = {**leaves, **{k: self._tensor(v) for k, v in constants(graph, cotangent.dtype).items()}}
        out = interpret(graph, OPS, env)[graph.output]
        # <cotangent, out> as a scalar gives exactly the VJP (its gradient wrt out is the
        # cotangent, bit for bit) without handing autograd a grad_output, whose shape check
        # imports torch's symbolic-shape machinery (sympy): about 1 s in every new process
        contracted = (out * self._tensor(cotangent)).sum()
        grads = torch.autograd.grad(contracted, [leaves[w] for w in wrt],
                                    allow_unused=True, materialize_grads=True)
        return EngineOutput(self._numpy(out), {w: self._numpy(g) for w, g in zip(wrt, grads)})

    def _tensor(self, array, requires_grad=False):
        import torch
        return torch.tensor(np.asarray(array), device=self.device, requires_grad=requires_grad)

    @staticmethod
    def _numpy(tensor) -> np.ndarray:
        return tensor.detach().cpu().numpy()
