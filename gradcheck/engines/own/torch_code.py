"""Your torch code: a function on tensors, a `Function`'s `.apply`, an `nn.Module` (its
parameters join the inputs), a `torch.compile`d function. Your gradient is
`torch.autograd.grad` of what `fn` really does, in the checked dtype on your device."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ... import dtypes as dt
from ..base import UserCodeError, require
from .calls import calling, name_of


def parameter_name(name: str) -> str:
    """A module parameter's input name: `fc1.weight` -> `fc1_weight`; a name must not start
    with a digit, so `nn.Sequential`'s `0.weight` -> `_0_weight`."""
    name = name.replace(".", "_")
    return f"_{name}" if name[:1].isdigit() else name


class TorchCode:
    """`inputs`: your argument names in order; a module's parameters come after them."""

    def __init__(self, fn, inputs: list[str], device: str, name: str | None = None):
        torch = require("torch")
        self.fn, self.inputs, self.device = fn, list(inputs), device
        self.module = fn if isinstance(fn, torch.nn.Module) else None
        self.parameters = (
            {parameter_name(k): k for k, _ in fn.named_parameters()}
            if self.module is not None
            else {}
        )
        self.name = self.forward_name = name or name_of(fn)
        # float32 matmuls and convolutions run as TF32 on this device: its rounding is measured
        self.tf32 = str(device).startswith("cuda") and (
            torch.backends.cuda.matmul.allow_tf32 or torch.backends.cudnn.allow_tf32
        )

    def outputs(self, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        import torch

        with torch.no_grad():
            return [dt.to_numpy(o) for o in self._call(self._tensors(arrays, ()))]

    def vjp(self, arrays, cotangents, wrt):
        import torch

        leaves = self._tensors(arrays, wrt)
        outs = self._call(leaves)
        # <cotangent, out> summed: its gradient is each output's cotangent, bit for bit
        terms = [
            (o * self._tensor(c, o.dtype)).sum()
            for o, c in zip(outs, cotangents)
            if o.requires_grad
        ]
        grads = [None] * len(wrt)
        if terms:
            with calling(f"{self.name}'s backward"):
                grads = torch.autograd.grad(
                    sum(terms), [leaves[w] for w in wrt], allow_unused=True, materialize_grads=True
                )
        return (
            [dt.to_numpy(o) for o in outs],
            {
                w: dt.to_numpy(g) if g is not None else np.zeros(np.shape(arrays[w]))
                for w, g in zip(wrt, grads)
            },
        )

    def _tensors(self, arrays, wrt) -> dict:
        return {k: self._tensor(a, requires_grad=k in wrt) for k, a in arrays.items()}

    def _tensor(self, array, dtype=None, requires_grad: bool = False):
        tensor = dt.to_torch(array, self.device)
        if dtype is not None:
            tensor = tensor.to(dtype)
        return tensor.requires_grad_(requires_grad) if requires_grad else tensor

    def _call(self, tensors: dict) -> list:
        args = [tensors[k] for k in self.inputs]
        with calling(self.name):
            if self.module is None:
                result = self.fn(*args)
            else:
                result = self._call_module(tensors, args)
        outs = _flattened(result)
        if not outs:
            raise UserCodeError(
                f"{self.name} returned {type(result).__name__}; expected a "
                "tensor, a tuple or a dict of tensors"
            )
        return [_checked(o, self.name, i) for i, o in enumerate(outs)]

    def _call_module(self, tensors, args):
        import torch

        params = {k: tensors[safe] for safe, k in self.parameters.items()}
        dtype = next(iter(params.values())).dtype if params else None
        # floating buffers (a batch norm's running statistics) in the parameters' dtype
        buffers = {
            k: b.to(dtype) if dtype is not None and b.is_floating_point() else b
            for k, b in self.module.named_buffers()
        }
        return torch.func.functional_call(self.module, {**buffers, **params}, tuple(args))


def _flattened(result) -> list:
    """Tensors out of a tensor, a tuple or list, a dict (in its order), nested."""
    if isinstance(result, Mapping):
        return [t for v in result.values() for t in _flattened(v)]
    if isinstance(result, (tuple, list)):
        return [t for v in result for t in _flattened(v)]
    return [result]


def _checked(out, who: str, index: int):
    import torch

    if isinstance(out, torch.Tensor):
        return out
    got = "None" if out is None else f"a {type(out).__name__}"
    raise UserCodeError(f"{who} returned {got} as output {index + 1}; expected a tensor")


def torch_inputs(inputs: Mapping, fn) -> tuple[dict[str, np.ndarray], list[str], str | None]:
    """Your inputs (tensors, arrays, numbers) and a module's parameters as float64 numpy
    arrays (integer data as int64), the dtypes of the floating tensors among them, and the
    device they live on."""
    import torch

    given = dict(inputs)
    if isinstance(fn, torch.nn.Module):
        clash = [parameter_name(k) for k, _ in fn.named_parameters() if parameter_name(k) in given]
        if clash:
            raise ValueError(f"input name(s) {clash} are also the module's parameter names")
        given.update({parameter_name(k): p for k, p in fn.named_parameters()})
    tensors = [v for v in given.values() if isinstance(v, torch.Tensor)]
    dtypes = [str(t.dtype).removeprefix("torch.") for t in tensors if t.is_floating_point()]
    device = str(tensors[0].device) if tensors else None
    return ({k: _plain(v) for k, v in given.items()}, list(dict.fromkeys(dtypes)), device)


def _plain(value) -> np.ndarray:
    import torch

    if isinstance(value, torch.Tensor):
        value = value.detach().cpu()
        return value.double().numpy() if value.is_floating_point() else value.numpy()
    return np.asarray(value)
