"""Run with `python check_custom_vjp.py` in this folder: the custom_vjp rule PASSes, the
buggy one FAILs blamed on it (jitted: the same rule runs inside jit)."""

import jax
import numpy as np

import gradcheck
from my_vjp import logsumexp, logsumexp_buggy

x = np.random.default_rng(0).standard_normal((6, 5))

print(
    gradcheck.check_jax(
        logsumexp, {"x": x}, reference="logsumexp(x, axis=-1)", dtypes=["float64", "float32"]
    )
)
print()
print(gradcheck.check_jax(jax.jit(logsumexp_buggy), {"x": x}, reference="logsumexp(x, axis=-1)"))
