"""Your jax code: a function of arrays, `jit`ted or not, with `custom_vjp` or `custom_jvp`
rules inside. Your gradient is `jax.vjp` of `fn` in the checked dtype, its forward mode
`jax.jvp` and its Hessian-vector product `jax.jvp` of `jax.grad`: your rules are what is
checked."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..base import UserCodeError, require
from .calls import NO_FORWARD_RULE, calling, name_of


class JaxCode:
    """`inputs`: your argument names in order. Outputs: an array or any pytree of them."""

    def __init__(self, fn, inputs: list[str], name: str | None = None):
        self.jax = require("jax")
        # before any array is made: float64 inputs must not silently become float32
        self.jax.config.update("jax_enable_x64", True)
        self.fn, self.inputs = fn, list(inputs)
        self.name = self.forward_name = name or name_of(fn)

    def outputs(self, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        with calling(self.name):
            result = self.fn(*[self._array(arrays[k]) for k in self.inputs])
        return [np.asarray(o) for o in self._leaves(result)]

    def vjp(self, arrays, cotangents, wrt):
        """Your outputs, and the gradient of <cotangents, outputs> by `jax.vjp`."""
        jax = self.jax
        with calling(self.name):
            result, pullback = jax.vjp(self._of(arrays, wrt), *self._moving(arrays, wrt))
        leaves, tree = jax.tree_util.tree_flatten(result)
        cots = [jax.numpy.asarray(c, dtype=leaf.dtype) for c, leaf in zip(cotangents, leaves)]
        with calling(f"{self.name}'s backward"):
            grads = pullback(jax.tree_util.tree_unflatten(tree, cots))
        return (
            [np.asarray(o) for o in self._leaves(result)],
            {w: np.asarray(g) for w, g in zip(wrt, grads)},
        )

    def jvp(self, arrays, tangents, wrt):
        """J_x u_x per output, each x of `wrt` moving alone: `jax.jvp`, which runs a
        `custom_jvp` rule itself (a `custom_vjp` function has no forward mode)."""
        products: dict[str, list[np.ndarray]] = {}
        outs: list[np.ndarray] = []
        for w in wrt:
            (x,) = self._moving(arrays, [w])
            along = self.jax.numpy.asarray(tangents[w], dtype=x.dtype)
            with calling(self.name, _no_forward_rule, self.fn):
                result, derivative = self.jax.jvp(self._of(arrays, [w]), (x,), (along,))
            outs = [np.asarray(o) for o in self._leaves(result)]
            products[w] = [np.asarray(t) for t in self.jax.tree_util.tree_leaves(derivative)]
        return outs, products

    def hvp(self, arrays, cotangents, tangents, wrt):
        """(H u) forward over reverse: `jax.jvp` along u of the gradient of <cotangents,
        outputs> (your rules are differentiated as jax differentiates any code)."""
        jax = self.jax
        of_wrt = self._of(arrays, wrt)

        def contracted(*values):
            leaves = self._leaves(of_wrt(*values))
            terms = [(o * jax.numpy.asarray(c, o.dtype)).sum() for o, c in zip(leaves, cotangents)]
            return sum(terms), leaves

        gradient = jax.grad(contracted, argnums=tuple(range(len(wrt))), has_aux=True)
        xs = tuple(self._moving(arrays, wrt))
        along = tuple(jax.numpy.asarray(tangents[w], dtype=x.dtype) for w, x in zip(wrt, xs))
        with calling(f"{self.name}'s second derivative"):
            (_, leaves), (products, _) = jax.jvp(gradient, xs, along)
        return [np.asarray(o) for o in leaves], {w: np.asarray(p) for w, p in zip(wrt, products)}

    def _of(self, arrays, wrt):
        """`fn` as a function of the inputs `wrt` alone, in that order; the rest held."""
        fixed = {k: self._array(a) for k, a in arrays.items() if k not in wrt}

        def of_wrt(*values):
            env = {**fixed, **dict(zip(wrt, values))}
            return self.fn(*[env[k] for k in self.inputs])

        return of_wrt

    def _moving(self, arrays, wrt) -> list:
        """The inputs `wrt`, in that order, as jax arrays."""
        return [self._array(arrays[w]) for w in wrt]

    def _array(self, array):
        return self.jax.numpy.asarray(array)

    def _leaves(self, result) -> list:
        """Your outputs' arrays; your error where there are none."""
        leaves = self.jax.tree_util.tree_leaves(result)
        if not leaves or any(leaf is None for leaf in leaves):
            raise UserCodeError(
                f"{self.name} returned {type(result).__name__}; expected an "
                "array or a tuple or dict of arrays"
            )
        return leaves


def _no_forward_rule(error: Exception) -> str | None:
    """What jax's refusal of forward mode means: a `custom_vjp` function, which has none."""
    return NO_FORWARD_RULE if "custom_vjp" in str(error) and "jvp" in str(error) else None
