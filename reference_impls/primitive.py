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
