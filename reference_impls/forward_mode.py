"""The reference forward mode: each node's tangent computed beside its value.

The graph, the op table and the casts are those of `backprop`. Every input named in
`tangents` moves along its tangent; a node that depends on one of them gets a tangent,
the sum of what each moving argument contributes through its op's tangent rule (the
chain rule's "sum over arguments"), broadcast to the node's shape. Nodes that no tangent
reaches are only evaluated.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .backprop import MissingGradRule, _final, dependents, operands, topological_order
from .primitive import Primitive, TangentPart


class MissingTangentRule(MissingGradRule):
    pass


def jvp(graph, ops: Mapping[str, Primitive], env: dict, tangents: Mapping, combine=np.add):
    """Return (output value, output tangent): J u, the derivative of the output along
    `tangents` ({input name: tangent of that input's shape}), every named input moving.

    The tangent is zeros of the output's shape and dtype where no tangent reaches it.
    A node whose value `env` already holds (a forward run once for several passes) is not
    evaluated again.
    `combine` adds two contributions to one tangent: an argument, so that a variant
    executor (one whose additions round) is a call away and never a second copy of this
    loop."""
    order = topological_order(graph)
    moving = dependents(order, tangents)
    dots = dict(tangents)  # name -> its tangent, inputs' and nodes' alike
    for node in order:
        prim, args = ops[node.op], operands(node, env)
        if node.name not in env:  # a forward already run (one per input's pass) is reused
            env[node.name] = prim.forward(*args, **node.attrs)
        if node.name in moving:
            dots[node.name] = _tangent(node, prim, args, env[node.name], dots, combine)
    return env[graph.output], _final(dots, env[graph.output], graph.output)


def _tangent(node, prim: Primitive, args, out, dots, combine):
    """The node's tangent: each moving argument's contribution, summed."""
    total = None
    joints: dict = {}  # joint tangent -> the tangents of its parts, run once below
    for i, arg in enumerate(node.args):
        if arg not in dots:
            continue
        rule = prim.tangent(i)
        if rule is None:
            raise MissingTangentRule(f"no tangent rule for argument {i + 1} of {node.op!r}")
        if isinstance(rule, TangentPart):
            joints.setdefault(rule.joint, [None] * len(args))[rule.index] = dots[arg]
            continue
        total = _added(total, rule(dots[arg], out, *args, **node.attrs), out, combine)
    for joint, ts in joints.items():
        total = _added(total, joint(tuple(ts), out, *args, **node.attrs), out, combine)
    return total


def _added(total, contribution, out, combine):
    # a rule may return less than the output's shape (a bias's tangent): broadcast it,
    # keeping an array subclass (the rounding model's) as it is
    if np.shape(contribution) != np.shape(out):  # most have it: a view would cost more
        contribution = np.broadcast_to(contribution, np.shape(out), subok=True)
    return contribution if total is None else combine(total, contribution)
