"""The `torch` engine: PyTorch autograd over torch's own ops, in the case's dtype."""

from __future__ import annotations

from contextlib import contextmanager

from .. import dtypes
from ..ir.graph import interpret
from .base import EngineOutput, EngineSkip, constants, require, require_ops

# How torch names a dtype in "... not implemented for 'Half'", the message of a kernel it
# lacks for that dtype on that device (CPU kernels for half precision come and go between
# versions): a refusal, not a bug of torch's gradient.
REFUSED = {"bfloat16": "'BFloat16'", "float16": "'Half'"}


class TorchEngine:
    """`device`: where tensors live ("cpu", "cuda", "cuda:1"). `allow_tf32`: on a GPU, float32
    matmuls and convolutions may use TF32's 10-bit mantissa; a reference wants the full
    dtype, so it is off unless asked for."""

    def __init__(self, device: str = "cpu", name: str = "torch", allow_tf32: bool = False):
        self.device, self.name, self.allow_tf32 = device, name, allow_tf32

    def options(self) -> dict:
        """What the report says of this engine's settings."""
        return {"device": self.device, "tf32": self.allow_tf32}

    def prepare(self) -> None:
        """Import torch and its op table: what a worker process does while the parent still
        loads the cases."""
        require("torch")
        from . import torch_ops  # noqa: F401

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        """Inputs of a low dtype (bfloat16, float16) become tensors of it and torch computes
        in it; results come back as numpy arrays of the case's dtype."""
        torch = require("torch")
        from .torch_ops import OPS

        require_ops(self.name, graph, OPS)
        dtype = cotangent.dtype
        with _refusals_skip(self.device, dtype.name), _tf32(torch, self.allow_tf32):
            leaves = {k: self._tensor(v, requires_grad=k in wrt) for k, v in inputs.items()}
            env = {**leaves, **{k: self._tensor(v) for k, v in constants(graph, dtype).items()}}
            out = interpret(graph, OPS, env)[graph.output]
            # <cotangent, out> as a scalar gives exactly the VJP (its gradient wrt out is the
            # cotangent, bit for bit) without handing autograd a grad_output, whose shape check
            # imports torch's symbolic-shape machinery (sympy): about 1 s in every new process
            contracted = (out * self._tensor(cotangent)).sum()
            grads = torch.autograd.grad(
                contracted, [leaves[w] for w in wrt], allow_unused=True, materialize_grads=True
            )
        return EngineOutput(
            dtypes.to_numpy(out, dtype), {w: dtypes.to_numpy(g, dtype) for w, g in zip(wrt, grads)}
        )

    def _tensor(self, array, requires_grad=False):
        return dtypes.to_torch(array, self.device, requires_grad)


@contextmanager
def _tf32(torch, allowed: bool):
    """TF32 as this engine wants it for the length of a run, then as the user had it (a
    user's code checked beside the engine runs with the user's own setting)."""
    backends = (torch.backends.cuda.matmul, torch.backends.cudnn)
    before = [b.allow_tf32 for b in backends]
    for b in backends:
        b.allow_tf32 = allowed
    try:
        yield
    finally:
        for b, value in zip(backends, before):
            b.allow_tf32 = value


@contextmanager
def _refusals_skip(device: str, dtype: str):
    """torch lacking a kernel for `dtype` on `device` is a SKIP with torch's reason."""
    try:
        yield
    except (RuntimeError, NotImplementedError) as e:
        refused = REFUSED.get(dtype)
        if refused is None or f"not implemented for {refused}" not in str(e):
            raise
        raise EngineSkip(f"torch has no {dtype} kernel for this on {device}: {e}") from None
