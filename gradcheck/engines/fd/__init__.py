"""Finite differences: `differentiate(f, x)` for any callable, and the `fd` engine over a
case's graph, built on it."""

from .engine import FiniteDifferences
from .evaluate import MEMORY_BUDGET, accepts_stacks
from .stencil import Derivative, differentiate, differentiate_along

__all__ = [
    "FiniteDifferences",
    "differentiate",
    "differentiate_along",
    "Derivative",
    "accepts_stacks",
    "MEMORY_BUDGET",
]
