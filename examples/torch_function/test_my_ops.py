"""Run with `python -m pytest` in this folder."""

import pytest
import torch

import gradcheck
from my_ops import Swish, SwishBuggy

torch.manual_seed(0)
INPUTS = {"x": torch.randn(6, 5, dtype=torch.float64)}


def test_swish_against_finite_differences_in_every_dtype():
    # without a reference, fd differentiates Swish's own forward (in float64)
    gradcheck.assert_torch_gradients(
        Swish.apply, INPUTS, dtypes=["float64", "float32", "bfloat16", "float16"]
    )


def test_swish_against_a_reference():
    gradcheck.assert_torch_gradients(
        Swish.apply, INPUTS, reference="x * sigmoid(x)", dtypes=["float64", "float32"]
    )


@pytest.mark.xfail(
    strict=True,
    raises=AssertionError,
    reason="SwishBuggy's backward drops the product rule's x * sigmoid'(x) term",
)
def test_swish_buggy():
    gradcheck.assert_torch_gradients(SwishBuggy.apply, INPUTS, reference="x * sigmoid(x)")
