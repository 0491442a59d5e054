"""Your torch code: a function on tensors, a `Function`'s `.apply`, an `nn.Module` (its
parameters join the inputs), a `torch.compile`d function. Your gradient is
`torch.autograd.grad` of what `fn` really does, in the checked dtype on your device; its
forward mode is torch's (dual tensors) and its Hessian-vector product double backward."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ... import dtypes as dt
from ..base import UserCodeError, require
from ..torch_engine import gradient
from .calls import NO_FORWARD_RULE, calling, name_of


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
        """Your outputs, and the gradient of <cotangents, outputs> by `torch.autograd.grad`."""
        leaves = self._tensors(arrays, wrt)
        outs = self._call(leaves)
        values = _values(outs)  # before a backward writes into the outputs it saved
        with calling(f"{self.name}'s backward"):
            grads = gradient(self._contracted(outs, cotangents), [leaves[w] for w in wrt])
        return values, {w: dt.to_numpy(g) for w, g in zip(wrt, grads)}

    def jvp(self, arrays, tangents, wrt):
        """J_x u_x per output, each x of `wrt` moving alone: forward-mode AD (dual tensors),
        which runs a `Function`'s own `jvp` rule."""
        products: dict[str, list[np.ndarray]] = {}
        outs: list[np.ndarray] = []
        for w in wrt:
            outs, products[w] = self._dual_pass(arrays, w, tangents[w])
        return outs, products

    def hvp(self, arrays, cotangents, tangents, wrt):
        """(H u) by double backward: the gradient of <cotangents, outputs> kept differentiable,
        then the gradient of <that gradient, u>. A backward that autograd cannot differentiate
        is torch's error; one that detaches what it differentiates gives a wrong H u."""
        leaves = self._tensors(arrays, wrt)
        outs = self._call(leaves)
        values, moving = _values(outs), [leaves[w] for w in wrt]
        with calling(self.name, _double_backward, self._defined("backward")):
            # cotangents that require grad make a `once_differentiable` backward mark what
            # it returns (see `_refusals`)
            total = self._contracted(outs, cotangents, requires_grad=True)
            grads = gradient(total, moving, create_graph=True)
            along = sum((g * self._tensor(tangents[w], g.dtype)).sum() for w, g in zip(wrt, grads))
            products = gradient(along, moving + _refusals(along))[: len(moving)]
        return values, {w: dt.to_numpy(p) for w, p in zip(wrt, products)}

    def _contracted(self, outs, cotangents, requires_grad: bool = False):
        """<cotangent, out> summed over the outputs that depend on an input (None if none):
        its gradient is each output's cotangent, bit for bit."""
        terms = [
            (o * self._tensor(c, o.dtype, requires_grad)).sum()
            for o, c in zip(outs, cotangents)
            if o.requires_grad
        ]
        return sum(terms) if terms else None

    def _dual_pass(self, arrays, name: str, tangent) -> tuple[list, list]:
        """Your outputs and their tangents, input `name` alone moving along `tangent`."""
        from torch.autograd import forward_ad

        with forward_ad.dual_level():
            tensors = self._tensors(arrays, ())
            moving = tensors[name]
            tensors[name] = forward_ad.make_dual(moving, self._tensor(tangent, moving.dtype))
            pairs = [forward_ad.unpack_dual(o) for o in self._call(tensors)]
            outs = _values([p.primal for p in pairs])
            # an output that does not depend on `name` carries no tangent at all
            return outs, [
                np.zeros_like(o) if p.tangent is None else dt.to_numpy(p.tangent)
                for o, p in zip(outs, pairs)
            ]

    def _no_forward_rule(self, error: Exception) -> str | None:
        """What torch's refusal of forward mode means: a `Function` without a `jvp` rule,
        named where it is not `fn` itself (your module or function calls it)."""
        if not (isinstance(error, NotImplementedError) and "jvp" in str(error)):
            return None
        function = _forward_class(error)
        if function is None or function.__name__ == self.name:
            return NO_FORWARD_RULE
        return f"calls {function.__name__}, which {NO_FORWARD_RULE}"

    def _defined(self, part: str):
        """The function of yours an error names where its traceback holds none of your code:
        a `Function`'s `part` ("forward", "backward"), a module's forward, or `fn` itself."""
        owner = getattr(self.fn, "__self__", None)  # MyFunction.apply
        if isinstance(owner, type):
            return getattr(owner, part, None)
        return type(self.module).forward if self.module is not None else self.fn

    def _tensors(self, arrays, wrt) -> dict:
        return {k: self._tensor(a, requires_grad=k in wrt) for k, a in arrays.items()}

    def _tensor(self, array, dtype=None, requires_grad: bool = False):
        tensor = dt.to_torch(array, self.device)
        if dtype is not None:
            tensor = tensor.to(dtype)
        return tensor.requires_grad_(requires_grad) if requires_grad else tensor

    def _call(self, tensors: dict) -> list:
        args = [tensors[k] for k in self.inputs]
        with calling(self.name, self._no_forward_rule, self._defined("forward")):
            result = self.fn(*args) if self.module is None else self._call_module(tensors, args)
        outs = _flattened(result)
        if not outs:
            raise UserCodeError(
                f"{self.name} returned {type(result).__name__}; expected a "
                "tensor, a tuple or a dict of tensors"
            )
        return [_checked(o, self.name, i) for i, o in enumerate(outs)]

    def _call_module(self, tensors, args):
        import torch

        assert self.module is not None  # called for a module only
        params = {k: tensors[safe] for safe, k in self.parameters.items()}
        dtype = next(iter(params.values())).dtype if params else None
        # floating buffers (a batch norm's running statistics) in the parameters' dtype
        buffers = {
            k: b.to(dtype) if dtype is not None and b.is_floating_point() else b
            for k, b in self.module.named_buffers()
        }
        return torch.func.functional_call(self.module, {**buffers, **params}, tuple(args))


def _values(outs) -> list[np.ndarray]:
    """Your outputs as numpy copies (a tensor's numpy array shares its memory)."""
    return [np.array(dt.to_numpy(o), copy=True) for o in outs]


def _forward_class(error: Exception):
    """The `Function` whose rule was running when `error` was raised (torch's frame holds
    it as `self._forward_cls`), or None."""
    tb = error.__traceback__
    while tb is not None:
        found = getattr(tb.tb_frame.f_locals.get("self"), "_forward_cls", None)
        if found is not None:
            return found
        tb = tb.tb_next
    return None


def _refusals(scalar) -> list:
    """The leaves under the error nodes of backwards marked `once_differentiable` in the
    graph of `scalar`. Such a backward raises "trying to differentiate twice" only when
    its node is differentiated, but the node hangs off fresh leaves of its own (and only
    where the cotangent requires grad), which a gradient with respect to your inputs never
    reaches: H u would silently be zero. Differentiating these leaves too runs it."""
    import torch

    if not (torch.is_tensor(scalar) and scalar.grad_fn is not None):
        return []
    leaves, seen, todo = [], set(), [scalar.grad_fn]
    while todo:
        node = todo.pop()
        if node is None or node in seen:
            continue
        seen.add(node)
        children = [child for child, _ in node.next_functions]
        if node.name() == "torch::autograd::Error":
            leaves += [c.variable for c in children if hasattr(c, "variable")]
        todo += children
    return leaves


def _double_backward(error: Exception) -> str:
    return "does not support double backward"


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
