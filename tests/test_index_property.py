"""Basic indexing as numpy defines it, for any constant key: the shape rule, the cleaned key
(ellipsis expanded, bounds resolved) and the torch form (which slices only forwards) agree
with numpy's own indexing on random shapes and keys."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from gradcheck.engines.torch_ops import OPS as TORCH
from gradcheck.ir.ops import ShapeError, clean_index, index_shape

bounds = st.one_of(st.none(), st.integers(-7, 7))
entries = st.one_of(
    st.integers(-6, 5),
    st.none(),
    st.builds(slice, bounds, bounds, st.sampled_from([None, 1, 2, 3, -1, -2, -3])),
)


@st.composite
def shapes_and_keys(draw):
    shape = tuple(draw(st.lists(st.integers(1, 5), min_size=0, max_size=4)))
    key = draw(st.lists(entries, max_size=5))
    if draw(st.booleans()):
        key.insert(draw(st.integers(0, len(key))), Ellipsis)
    return shape, tuple(key)


@settings(max_examples=300, deadline=None)
@given(shapes_and_keys())
def test_index_matches_numpy(shape_and_key):
    shape, key = shape_and_key
    x = np.arange(int(np.prod(shape)), dtype=np.float64).reshape(shape)
    try:
        expected = x[key]
    except IndexError as refused:
        try:
            index_shape(shape, key)
        except ShapeError:
            return
        raise AssertionError(f"shape rule accepted {key} on {shape}, numpy refuses it") from refused
    assert index_shape(shape, key) == expected.shape
    clean = clean_index({"key": key}, shape)["key"]
    np.testing.assert_array_equal(x[clean], expected)
    np.testing.assert_array_equal(TORCH["index"](torch.from_numpy(x), clean).numpy(), expected)


dims = st.lists(st.integers(1, 3), min_size=1, max_size=4).map(tuple)


@settings(max_examples=300, deadline=None)
@given(dims, dims)
def test_matmul_shape_rule_matches_numpy(a, b):
    from gradcheck.ir.ops import matmul_shape

    try:
        expected = np.matmul(np.zeros(a), np.zeros(b)).shape
    except ValueError as refused:
        try:
            matmul_shape(a, b)
        except ShapeError:
            return
        raise AssertionError(f"shape rule accepted {a} @ {b}, numpy refuses it") from refused
    assert matmul_shape(a, b) == expected
