"""The `torch` engine: PyTorch autograd over torch's own ops, in the case's dtype.

The VJP and the Hessian-vector product are reverse mode (the latter twice over: the
gradient kept differentiable, then differentiated along the tangents); the JVP is forward
mode, dual tensors through the same ops, one input moving at a time."""

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
        """Import torch and its op table, and set up forward-mode AD (its first use in a
        process takes a quarter of a second): what a worker process does while the parent
        still loads the cases. Two duals: a dual times a plain number would import
        torch._dynamo (`torch_ops.all_dual`), 1.2 s more."""
        torch = require("torch")
        from . import torch_ops  # noqa: F401

        with torch.autograd.forward_ad.dual_level():
            dual = torch.autograd.forward_ad.make_dual(torch.zeros(1), torch.ones(1))
            dual * dual

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        """Inputs of a low dtype (bfloat16, float16) become tensors of it and torch computes
        in it; results come back as numpy arrays of the case's dtype."""
        dtype = cotangent.dtype
        with self._running(graph, dtype):
            leaves = self._leaves(inputs, wrt)
            out = self._forward(graph, leaves, dtype)
            moving = [leaves[w] for w in wrt]
            grads = gradient(self._contracted(out, cotangent), moving)
        return _output(out, dict(zip(wrt, grads)), dtype)

    def jvp(self, graph, inputs, wrt, tangents) -> EngineOutput:
        """grads[x] = J_x u_x: forward mode, one pass per input with it alone moving."""
        dtype = tangents[wrt[0]].dtype
        with self._running(graph, dtype):
            leaves = self._leaves(inputs, ())
            out = self._forward(graph, leaves, dtype)
            products = {w: self._along(graph, leaves, w, tangents[w], dtype) for w in wrt}
        return _output(out, products, dtype)

    def hvp(self, graph, inputs, wrt, cotangent, tangents) -> EngineOutput:
        """grads[x] = (H u)_x of <cotangent, output>: the gradient of <g, u>, g itself the
        gradient of <cotangent, output> kept differentiable (double backward)."""
        dtype = cotangent.dtype
        with self._running(graph, dtype):
            leaves = self._leaves(inputs, wrt)
            out = self._forward(graph, leaves, dtype)
            moving = [leaves[w] for w in wrt]
            grads = gradient(self._contracted(out, cotangent), moving, create_graph=True)
            along = sum((g * self._tensor(tangents[w])).sum() for w, g in zip(wrt, grads))
            products = gradient(along, moving)
        return _output(out, dict(zip(wrt, products)), dtype)

    @contextmanager
    def _running(self, graph, dtype):
        """torch, with the graph's ops checked, kernel refusals a SKIP and TF32 as asked."""
        torch = require("torch")
        from .torch_ops import OPS

        require_ops(self.name, graph, OPS)
        with _refusals_skip(self.device, dtype.name), _tf32(torch, self.allow_tf32):
            yield torch

    def _leaves(self, inputs, wrt) -> dict:
        return {k: self._tensor(v, requires_grad=k in wrt) for k, v in inputs.items()}

    def _forward(self, graph, leaves: dict, dtype, ops=None):
        from .torch_ops import OPS

        env = {**leaves, **{k: self._tensor(v) for k, v in constants(graph, dtype).items()}}
        return interpret(graph, OPS if ops is None else ops, env)[graph.output]

    def _contracted(self, out, cotangent):
        # <cotangent, out> as a scalar gives exactly the VJP (its gradient wrt out is the
        # cotangent, bit for bit) without handing autograd a grad_output, whose shape check
        # imports torch's symbolic-shape machinery (sympy): about 1 s in every new process
        return (out * self._tensor(cotangent)).sum()

    def _along(self, graph, leaves: dict, name: str, tangent, dtype):
        """The output's derivative along `tangent`, input `name` alone moving."""
        from torch.autograd import forward_ad

        from .torch_ops import forward_mode_ops

        with forward_ad.dual_level():
            dual = forward_ad.make_dual(leaves[name], self._tensor(tangent))
            primal, derivative = forward_ad.unpack_dual(
                self._forward(graph, {**leaves, name: dual}, dtype, forward_mode_ops())
            )
            # an output that does not depend on `name` carries no tangent at all
            return primal.new_zeros(primal.shape) if derivative is None else derivative

    def _tensor(self, array, requires_grad=False):
        return dtypes.to_torch(array, self.device, requires_grad)


def gradient(scalar, leaves: list, create_graph: bool = False) -> list:
    """d scalar / d leaf for each leaf, zeros where it does not depend on one (autograd
    refuses a scalar that depends on none, or None: a gradient that is constant, say)."""
    torch = require("torch")
    if not (torch.is_tensor(scalar) and scalar.requires_grad):
        return [torch.zeros_like(leaf) for leaf in leaves]
    return torch.autograd.grad(
        scalar, leaves, allow_unused=True, materialize_grads=True, create_graph=create_graph
    )


def _output(out, products: dict, dtype) -> EngineOutput:
    """The value and one array per input, as numpy arrays of the case's dtype."""
    return EngineOutput(
        dtypes.to_numpy(out, dtype), {w: dtypes.to_numpy(p, dtype) for w, p in products.items()}
    )


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
