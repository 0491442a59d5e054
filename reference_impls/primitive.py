"""What one op is to the numpy reference: a forward and one gradient rule per input."""
from __future__ import annotations

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
    joint: Callable[..., tuple]          # joint(g, out, *args, **attrs) -> one gradient per arg
    index: int

    def __call__(self, g, out, *args, **attrs):
        return self.joint(g, out, *args, **attrs)[self.index]


def joint_rules(joint: Callable[..., tuple], arity: int) -> tuple[JointPart, ...]:
    """One `JointPart` per argument: the `grads` of a primitive with a joint backward."""
    return tuple(JointPart(joint, i) for i in range(arity))


def unbroadcast(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Sum a gradient back to the shape of an input that numpy broadcast."""
    g = np.asarray(g)
    while g.ndim > len(shape):
        g = g.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and g.shape[axis] != 1:
            g = g.sum(axis=axis, keepdims=True)
    if g.shape != tuple(shape):
        raise ValueError(f"gradient of shape {g.shape} does not reduce to input shape {shape}")
    return g
