"""What one op is to the numpy reference: a forward and one gradient rule per input."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np

# A gradient rule: rule(g, out, *args, **attrs) -> gradient for one argument, where g is
# the upstream gradient (shape of out). `None` marks an argument that is never
# differentiated (integer labels).
GradRule = Optional[Callable[..., np.ndarray]]


@dataclass(frozen=True)
class Primitive:
    forward: Callable[..., np.ndarray]
    grads: tuple[GradRule, ...]


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
