"""What one op is to the numpy reference: a forward, and per input one gradient rule
(reverse mode) and one tangent rule (forward mode)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

# A gradient rule: rule(g, out, *args, **attrs) -> gradient for one argument, where g is
# the upstream gradient (shape of out). `None` marks an argument that is never
# differentiated (integer labels).
GradRule = Callable[..., np.ndarray] | None
# A tangent rule: rule(t, out, *args, **attrs) -> what argument i's tangent t (i's shape)
# contributes to the output's tangent: the output's shape, or one that broadcasts to it
# (the forward-mode executor broadcasts and sums the contributions). `None` as above.
TangentRule = Callable[..., np.ndarray] | None


@dataclass(frozen=True)
class Primitive:
    """`grads` and `tangents` hold one rule per argument. A variadic op (concat, stack,
    einsum) takes any number of operands: each holds one rule that serves every operand,
    called with the operand's position first, `rule(i, g, out, *args, **attrs)`."""

    forward: Callable[..., np.ndarray]
    grads: tuple[GradRule, ...]
    variadic: bool = False
    tangents: tuple[TangentRule, ...] = ()

    def rule(self, i: int) -> GradRule:
        """The gradient rule of argument `i`, as `rule(g, out, *args, **attrs)`."""
        return _of_argument(self.grads, i, self.variadic)

    def tangent(self, i: int) -> TangentRule:
        """The tangent rule of argument `i`, as `rule(t, out, *args, **attrs)`."""
        return _of_argument(self.tangents, i, self.variadic)


def _of_argument(rules: tuple, i: int, variadic: bool):
    if variadic:
        return partial(rules[0], i) if rules and rules[0] is not None else None
    return rules[i] if i < len(rules) else None


@dataclass(frozen=True)
class JointPart:
    """The rule for argument `index`, read off a joint backward that computes the gradients
    of every argument in one pass (backprop through time runs once, not once per input).

    It is an ordinary rule: called alone it runs the whole pass and keeps its part. The
    backprop executor runs the pass once per node for all the parts it needs, so replacing
    one entry of `grads` by any other rule changes that argument's gradient and no other.
    """

    joint: Callable[..., tuple]  # joint(g, out, *args, **attrs) -> one gradient per arg
    index: int

    def __call__(self, g, out, *args, **attrs):
        return self.joint(g, out, *args, **attrs)[self.index]


def joint_rules(joint: Callable[..., tuple], arity: int) -> tuple[JointPart, ...]:
    """One `JointPart` per argument: the `grads` of a primitive with a joint backward."""
    return tuple(JointPart(joint, i) for i in range(arity))


@dataclass(frozen=True)
class TangentPart:
    """The tangent rule of argument `index`, read off a joint tangent that computes the
    output's tangent from every argument's tangent in one pass (the recurrence runs forward
    through time once, not once per input): `JointPart`'s forward-mode twin.

    Called alone it runs the joint with its own tangent only (None for every other
    argument). The forward-mode executor runs the joint once per node with the tangents of
    all its parts, so replacing one entry of `tangents` by any other rule changes that
    argument's contribution and no other."""

    joint: Callable[..., np.ndarray]  # joint(ts, out, *args, **attrs) -> the output's tangent
    index: int

    def __call__(self, t, out, *args, **attrs):
        ts = tuple(t if k == self.index else None for k in range(len(args)))
        return self.joint(ts, out, *args, **attrs)


def joint_tangents(joint: Callable[..., np.ndarray], arity: int) -> tuple[TangentPart, ...]:
    """One `TangentPart` per argument: the `tangents` of a primitive with a joint tangent."""
    return tuple(TangentPart(joint, i) for i in range(arity))


def zeros_for_missing(ts: tuple, args: tuple) -> tuple:
    """A joint tangent's tangents, zeros where an argument has none: its formula is then
    one sum, whichever arguments move (a zero term costs its products, never a branch)."""
    return tuple(np.zeros_like(a) if t is None else t for t, a in zip(ts, args))


def linear(forward: Callable[..., np.ndarray]) -> TangentRule:
    """The tangent rule of an op linear in its first argument (any others are data that
    is never differentiated: indices): the derivative of a linear map is the map itself,
    so the output's tangent is the forward applied to the tangent."""
    return partial(_applied_to_tangent, forward)


def _applied_to_tangent(forward, t, out, x, *data, **attrs):
    return forward(t, *data, **attrs)


class Saved:
    """What a forward keeps for its backward (CS231n's `cache`), found again by the very
    array the forward returned, from the very same argument arrays and attributes, and
    dropped with that output (a weak reference). A rule called with anything else (a copy
    of the output, another argument, another stride) finds nothing and recomputes: keeping
    is an economy, never a different answer."""

    def __init__(self):
        self._entries: dict[int, tuple] = {}

    def keep(self, out: np.ndarray, residuals, args: tuple, attrs: tuple) -> np.ndarray:
        key = id(out)
        self._entries[key] = (weakref.ref(out, partial(self._drop, key)), args, attrs, residuals)
        return out

    def find(self, out, args: tuple, attrs: tuple):
        ref, kept_args, kept_attrs, residuals = self._entries.get(id(out), (None,) * 4)
        same = (
            ref is not None
            and ref() is out
            and len(args) == len(kept_args)
            and all(a is b for a, b in zip(args, kept_args))
            and attrs == kept_attrs
        )
        return residuals if same else None

    def _drop(self, key: int, _ref) -> None:
        self._entries.pop(key, None)


SAVED = Saved()  # one for every op: an array is the output of one forward call


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient back to the shape of an input that numpy broadcast."""
    g = np.asanyarray(g)  # an array subclass (the rounding bound's) stays one
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    if g.shape != tuple(shape):
        raise ValueError(f"gradient of shape {g.shape} does not reduce to input shape {shape}")
    return g
