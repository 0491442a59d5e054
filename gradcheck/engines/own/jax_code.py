"""Your jax code: a function of arrays, `jit`ted or not, with `custom_vjp` or `custom_jvp`
rules inside. Your gradient is `jax.vjp` of `fn` in the checked dtype: your rules are what
is checked."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..base import UserCodeError, require
from .calls import calling, name_of


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
        jax = self.jax
        fixed = {k: self._array(a) for k, a in arrays.items() if k not in wrt}

        def of_wrt(*values):
            env = {**fixed, **dict(zip(wrt, values))}
            return self.fn(*[env[k] for k in self.inputs])

        with calling(self.name):
            result, pullback = jax.vjp(of_wrt, *[self._array(arrays[w]) for w in wrt])
        leaves, tree = jax.tree_util.tree_flatten(result)
        cots = [jax.numpy.asarray(c, dtype=leaf.dtype) for c, leaf in zip(cotangents, leaves)]
        with calling(f"{self.name}'s backward"):
            grads = pullback(jax.tree_util.tree_unflatten(tree, cots))
        return (
            [np.asarray(o) for o in self._leaves(result)],
            {w: np.asarray(g) for w, g in zip(wrt, grads)},
        )

    def _array(self, array):
        return self.jax.numpy.asarray(array)

    def _leaves(self, result) -> list:
        leaves = self.jax.tree_util.tree_leaves(result)
        if not leaves or any(leaf is None for leaf in leaves):
            raise UserCodeError(
                f"{self.name} returned {type(result).__name__}; expected an "
                "array or a tuple or dict of arrays"
            )
        return leaves
