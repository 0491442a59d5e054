"""Run with `python -m pytest` in this folder."""

import numpy as np
import pytest

import gradcheck
from layers import batchnorm_backward, batchnorm_backward_buggy, batchnorm_forward, softmax_loss

rng = np.random.default_rng(0)
INPUTS = {
    "x": rng.standard_normal((6, 4)),
    "gamma": rng.standard_normal(4),
    "beta": rng.standard_normal(4),
}
REFERENCE = (
    "(x - mean(x, axis=0)) / (mean((x - mean(x, axis=0)) ** 2, axis=0) + 1e-5) ** 0.5"
    " * gamma + beta"
)


def test_batchnorm_backward():
    gradcheck.assert_gradients(
        batchnorm_forward,
        batchnorm_backward,
        INPUTS,
        reference=REFERENCE,
        dtypes=["float64", "float32"],
    )


def test_the_buggy_backward_is_caught():
    with pytest.raises(AssertionError, match="blame: batchnorm_backward_buggy"):
        gradcheck.assert_gradients(
            batchnorm_forward, batchnorm_backward_buggy, INPUTS, reference=REFERENCE
        )


def test_softmax_loss():
    gradcheck.assert_loss_gradients(
        softmax_loss,
        {"x": rng.standard_normal((5, 3)), "y": np.array([0, 2, 1, 1, 0])},
        reference="softmax_cross_entropy(x, y)",
    )
