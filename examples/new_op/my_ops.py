"""A new op, swish(x) = x * sigmoid(x), registered from Python for YAML cases.

Load it with `gradcheck run --plugin my_ops`, or import it from a conftest.py for pytest.
"""

import numpy as np

import gradcheck


def swish(x):
    return x / (1 + np.exp(-x))


def swish_grad(g, out, x):
    s = 1 / (1 + np.exp(-x))
    return g * (s + x * s * (1 - s))


def swish_torch(x):
    import torch

    return x * torch.sigmoid(x)


def swish_jax(x):
    import jax

    return x * jax.nn.sigmoid(x)


gradcheck.register_op(
    "swish", swish, [swish_grad], torch=swish_torch, jax=swish_jax, doc="x * sigmoid(x)"
)
