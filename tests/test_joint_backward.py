"""The `reference_impls.OPS` contract with joint backward passes.

conv2d, rnn and lstm compute every input's gradient in one pass (`joint_rules`), yet keep
one working rule per input in `grads`: replacing one entry of a copied table changes what
the numpy engine computes for that input, and only for it, and the joint pass runs once
per node, not once per input.
"""

from __future__ import annotations

import numpy as np
import pytest

import reference_impls
from gradcheck.engines import NumpyEngine
from gradcheck.ir.graph import FLOAT, Leaf, build_graph
from reference_impls import JointPart, Primitive, joint_rules
from reference_impls.primitive import SAVED

SHAPES = {
    "conv2d": (
        "conv2d(x, w, b, stride=2, pad=1, dilation=1, groups=2)",
        {"x": (2, 4, 5, 6), "w": (6, 2, 3, 2), "b": (6,)},
    ),
    "rnn": (
        "rnn(x, h0, wx, wh, b)",
        {"x": (2, 3, 4), "h0": (2, 5), "wx": (4, 5), "wh": (5, 5), "b": (5,)},
    ),
    "lstm": (
        "lstm(x, h0, c0, wx, wh, b)",
        {"x": (2, 3, 4), "h0": (2, 5), "c0": (2, 5), "wx": (4, 20), "wh": (5, 20), "b": (20,)},
    ),
}


def setup(op):
    expr, shapes = SHAPES[op]
    rng = np.random.default_rng(len(op))
    inputs = {k: 0.5 * rng.standard_normal(s) for k, s in shapes.items()}
    graph = build_graph([("out", expr)], {k: Leaf(k, s, FLOAT) for k, s in shapes.items()})
    out = reference_impls.OPS[op].forward(*inputs.values(), **graph.nodes[-1].attrs)
    return graph, inputs, rng.standard_normal(out.shape)


def vjp(ops, op):
    graph, inputs, cotangent = setup(op)
    return NumpyEngine(ops).vjp(graph, inputs, list(inputs), cotangent).grads


@pytest.mark.parametrize("op", sorted(SHAPES))
def test_joint_ops_keep_one_working_rule_per_input(op):
    prim = reference_impls.OPS[op]
    assert all(isinstance(rule, JointPart) for rule in prim.grads)
    graph, inputs, g = setup(op)
    attrs = graph.nodes[-1].attrs
    out = prim.forward(*inputs.values(), **attrs)
    together = prim.grads[0].joint(g, out, *inputs.values(), **attrs)
    for rule, joint_grad in zip(prim.grads, together):  # each rule alone, the same
        np.testing.assert_array_equal(rule(g, out, *inputs.values(), **attrs), joint_grad)


@pytest.mark.parametrize("op", sorted(SHAPES))
def test_replacing_one_rule_changes_that_gradient_only(op):
    want = vjp(reference_impls.OPS, op)
    names = list(SHAPES[op][1])
    for index, name in enumerate(names):
        ops = dict(reference_impls.OPS)
        grads = list(ops[op].grads)
        grads[index] = lambda g, out, *args, _k=index, **attrs: np.full(args[_k].shape, 7.0)
        ops[op] = Primitive(ops[op].forward, tuple(grads))
        got = vjp(ops, op)
        np.testing.assert_array_equal(got[name], 7.0)
        for other in names:
            if other != name:
                np.testing.assert_array_equal(got[other], want[other], err_msg=other)


@pytest.mark.parametrize("op", sorted(SHAPES))
def test_joint_pass_runs_once_per_node(op):
    calls = []
    joint = reference_impls.OPS[op].grads[0].joint

    def counted(*args, **attrs):
        calls.append(1)
        return joint(*args, **attrs)

    prim = reference_impls.OPS[op]
    ops = {
        **reference_impls.OPS,
        op: Primitive(prim.forward, joint_rules(counted, len(prim.grads))),
    }
    got = vjp(ops, op)
    assert len(calls) == 1
    want = vjp(reference_impls.OPS, op)
    for name in want:
        np.testing.assert_array_equal(got[name], want[name])


# --- what a forward keeps for its backward ---------------------------------------------------

RECOMPUTE = {
    "conv2d": (reference_impls.nn, "_im2col"),
    "lstm": (reference_impls.layers, "_lstm_recompute"),
}


def refused(*args, **kwargs):
    raise AssertionError("recomputed what the forward kept")


@pytest.mark.parametrize("op", ["conv2d", "lstm"])
def test_a_backward_given_the_forwards_output_uses_what_it_kept(op, monkeypatch):
    graph, inputs, cotangent = setup(op)
    prim, attrs = reference_impls.OPS[op], graph.nodes[-1].attrs
    out = prim.forward(*inputs.values(), **attrs)
    recomputed = prim.grads[0].joint(cotangent, out.copy(), *inputs.values(), **attrs)
    monkeypatch.setattr(*RECOMPUTE[op], refused)
    kept = prim.grads[0].joint(cotangent, out, *inputs.values(), **attrs)
    for a, b in zip(kept, recomputed):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)


def test_a_backward_called_with_other_attributes_or_arguments_recomputes():
    graph, inputs, cotangent = setup("conv2d")
    prim, attrs = reference_impls.OPS["conv2d"], graph.nodes[-1].attrs
    out = prim.forward(*inputs.values(), **attrs)
    x, w, b = inputs.values()
    for args, kwargs in [((x, w, b), {**attrs, "stride": 1}), ((x.copy(), w, b), attrs)]:
        np.testing.assert_array_equal(
            prim.grads[1](cotangent, out, *args, **kwargs),
            prim.grads[1](cotangent, out.copy(), *args, **kwargs),
        )


def test_what_a_forward_kept_goes_with_its_output():
    _graph, inputs, _ = setup("lstm")
    before = len(SAVED._entries)
    out = reference_impls.OPS["lstm"].forward(*inputs.values())
    assert len(SAVED._entries) == before + 1
    del out
    assert len(SAVED._entries) == before


@pytest.mark.parametrize("op", ["conv2d", "lstm"])
def test_a_forward_of_stacked_inputs_keeps_nothing(op):
    """fd's batched evaluations stack inputs along a leading axis; no backward reads what
    such a forward would keep (a stacked im2col matrix is the largest array of a run)."""
    graph, inputs, _ = setup(op)
    stacked = {k: np.stack([v, v]) if k == "x" else v for k, v in inputs.items()}
    before = len(SAVED._entries)
    out = reference_impls.OPS[op].forward(*stacked.values(), **graph.nodes[-1].attrs)
    assert out.shape[0] == 2 and len(SAVED._entries) == before
