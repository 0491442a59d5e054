"""The numpy reference's forward mode: `reference_impls.jvp` and every op's tangent rules.

Every op of `reference_impls.OPS` has a tangent rule for each argument it differentiates.
On every case of the catalog, with x alone moving along the case's seeded direction u_x,
the output's tangent J_x u_x passes the dot-product test against the reference's own
reverse mode, <v, J_x u_x> = <J_x^T v, u_x> (v the case's cotangent), and equals jax's
`jax.jvp` of the same graph. At a kink each tangent rule takes jax's convention. A few
tangents are checked against derivatives worked by hand, and the executor's contract is
checked as backprop's is (tests/test_joint_backward.py): a joint tangent runs once per
node, each entry of `tangents` is that argument's contribution and no other's, and rules
keep working on the rounding model's array subclass.
"""

from __future__ import annotations

import dataclasses
import math

import jax
import numpy as np
import pytest

import gradcheck
import reference_impls
from gradcheck.engines import jax_ops
from gradcheck.engines.base import constants
from gradcheck.harness.rounding import Noise, Noisy
from gradcheck.ir.graph import interpret
from helpers import CATALOG, graph_of
from reference_impls import MissingTangentRule, Primitive, TangentPart, joint_tangents

jax.config.update("jax_enable_x64", True)  # before any jax array is made

CASES = {case.name: case for case in gradcheck.load_cases([CATALOG])}
DOT_RTOL = 1e-10  # of sum |v J u|: float64 products of a few hundred terms
JAX_RTOL, JAX_FLOOR = 1e-9, 1e-12  # elementwise, with an absolute floor of 1e-12 max|J u|


def env_of(case) -> dict:
    return {**case.arrays("float64"), **constants(case.graph, np.float64)}


def numpy_jvp(case, x: str, u, ops=reference_impls.OPS):
    return reference_impls.jvp(case.graph, ops, env_of(case), {x: u})[1]


def jax_jvps(case, tangents: dict) -> dict:
    """jax.jvp of the graph under jax's op table, each input alone moving: one program."""
    graph = case.graph

    def products(env, tangents):
        def along(x):
            def f(value):
                return interpret(graph, jax_ops.OPS, {**env, x: value})[graph.output]

            return jax.jvp(f, (env[x],), (tangents[x],))[1]

        return {x: along(x) for x in tangents}

    return {x: np.asarray(t) for x, t in jax.jit(products)(env_of(case), tangents).items()}


# --- every op, every differentiated argument ----------------------------------------------


@pytest.mark.parametrize("op", sorted(reference_impls.OPS))
def test_every_differentiated_argument_has_a_tangent_rule(op):
    prim = reference_impls.OPS[op]
    assert len(prim.tangents) == len(prim.grads), "one tangent rule per gradient rule"
    for i, (grad, tangent) in enumerate(zip(prim.grads, prim.tangents)):
        assert (tangent is None) == (grad is None), f"argument {i + 1}"


# --- the catalog: the dot-product test and jax.jvp ----------------------------------------


@pytest.mark.parametrize("name", sorted(CASES))
def test_tangents_pass_the_dot_product_test_and_match_jax(name):
    case = CASES[name]
    v, tangents = case.cotangent("float64"), case.tangents("float64")
    _, grads = reference_impls.backprop(case.graph, reference_impls.OPS, env_of(case), case.wrt, v)
    from_jax = jax_jvps(case, tangents)
    for x, u in tangents.items():
        ju = numpy_jvp(case, x, u)
        forward, reverse = np.sum(v * ju), np.sum(grads[x] * u)
        assert abs(forward - reverse) <= DOT_RTOL * np.sum(np.abs(v * ju)), x
        floor = JAX_FLOOR * np.max(np.abs(from_jax[x]), initial=0.0)
        np.testing.assert_allclose(ju, from_jax[x], rtol=JAX_RTOL, atol=floor, err_msg=x)


# --- by hand ------------------------------------------------------------------------------

# name: (expression, inputs, tangents (each alone), the output's tangent worked by hand)
HAND = {
    # d(ab) = t_a b and a t_b
    "mul": (
        "a * b",
        dict(a=[1.0, 2.0, -3.0], b=[4.0, -0.5, 2.0]),
        dict(a=[1.0, 1.0, 1.0], b=[0.0, 2.0, -1.0]),
        dict(a=[4.0, -0.5, 2.0], b=[0.0, 4.0, 3.0]),
    ),
    # d tanh(x) = (1 - tanh^2 x) t = sech^2 x t; sech(0.5) = 2 / (e^0.5 + e^-0.5)
    "tanh": (
        "tanh(x)",
        dict(x=[0.5, 0.0]),
        dict(x=[2.0, -3.0]),
        dict(x=[2 * (2 / (math.exp(0.5) + math.exp(-0.5))) ** 2, -3.0]),
    ),
    # d(AB) = T_A B and A T_B
    "matmul": (
        "A @ B",
        dict(A=[[1.0, 2.0], [3.0, 4.0]], B=[[0.0, 1.0], [-1.0, 2.0]]),
        dict(A=[[1.0, 0.0], [0.0, 0.0]], B=[[0.0, 0.0], [1.0, 1.0]]),
        dict(A=[[0.0, 1.0], [0.0, 0.0]], B=[[2.0, 2.0], [4.0, 4.0]]),
    ),
    # p = (1/3, 2/3) at x = (0, ln 2); dp = p (t - p.t) = (1/3 (1 - 1/3), 2/3 (0 - 1/3))
    "softmax": (
        "softmax(x)",
        dict(x=[0.0, math.log(2.0)]),
        dict(x=[1.0, 0.0]),
        dict(x=[2 / 9, -2 / 9]),
    ),
}


@pytest.mark.parametrize("op", sorted(HAND))
def test_tangents_worked_by_hand(op):
    expr, inputs, tangents, want = HAND[op]
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    graph = graph_of(expr, arrays)
    for x, u in tangents.items():
        _, got = reference_impls.jvp(graph, reference_impls.OPS, dict(arrays), {x: np.asarray(u)})
        np.testing.assert_allclose(got, want[x], rtol=1e-15, atol=1e-15, err_msg=x)


# --- kinks: jax's convention --------------------------------------------------------------

# name: (expression, inputs sitting on the kink); every float input moves along (1, 2, 3, ...)
KINKS = {
    "relu at 0": ("relu(x)", dict(x=[0.0, 1.0, -1.0])),
    "abs at 0": ("abs(x)", dict(x=[0.0, 1.0, -1.0])),
    "leaky_relu at 0": ("leaky_relu(x, slope=0.1)", dict(x=[0.0, 1.0, -1.0])),
    "elu at 0": ("elu(x, alpha=2.0)", dict(x=[0.0, 1.0, -1.0])),
    "clip at its bounds": ("clip(x, low=0.0, high=1.0)", dict(x=[0.0, 1.0, 0.5, 2.0])),
    "maximum tie": ("maximum(a, b)", dict(a=[1.0, 2.0], b=[1.0, 3.0])),
    "minimum tie": ("minimum(a, b)", dict(a=[1.0, 2.0], b=[1.0, 3.0])),
    "max tie": ("max(x, axis=1)", dict(x=[[1.0, 1.0, 0.5], [2.0, 2.0, 2.0]])),
    "min tie": ("min(x)", dict(x=[[1.0, 1.0, 3.0]])),
    "maxpool tie": (
        "maxpool2d(x, size=2, stride=2)",
        dict(x=[[[[1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 0.0]]]]),
    ),
}


@pytest.mark.parametrize("kink", sorted(KINKS))
def test_tangents_take_jaxs_convention_at_a_kink(kink):
    expr, inputs = KINKS[kink]
    arrays = {k: np.asarray(v) for k, v in inputs.items()}
    graph = graph_of(expr, arrays)
    for x, value in arrays.items():
        u = np.arange(1.0, value.size + 1).reshape(value.shape)
        _, got = reference_impls.jvp(graph, reference_impls.OPS, dict(arrays), {x: u})
        want = jax.jvp(
            lambda value, x=x: interpret(graph, jax_ops.OPS, {**arrays, x: value})[graph.output],
            (value,),
            (u,),
        )[1]
        np.testing.assert_array_equal(got, want, err_msg=x)


# --- the executor: joint tangents ---------------------------------------------------------

JOINT = {  # one node of each op with a joint tangent
    "conv2d": (
        "conv2d(x, w, b, stride=2, pad=1, dilation=1, groups=2)",
        {"x": (2, 4, 5, 6), "w": (6, 2, 3, 2), "b": (6,)},
    ),
    "batchnorm": ("batchnorm(x, gamma, beta)", {"x": (3, 2, 2, 3), "gamma": (2,), "beta": (2,)}),
    "layernorm": ("layernorm(x, gamma, beta)", {"x": (2, 3, 4), "gamma": (4,), "beta": (4,)}),
    "rnn": (
        "rnn(x, h0, wx, wh, b)",
        {"x": (2, 3, 4), "h0": (2, 5), "wx": (4, 5), "wh": (5, 5), "b": (5,)},
    ),
    "lstm": (
        "lstm(x, h0, c0, wx, wh, b)",
        {"x": (2, 3, 4), "h0": (2, 5), "c0": (2, 5), "wx": (4, 20), "wh": (5, 20), "b": (20,)},
    ),
}


def joint_node(op):
    """A one-node graph of `op`, its inputs and a tangent for each."""
    expr, shapes = JOINT[op]
    rng = np.random.default_rng(len(op))
    inputs = {k: 0.5 * rng.standard_normal(shape) for k, shape in shapes.items()}
    tangents = {k: rng.standard_normal(v.shape) for k, v in inputs.items()}
    return graph_of(expr, inputs), inputs, tangents


def with_tangents(op, rules) -> dict:
    """A copy of the op table in which `op` has the tangent rules `rules`."""
    prim = reference_impls.OPS[op]
    return {**reference_impls.OPS, op: dataclasses.replace(prim, tangents=tuple(rules))}


def jvp_of(graph, ops, inputs, tangents):
    return reference_impls.jvp(graph, ops, dict(inputs), tangents)[1]


@pytest.mark.parametrize("op", sorted(JOINT))
def test_a_joint_tangent_runs_once_per_node_with_every_tangent(op):
    graph, inputs, tangents = joint_node(op)
    joint, given = reference_impls.OPS[op].tangents[0].joint, []

    def counted(ts, *args, **attrs):
        given.append([t is not None for t in ts])
        return joint(ts, *args, **attrs)

    ops = with_tangents(op, joint_tangents(counted, len(inputs)))
    got = jvp_of(graph, ops, inputs, tangents)
    assert given == [[True] * len(inputs)]
    np.testing.assert_array_equal(got, jvp_of(graph, reference_impls.OPS, inputs, tangents))


@pytest.mark.parametrize("op", sorted(JOINT))
def test_replacing_one_tangent_rule_changes_that_contribution_only(op):
    graph, inputs, tangents = joint_node(op)
    alone = {k: jvp_of(graph, reference_impls.OPS, inputs, {k: t}) for k, t in tangents.items()}
    for index, name in enumerate(inputs):
        rules = list(reference_impls.OPS[op].tangents)
        rules[index] = lambda t, out, *args, **attrs: np.full(out.shape, 7.0)
        got = jvp_of(graph, with_tangents(op, rules), inputs, tangents)
        others = sum(t for k, t in alone.items() if k != name)
        np.testing.assert_allclose(got, 7.0 + others, rtol=1e-12, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("op", sorted(JOINT))
def test_a_tangent_part_alone_is_the_joint_with_its_own_tangent(op):
    graph, inputs, tangents = joint_node(op)
    [node] = graph.nodes
    args = [inputs[k] for k in node.args]
    out = reference_impls.OPS[op].forward(*args, **node.attrs)
    for part in reference_impls.OPS[op].tangents:
        assert isinstance(part, TangentPart)
        t = tangents[node.args[part.index]]
        ts = tuple(t if k == part.index else None for k in range(len(args)))
        np.testing.assert_array_equal(
            part(t, out, *args, **node.attrs), part.joint(ts, out, *args, **node.attrs)
        )


# --- the executor: the rest ---------------------------------------------------------------


def test_an_output_no_tangent_reaches_has_a_zero_tangent():
    arrays = dict(a=np.arange(3.0), b=np.ones(3, dtype=np.float32))
    graph = graph_of([("c", "exp(a)"), ("out", "b * 2.0")], arrays)
    value, tangent = reference_impls.jvp(
        graph, reference_impls.OPS, {**arrays, **constants(graph, np.float32)}, {"a": np.ones(3)}
    )
    assert tangent.dtype == value.dtype == np.float32
    np.testing.assert_array_equal(tangent, np.zeros(3))


def test_a_missing_tangent_rule_is_named():
    arrays = dict(a=np.arange(3.0))
    graph = graph_of("tanh(a)", arrays)
    ops = {**reference_impls.OPS, "tanh": Primitive(np.tanh, reference_impls.OPS["tanh"].grads)}
    with pytest.raises(MissingTangentRule, match="argument 1 of 'tanh'"):
        reference_impls.jvp(graph, ops, dict(arrays), {"a": np.ones(3)})


def test_combine_adds_the_contributions():
    # x * x: two contributions, added by `combine` (a rounding executor rounds there)
    arrays, added = dict(x=np.array([3.0])), []

    def combine(a, b):
        added.append((float(a[0]), float(b[0])))
        return a + b

    graph = graph_of("x * x", arrays)
    _, t = reference_impls.jvp(graph, reference_impls.OPS, dict(arrays), {"x": np.ones(1)}, combine)
    assert added == [(3.0, 3.0)] and t == 6.0


# --- an array subclass: the rounding model's, with no noise -------------------------------


def on_subclass(rule, noise):
    """`rule` run on Noisy views of its arrays: it must return a Noisy array again."""

    def run(*args, **attrs):
        result = rule(*(as_noisy(a, noise) for a in args), **attrs)
        assert isinstance(result, Noisy) or np.asarray(result).dtype.kind != "f", rule
        return np.asarray(result).view(np.ndarray)

    return run


def as_noisy(a, noise):
    if isinstance(a, tuple):  # a joint tangent's tangents
        return tuple(None if t is None else as_noisy(t, noise) for t in a)
    if not isinstance(a, (np.ndarray, np.generic)) or np.asarray(a).dtype.kind != "f":
        return a  # an operand's position, integer data
    view = np.asarray(a).view(Noisy)  # a 0-d tangent may be a numpy scalar
    view.noise = noise
    return view


def noiseless_subclass_ops(noise) -> dict:
    def rules(prim):
        joints: dict = {}

        def one(rule):
            if isinstance(rule, TangentPart):  # the parts stay parts of one joint
                joint = joints.setdefault(rule.joint, on_subclass(rule.joint, noise))
                return TangentPart(joint, rule.index)
            return None if rule is None else on_subclass(rule, noise)

        return tuple(one(r) for r in prim.tangents)

    return {op: dataclasses.replace(p, tangents=rules(p)) for op, p in reference_impls.OPS.items()}


@pytest.mark.parametrize("name", sorted(CASES))
def test_tangent_rules_keep_an_array_subclass(name):
    case = CASES[name]
    ops = noiseless_subclass_ops(Noise(0.0, np.random.default_rng(0)))
    for x, u in case.tangents("float64").items():
        want = numpy_jvp(case, x, u)
        # the same numbers, up to the order in which a few sums add (a last bit)
        floor = 1e-13 * np.max(np.abs(want), initial=0.0)
        np.testing.assert_allclose(numpy_jvp(case, x, u, ops), want, rtol=1e-13, atol=floor)
