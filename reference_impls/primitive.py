"""What one op is to the numpy reference: a forward and one gradient rule per input."""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from functools import partial
from typing import Callable, Optional

import numpy as np

# A gradient rule: rule(g, out, *args, **attrs) -> gradient for one argument, where g is
# the upstream gradient (shape of out). `None` marks an argument that is never
# differentiated (integer labels).
GradRule = Optional[Callable[..., np.ndarray]]


@dataclass(frozen=True)
class Primitive:
    """`grads` holds one rule per argument. A variadic op (concat, stack, einsum) takes any
    number of operands: its `grads` holds one rule that serves every operand, called with
    the operand's position first, `rule(i, g, out, *args, **attrs)`."""

    forward: Callable[..., np.ndarray]
    grads: tuple[GradRule, ...]
    variadic: bool = False

    def rule(self, i: int) -> GradRule:
        """The gradient rule of argument `i`, as `rule(g, out, *args, **attrs)`."""
        if self.variadic:
            return partial(self.grads[0], i)
        return self.grads[i] if i < len(self.grads) else None


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
