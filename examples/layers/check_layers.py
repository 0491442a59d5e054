"""Run with `python check_layers.py` in this folder: one PASS, one FAIL with its table."""

import numpy as np

import gradcheck
from layers import batchnorm_backward, batchnorm_backward_buggy, batchnorm_forward

rng = np.random.default_rng(0)
inputs = {
    "x": rng.standard_normal((6, 4)),
    "gamma": rng.standard_normal(4),
    "beta": rng.standard_normal(4),
}

print(gradcheck.check(batchnorm_forward, batchnorm_backward, inputs))
print()
print(
    gradcheck.check(
        batchnorm_forward,
        batchnorm_backward_buggy,
        inputs,
        reference="(x - mean(x, axis=0)) / (mean((x - mean(x, axis=0)) ** 2, axis=0)"
        " + 1e-5) ** 0.5 * gamma + beta",
    )
)
