"""The reference reverse mode: forward in topological order, backward in reverse.

The graph is any object with `nodes` (each with `name`, `op`, `args`, `attrs`) and
`output`; `ops` maps an op name to its `Primitive`. Where a value fans out to several
nodes, the gradients arriving along each path are summed (the seeds' "sum over paths").

A node may also name `casts`, `(position, name)` pairs: that operand takes the dtype of
value `name` before the op runs, in the forward and in every gradient rule alike (integer
data entering float arithmetic, so that int64 * float32 stays float32). A cast operand is
integer data or a literal, never differentiated: no rule of it is ever called.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from .primitive import JointPart, Primitive, unbroadcast


class MissingGradRule(NotImplementedError):
    pass


def topological_order(graph) -> list:
    """The nodes the output depends on, each after its arguments (iterative DFS)."""
    by_name = {node.name: node for node in graph.nodes}
    order, done, stack = [], set(), [(graph.output, False)]
    while stack:
        name, expanded = stack.pop()
        if name in done or name not in by_name:
            continue
        if expanded:
            done.add(name)
            order.append(by_name[name])
            continue
        stack.append((name, True))
        stack.extend((arg, False) for arg in reversed(by_name[name].args) if arg not in done)
    return order


def forward(graph, ops: Mapping[str, Primitive], env: dict, nodes=None) -> dict:
    """Evaluate `nodes` (default: all the output needs) into `env`, in order."""
    for node in topological_order(graph) if nodes is None else nodes:
        env[node.name] = ops[node.op].forward(*operands(node, env), **node.attrs)
    return env


def operands(node, env: Mapping) -> list:
    """The node's arguments from `env`, with the casts it names applied."""
    args = [env[a] for a in node.args]
    for i, like in getattr(node, "casts", ()):
        args[i] = np.asarray(args[i]).astype(np.asarray(env[like]).dtype)
    return args


def dependents(order, names) -> set[str]:
    """`names` and every node of `order` that depends on one of them."""
    found = set(names)
    for node in order:
        if found.intersection(node.args):
            found.add(node.name)
    return found


def backprop(
    graph,
    ops: Mapping[str, Primitive],
    env: dict,
    wrt,
    cotangent,
    combine=np.add,
    reduce=unbroadcast,
):
    """Return (output value, {name: gradient}) for the names in `wrt`.

    `combine` adds the gradients of a value that fans out, `reduce` sums a gradient back to
    its input's shape: arguments, so that a variant executor (a mutant with one of these
    steps wrong) is a call away and never a second copy of this loop."""
    order = topological_order(graph)
    env = forward(graph, ops, env)
    needs = dependents(order, wrt)
    grads = {graph.output: np.asarray(cotangent)}
    for node in reversed(order):
        g = grads.pop(node.name, None)
        if g is not None:
            _accumulate(node, ops[node.op], g, env, needs, grads, combine, reduce)
    return env[graph.output], {name: _final(grads, env[name], name) for name in wrt}


def _accumulate(node, prim: Primitive, g, env, needs, grads, combine, reduce) -> None:
    args = operands(node, env)
    passes: dict = {}  # joint backward -> its gradients, computed once here
    for i, arg in enumerate(node.args):
        if arg not in needs:
            continue
        rule = prim.rule(i)
        if rule is None:
            raise MissingGradRule(f"no gradient rule for argument {i + 1} of {node.op!r}")
        grad = _apply(rule, passes, g, env[node.name], args, node.attrs)
        contribution = reduce(grad, np.shape(env[arg]))
        grads[arg] = combine(grads[arg], contribution) if arg in grads else contribution


def _apply(rule, passes: dict, g, out, args, attrs):
    """One rule's gradient; the parts of one joint backward share a single pass."""
    if not isinstance(rule, JointPart):
        return rule(g, out, *args, **attrs)
    if rule.joint not in passes:
        passes[rule.joint] = rule.joint(g, out, *args, **attrs)
    return passes[rule.joint][rule.index]


def _final(grads, value, name):
    g = grads.get(name)
    value = np.asarray(value)
    return np.zeros_like(value) if g is None else np.asarray(g, dtype=value.dtype)
