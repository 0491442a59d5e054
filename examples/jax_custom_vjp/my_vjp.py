"""logsumexp over the last axis with a custom_vjp rule (its gradient is softmax), and
`logsumexp_buggy`, whose rule forgets to normalize: exp(x - max) instead of softmax(x)."""

import jax
import jax.numpy as jnp


def _stable(x):
    m = jax.lax.stop_gradient(x.max(-1, keepdims=True))
    return (m + jnp.log(jnp.exp(x - m).sum(-1, keepdims=True)))[..., 0]


@jax.custom_vjp
def logsumexp(x):
    return _stable(x)


def _fwd(x):
    out = _stable(x)
    return out, (x, out)


def _bwd(res, g):
    x, out = res
    return (g[..., None] * jnp.exp(x - out[..., None]),)  # softmax(x)


logsumexp.defvjp(_fwd, _bwd)


@jax.custom_vjp
def logsumexp_buggy(x):
    return _stable(x)


def _bwd_buggy(res, g):
    x, _out = res
    return (g[..., None] * jnp.exp(x - x.max(-1, keepdims=True)),)  # bug: not normalized


logsumexp_buggy.defvjp(_fwd, _bwd_buggy)
