"""The engine protocol: anything with a `name` and a `vjp` method.

`vjp(graph, inputs, wrt, cotangent)` takes the compiled graph, the input arrays (floating
inputs already in the case's dtype, integer data as int64), the names to differentiate
and the cotangent of the output (in the case's dtype), and returns the output value and
one gradient per name in `wrt` -- as an `EngineOutput`, or as a plain `(value, grads)`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    name: str

    def vjp(self, graph, inputs: Mapping[str, np.ndarray], wrt: list[str],
            cotangent: np.ndarray) -> Any: ...


@dataclass
class EngineOutput:
    value: np.ndarray
    grads: dict[str, np.ndarray]
    # Only the finite-difference oracle fills these, per input and element:
    grad_err: dict[str, np.ndarray] = field(default_factory=dict)   # error estimate
    checked: dict[str, np.ndarray] = field(default_factory=dict)    # elements computed
    kinks: dict[str, np.ndarray] = field(default_factory=dict)      # non-differentiable points
    kink_distance: dict[str, np.ndarray] = field(default_factory=dict)  # how far, where flagged
    coverage: dict[str, str] = field(default_factory=dict)          # "full" or "directional"
    directions: dict[str, "Directions"] = field(default_factory=dict)   # directional checks


@dataclass
class Directions:
    """Directional checks of one input: k seeded directions and the estimate of the
    directional derivative <grad, v> along each, which any engine's gradient must match."""
    vectors: np.ndarray         # (k, *input shape)
    slopes: np.ndarray          # (k,)
    err: np.ndarray             # (k,) estimated absolute error of each slope
    kinks: np.ndarray           # (k,) bool: a kink along that direction


class EngineSkip(Exception):
    """The engine cannot run this case on purpose: framework missing, op unsupported."""


def as_output(result: Any) -> EngineOutput:
    if isinstance(result, EngineOutput):
        return result
    value, grads = result
    return EngineOutput(np.asarray(value), {k: np.asarray(v) for k, v in grads.items()})


def require(module: str):
    """Import a framework, or skip the engine with the reason."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # an ImportError, or a broken install raising anything else
        raise EngineSkip(f"{module} is not importable: {e}") from None


def require_ops(engine_name: str, graph, table: Mapping) -> None:
    missing = sorted(graph.ops() - set(table))
    if missing:
        raise EngineSkip(f"{engine_name} does not support op(s): {', '.join(missing)}")


def constants(graph, dtype) -> dict[str, np.ndarray]:
    """The graph's literal numbers as 0-d arrays of the case's dtype."""
    return {name: np.asarray(value, dtype=dtype) for name, value in graph.consts.items()}
