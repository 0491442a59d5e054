"""Framework code with hand-written gradients, correct and with one realistic bug each: the
suite that `test_check_frameworks.py`, `test_gpu.py` and `benchmarks/bench_frameworks.py`
run through `gradcheck.check_torch` / `gradcheck.check_jax`.

Each `Item` is a label, a kind, the callable, an inputs builder (name -> float64 array, in
the callable's argument order), an optional reference in the case language, whether it is
correct, and its bug. A module item's parameters join the inputs by themselves (the builder
gives only the data); `params` gives their float64 values for tools that need them all."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

SIGN, MEAN_FOR_SUM, TRANSPOSED, CHAIN_DROPPED, LN_MEAN_DROPPED, SCALE = (
    "sign error",
    "mean where a sum belongs",
    "transposed weight gradient",
    "chain rule dropped",
    "layer norm's mean term dropped",
    "0.1% scale",
)
# bugs big enough to see in bfloat16 and float16 (the 0.1% scale is below bfloat16's eps)
GROSS = {SIGN, MEAN_FOR_SUM, TRANSPOSED, CHAIN_DROPPED, LN_MEAN_DROPPED}
N, D = 6, 5


@dataclass
class Item:
    label: str
    kind: str  # "torch Function", "nn.Module", "plain torch", "jax custom_vjp", "jax custom_jvp"
    fn: Callable
    inputs: Callable[[], dict]  # name -> float64 numpy array, in fn's argument order
    reference: str | None
    correct: bool
    bug: str = ""  # "" for a correct item
    engine: str = ""  # the name gradcheck gives the user's engine
    params: Callable[[], dict] = field(default=lambda: {})

    @property
    def framework(self) -> str:
        return "jax" if self.kind.startswith("jax") else "torch"


def _rng(seed: int):
    return np.random.default_rng(seed)


def x_only(seed=0, shape=(N, D)):
    return lambda: {"x": _rng(seed).standard_normal(shape)}


def linear_inputs(seed=1):
    def make():
        rng = _rng(seed)
        # a square weight: a transposed weight gradient still has the right shape
        return {
            "x": rng.standard_normal((N, D)),
            "w": rng.standard_normal((D, D)),
            "b": rng.standard_normal(D),
        }

    return make


def layernorm_inputs(seed=2):
    def make():
        rng = _rng(seed)
        return {
            "x": rng.standard_normal((N, D)),
            "gamma": 1 + 0.5 * rng.standard_normal(D),
            "beta": rng.standard_normal(D),
        }

    return make


# --- torch Functions ---------------------------------------------------------------------


class Sigmoid(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.sigmoid(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (1 - y)


class SigmoidSignBug(Sigmoid):
    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * y * (y - 1)  # bug: (y - 1) for (1 - y)


class Tanh(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class TanhChainDropped(Tanh):
    @staticmethod
    def backward(ctx, g):
        return g  # bug: the local derivative 1 - y^2 is gone


class Linear(torch.autograd.Function):
    """x @ w + b with a hand-written backward."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        return x @ w + b

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, g.sum(0)


class LinearBiasMean(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g, g.mean(0)  # bug: mean over the batch, not the sum


class LinearTransposedW(Linear):
    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, g.T @ x, g.sum(0)  # bug: (x.T @ g).T; fits a square w


class LayerNorm(torch.autograd.Function):
    """Layer norm over the last axis, eps 1e-5, with the textbook backward."""

    eps = 1e-5

    @staticmethod
    def forward(ctx, x, gamma, beta):
        mu = x.mean(-1, keepdim=True)
        var = ((x - mu) ** 2).mean(-1, keepdim=True)
        rstd = 1 / torch.sqrt(var + LayerNorm.eps)
        xhat = (x - mu) * rstd
        ctx.save_for_backward(xhat, rstd, gamma)
        return xhat * gamma + beta

    @staticmethod
    def backward(ctx, g):
        xhat, rstd, gamma = ctx.saved_tensors
        dxhat = g * gamma
        dx = rstd * (
            dxhat - dxhat.mean(-1, keepdim=True) - xhat * (dxhat * xhat).mean(-1, keepdim=True)
        )
        return dx, (g * xhat).sum(0), g.sum(0)


class LayerNormMeanDropped(LayerNorm):
    @staticmethod
    def backward(ctx, g):
        xhat, rstd, gamma = ctx.saved_tensors
        dxhat = g * gamma
        dx = rstd * (dxhat - xhat * (dxhat * xhat).mean(-1, keepdim=True))  # bug: no mean term
        return dx, (g * xhat).sum(0), g.sum(0)


class Softplus(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.nn.functional.softplus(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x)


class SoftplusScaled(Softplus):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * torch.sigmoid(x) * 1.001  # bug: a 0.1% scale (a wrong constant)


class SquaredNorm(torch.autograd.Function):
    """sum(x^2), a scalar."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return (x * x).sum()

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return 2 * g * x


class SquaredNormSignBug(SquaredNorm):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return -2 * g * x  # bug: descent direction for the gradient


class Sum(torch.autograd.Function):
    """x.sum() with a hand backward: a long float32 reduction."""

    @staticmethod
    def forward(ctx, x):
        ctx.shape = x.shape
        return x.sum()

    @staticmethod
    def backward(ctx, g):
        return g.expand(ctx.shape)


class DotSum(torch.autograd.Function):
    """(x * w).sum() with a hand backward."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return (x * w).sum()

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g * w, g * x


class Float32Only(torch.autograd.Function):
    """A "kernel" that only exists in float32: tanh with a hand backward."""

    @staticmethod
    def forward(ctx, x):
        if x.dtype != torch.float32:
            raise TypeError(f"Float32Only kernel: expected float32, got {x.dtype}")
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        return g * (1 - y * y)


class MatMul(torch.autograd.Function):
    """x @ w with a hand backward (for TF32 on a GPU)."""

    @staticmethod
    def forward(ctx, x, w):
        ctx.save_for_backward(x, w)
        return x @ w

    @staticmethod
    def backward(ctx, g):
        x, w = ctx.saved_tensors
        return g @ w.T, x.T @ g


# --- nn.Modules ---------------------------------------------------------------------------


class MyLinear(nn.Module):
    """An nn.Module whose forward is a custom Function: parameters `weight`, `bias`."""

    function = Linear

    def __init__(self, d_in=D, d_out=D, seed=3):
        super().__init__()
        rng = _rng(seed)
        self.weight = nn.Parameter(torch.tensor(rng.standard_normal((d_in, d_out))))
        self.bias = nn.Parameter(torch.tensor(rng.standard_normal(d_out)))

    def forward(self, x):
        return self.function.apply(x, self.weight, self.bias)


class MyLinearBiasMean(MyLinear):
    function = LinearBiasMean


class TwoLayer(nn.Module):
    """fc2(tanh(fc1(x))) of custom-Function linears: parameters fc1_weight ... fc2_bias."""

    def __init__(self, seed=4):
        super().__init__()
        self.fc1, self.fc2 = MyLinear(D, 4, seed), MyLinear(4, 3, seed + 1)

    def forward(self, x):
        return self.fc2(Tanh.apply(self.fc1(x)))


def module_params(module: nn.Module) -> Callable[[], dict]:
    from gradcheck.engines.own.torch_code import parameter_name

    return lambda: {
        parameter_name(k): p.detach().double().numpy().copy() for k, p in module.named_parameters()
    }


# --- plain torch (autograd's own backward: correct by construction) -----------------------


def mlp_layer(x, w, b):
    return torch.tanh(x @ w + b)


def lstm_cell(x, h, c, w):
    """An LSTM-like cell returning two outputs (h, c)."""
    gates = torch.cat([x, h], dim=1) @ w
    i, f, o, u = gates.chunk(4, dim=1)
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(u)
    h_new = torch.sigmoid(o) * torch.tanh(c_new)
    return h_new, c_new


def lstm_inputs(seed=5):
    def make():
        rng = _rng(seed)
        return {
            "x": rng.standard_normal((3, 4)),
            "h": rng.standard_normal((3, 2)),
            "c": rng.standard_normal((3, 2)),
            "w": 0.5 * rng.standard_normal((6, 8)),
        }

    return make


# --- jax ------------------------------------------------------------------------------------

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

jax.config.update("jax_enable_x64", True)


def _vjp_fn(forward, backward, name):
    f = jax.custom_vjp(forward)
    f.defvjp(lambda *a: (forward(*a), a), backward)
    f.__name__ = f.__qualname__ = name
    return f


def _tanh_bwd(res, g):
    (x,) = res
    return (g * (1 - jnp.tanh(x) ** 2),)


def _tanh_bwd_sign(res, g):
    (x,) = res
    return (g * (jnp.tanh(x) ** 2 - 1),)  # bug: sign


jax_tanh = _vjp_fn(jnp.tanh, _tanh_bwd, "jax_tanh")
jax_tanh_sign = _vjp_fn(jnp.tanh, _tanh_bwd_sign, "jax_tanh_sign")


def _linear(x, w, b):
    return x @ w + b


def _linear_bwd(res, g):
    x, w, _b = res
    return g @ w.T, x.T @ g, g.sum(0)


def _linear_bwd_transposed(res, g):
    x, w, _b = res
    return g @ w.T, g.T @ x, g.sum(0)  # bug: transposed weight gradient


jax_linear = _vjp_fn(_linear, _linear_bwd, "jax_linear")
jax_linear_transposed = _vjp_fn(_linear, _linear_bwd_transposed, "jax_linear_transposed")


def _layernorm(x, gamma, beta):
    mu = x.mean(-1, keepdims=True)
    var = ((x - mu) ** 2).mean(-1, keepdims=True)
    return (x - mu) / jnp.sqrt(var + 1e-5) * gamma + beta


def _layernorm_bwd(keep_mean):
    def bwd(res, g):
        x, gamma, _beta = res
        mu = x.mean(-1, keepdims=True)
        rstd = 1 / jnp.sqrt(((x - mu) ** 2).mean(-1, keepdims=True) + 1e-5)
        xhat = (x - mu) * rstd
        dxhat = g * gamma
        mean_term = dxhat.mean(-1, keepdims=True) if keep_mean else 0  # bug when dropped
        dx = rstd * (dxhat - mean_term - xhat * (dxhat * xhat).mean(-1, keepdims=True))
        return dx, (g * xhat).sum(0), g.sum(0)

    return bwd


jax_layernorm = _vjp_fn(_layernorm, _layernorm_bwd(True), "jax_layernorm")
jax_layernorm_mean_dropped = _vjp_fn(
    _layernorm, _layernorm_bwd(False), "jax_layernorm_mean_dropped"
)


def _jvp_softplus(scale, chain=True):
    @jax.custom_jvp
    def softplus(x):
        return jnp.logaddexp(x, 0.0)

    @softplus.defjvp
    def _(primals, tangents):
        (x,) = primals
        (t,) = tangents
        local = jax.nn.sigmoid(x) * scale if chain else 1.0
        return softplus(x), t * local

    return softplus


jax_softplus = _jvp_softplus(1.0)
jax_softplus.__name__ = "jax_softplus"
jax_softplus_chain_dropped = _jvp_softplus(1.0, chain=False)  # bug: tangent passed through
jax_softplus_chain_dropped.__name__ = "jax_softplus_chain_dropped"
jax_softplus_scaled = _jvp_softplus(1.001)  # bug: 0.1% scale
jax_softplus_scaled.__name__ = "jax_softplus_scaled"


# --- the suite -----------------------------------------------------------------------------

LINEAR_REF = "x @ w + b"
LN_REF = "layernorm(x, gamma, beta)"
_my_linear, _my_linear_bug, _two_layer = MyLinear(), MyLinearBiasMean(), TwoLayer()

SUITE: list[Item] = [
    # torch Functions, correct
    Item(
        "Sigmoid", "torch Function", Sigmoid.apply, x_only(0), "sigmoid(x)", True, engine="Sigmoid"
    ),
    Item("Tanh", "torch Function", Tanh.apply, x_only(1), "tanh(x)", True, engine="Tanh"),
    Item(
        "Linear", "torch Function", Linear.apply, linear_inputs(), LINEAR_REF, True, engine="Linear"
    ),
    Item(
        "LayerNorm",
        "torch Function",
        LayerNorm.apply,
        layernorm_inputs(),
        LN_REF,
        True,
        engine="LayerNorm",
    ),
    Item(
        "Softplus",
        "torch Function",
        Softplus.apply,
        x_only(2),
        "softplus(x)",
        True,
        engine="Softplus",
    ),
    Item(
        "SquaredNorm (fd)",
        "torch Function",
        SquaredNorm.apply,
        x_only(3),
        None,
        True,
        engine="SquaredNorm",
    ),
    # nn.Modules, correct
    Item(
        "MyLinear module",
        "nn.Module",
        _my_linear,
        x_only(4),
        "x @ weight + bias",
        True,
        engine="MyLinear",
        params=module_params(_my_linear),
    ),
    Item(
        "TwoLayer module (fd)",
        "nn.Module",
        _two_layer,
        x_only(5),
        None,
        True,
        engine="TwoLayer",
        params=module_params(_two_layer),
    ),
    # plain torch, correct by construction
    Item(
        "mlp_layer (plain)",
        "plain torch",
        mlp_layer,
        linear_inputs(6),
        "tanh(x @ w + b)",
        True,
        engine="mlp_layer",
    ),
    Item(
        "lstm_cell (plain, fd)",
        "plain torch",
        lstm_cell,
        lstm_inputs(),
        None,
        True,
        engine="lstm_cell",
    ),
    # torch, one bug each
    Item(
        "Sigmoid sign",
        "torch Function",
        SigmoidSignBug.apply,
        x_only(0),
        "sigmoid(x)",
        False,
        SIGN,
        "SigmoidSignBug",
    ),
    Item(
        "SquaredNorm sign",
        "torch Function",
        SquaredNormSignBug.apply,
        x_only(3),
        "sum(x ** 2)",
        False,
        SIGN,
        "SquaredNormSignBug",
    ),
    Item(
        "Linear bias mean",
        "torch Function",
        LinearBiasMean.apply,
        linear_inputs(),
        LINEAR_REF,
        False,
        MEAN_FOR_SUM,
        "LinearBiasMean",
    ),
    Item(
        "Linear transposed dW",
        "torch Function",
        LinearTransposedW.apply,
        linear_inputs(),
        LINEAR_REF,
        False,
        TRANSPOSED,
        "LinearTransposedW",
    ),
    Item(
        "Tanh chain dropped",
        "torch Function",
        TanhChainDropped.apply,
        x_only(1),
        "tanh(x)",
        False,
        CHAIN_DROPPED,
        "TanhChainDropped",
    ),
    Item(
        "LayerNorm mean dropped",
        "torch Function",
        LayerNormMeanDropped.apply,
        layernorm_inputs(),
        LN_REF,
        False,
        LN_MEAN_DROPPED,
        "LayerNormMeanDropped",
    ),
    Item(
        "Softplus 0.1%",
        "torch Function",
        SoftplusScaled.apply,
        x_only(2),
        "softplus(x)",
        False,
        SCALE,
        "SoftplusScaled",
    ),
    Item(
        "MyLinear module bias mean",
        "nn.Module",
        _my_linear_bug,
        x_only(4),
        "x @ weight + bias",
        False,
        MEAN_FOR_SUM,
        "MyLinearBiasMean",
        params=module_params(_my_linear_bug),
    ),
    # jax
    Item("jax tanh", "jax custom_vjp", jax_tanh, x_only(7), "tanh(x)", True, engine="jax_tanh"),
    Item(
        "jax linear",
        "jax custom_vjp",
        jax_linear,
        linear_inputs(8),
        LINEAR_REF,
        True,
        engine="jax_linear",
    ),
    Item(
        "jax layernorm",
        "jax custom_vjp",
        jax_layernorm,
        layernorm_inputs(9),
        LN_REF,
        True,
        engine="jax_layernorm",
    ),
    Item(
        "jax softplus (fd)",
        "jax custom_jvp",
        jax_softplus,
        x_only(10),
        None,
        True,
        engine="jax_softplus",
    ),
    Item(
        "jax tanh sign",
        "jax custom_vjp",
        jax_tanh_sign,
        x_only(7),
        "tanh(x)",
        False,
        SIGN,
        "jax_tanh_sign",
    ),
    Item(
        "jax linear transposed dW",
        "jax custom_vjp",
        jax_linear_transposed,
        linear_inputs(8),
        LINEAR_REF,
        False,
        TRANSPOSED,
        "jax_linear_transposed",
    ),
    Item(
        "jax layernorm mean dropped",
        "jax custom_vjp",
        jax_layernorm_mean_dropped,
        layernorm_inputs(9),
        LN_REF,
        False,
        LN_MEAN_DROPPED,
        "jax_layernorm_mean_dropped",
    ),
    Item(
        "jax softplus chain dropped",
        "jax custom_jvp",
        jax_softplus_chain_dropped,
        x_only(10),
        "softplus(x)",
        False,
        CHAIN_DROPPED,
        "jax_softplus_chain_dropped",
    ),
    Item(
        "jax softplus 0.1%",
        "jax custom_jvp",
        jax_softplus_scaled,
        x_only(10),
        "softplus(x)",
        False,
        SCALE,
        "jax_softplus_scaled",
    ),
]

CORRECT = [i for i in SUITE if i.correct]
BUGGY = [i for i in SUITE if not i.correct]


def check(item: Item, dtypes, device: str | None = None, reference: bool = True):
    """One gradcheck call for `item` in `dtypes` (its reference where it has one)."""
    import gradcheck

    ref = item.reference if reference else None
    if item.framework == "jax":
        return gradcheck.check_jax(item.fn, item.inputs(), reference=ref, dtypes=dtypes)
    return gradcheck.check_torch(
        item.fn, item.inputs(), reference=ref, dtypes=dtypes, device=device
    )


# --- forward mode and second order (tests/test_own_modes.py) -------------------------------


class TanhWithJvp(Tanh):
    """Tanh with its forward-mode rule too."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        ctx.save_for_forward(y)
        return y

    @staticmethod
    def jvp(ctx, t):
        (y,) = ctx.saved_tensors
        return t * (1 - y * y)


class TanhJvpSign(TanhWithJvp):
    @staticmethod
    def jvp(ctx, t):
        (y,) = ctx.saved_tensors
        return t * (y * y - 1)  # bug: sign; the backward is right


class LinearWithJvp(Linear):
    """x @ w + b with its forward-mode rule: tx @ w + x @ tw + tb."""

    @staticmethod
    def forward(ctx, x, w, b):
        ctx.save_for_backward(x, w)
        ctx.save_for_forward(x, w)
        return x @ w + b

    @staticmethod
    def jvp(ctx, tx, tw, tb):
        x, w = ctx.saved_tensors
        return tx @ w + x @ tw + tb


class LinearJvpDropped(LinearWithJvp):
    @staticmethod
    def jvp(ctx, tx, tw, tb):
        _x, w = ctx.saved_tensors
        return tx @ w + tb  # bug: the weight's term x @ tw is gone


class XTanh(torch.autograd.Function):
    """x * tanh(x), its backward written in differentiable torch ops: twice differentiable."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return x * torch.tanh(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = torch.tanh(x)
        return g * (t + x * (1 - t * t))


class XTanhDetached(XTanh):
    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        x = x.detach()  # bug: right gradient, but its own derivative in x is cut off
        t = torch.tanh(x)
        return g * (t + x * (1 - t * t))


class XTanhOnce(XTanh):
    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        t = torch.tanh(x)
        return g * (t + x * (1 - t * t))


class TanhSquaresInPlace(Tanh):
    @staticmethod
    def backward(ctx, g):
        (y,) = ctx.saved_tensors
        y.mul_(y)  # right once, but the saved output is overwritten for a second backward
        return g * (1 - y)
