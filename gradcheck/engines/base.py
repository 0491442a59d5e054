"""The engine protocol: anything with a `name` and a `vjp` method.

`vjp(graph, inputs, wrt, cotangent)` takes the compiled graph, the input arrays (floating
inputs already in the case's dtype, integer data as int64), the names to differentiate
and the cotangent of the output (in the case's dtype), and returns the output value and
one gradient per name in `wrt` -- as an `EngineOutput`, or as a plain `(value, grads)`.
An engine whose `vjp` also takes a keyword `settings` receives the case's `Settings`
(dtype, sample sizes): per-case choices travel as arguments, never as engine attributes.
An engine's own options (device, dtype policy) are arguments of its constructor.
Forward mode and second order are two more optional methods, each returning an
`EngineOutput` whose `value` is the output and whose `grads` hold one product per name:
- `jvp(graph, inputs, wrt, tangents)`: grads[x] = J_x u_x, the output's derivative along
  `tangents[x]` (x alone moving; an array of the output's shape), for each x in `wrt`;
- `hvp(graph, inputs, wrt, cotangent, tangents)`: grads[x] = (H u)_x, where H is the Hessian
  of the scalar <cotangent, output> over all of `wrt` together and u is `tangents` (all
  moving at once): the derivative of the gradient of x along u (x's shape).
A numerical estimate (fd) fills `grad_err` (and `checked`, `kinks`) for them as for a VJP.
An engine without the method is not asked for that product.
An engine may also have a `prepare()` method: a worker process calls it before its first
case, while the parent still loads the cases (torch and jax import their frameworks there).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Engine(Protocol):
    name: str

    def vjp(
        self, graph, inputs: Mapping[str, np.ndarray], wrt: list[str], cotangent: np.ndarray
    ) -> Any: ...


@dataclass(frozen=True)
class Settings:
    """What one case asks of the engines, in one dtype."""

    dtype: str
    fd_max_elements: int | None = None  # a numerical oracle's per-input full-coverage limit
    fd_coverage: str | None = None  # "auto", "full" or "directional"


@dataclass
class EngineOutput:
    value: np.ndarray
    grads: dict[str, np.ndarray]
    # A numerical estimate (finite differences) fills these, per input and element; their
    # presence, not the engine's name, makes the comparator judge it as an estimate:
    grad_err: dict[str, np.ndarray] = field(default_factory=dict)  # error estimate
    checked: dict[str, np.ndarray] = field(default_factory=dict)  # elements computed
    kinks: dict[str, np.ndarray] = field(default_factory=dict)  # non-differentiable points
    kink_distance: dict[str, np.ndarray] = field(default_factory=dict)  # how far, where flagged
    coverage: dict[str, str] = field(default_factory=dict)  # "full" or "directional"
    directions: dict[str, Directions] = field(default_factory=dict)  # directional checks
    # An engine that measures its own rounding (your code, run again in another precision)
    # says per element how far from exact its value and each gradient may be:
    value_rounding: np.ndarray | None = None
    grad_rounding: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def numerical(self) -> bool:
        return bool(self.grad_err)


@dataclass
class Directions:
    """Directional checks of one input: k seeded directions and the estimate of the
    directional derivative <grad, v> along each, which any engine's gradient must match."""

    vectors: np.ndarray  # (k, *input shape)
    slopes: np.ndarray  # (k,)
    err: np.ndarray  # (k,) estimated absolute error of each slope
    kinks: np.ndarray  # (k,) bool: a kink along that direction


def call_vjp(engine, graph, inputs, wrt, cotangent, settings: Settings) -> EngineOutput:
    """`engine.vjp`, handing over `settings` where the engine takes them."""
    if "settings" in inspect.signature(engine.vjp).parameters:
        return as_output(engine.vjp(graph, inputs, wrt, cotangent, settings=settings))
    return as_output(engine.vjp(graph, inputs, wrt, cotangent))


class EngineSkip(Exception):
    """The engine cannot run this case on purpose: framework missing, op unsupported."""


class UserCodeError(Exception):
    """Your code raised, or returned what cannot be a value or a gradient: the message names
    the function, what happened and where, and is the whole of the ERROR's text."""


def as_output(result: Any) -> EngineOutput:
    if isinstance(result, EngineOutput):
        return result
    value, grads = result
    return EngineOutput(np.asarray(value), {k: np.asarray(v) for k, v in grads.items()})


def require(module: str):
    """Import a framework, or skip the engine with the reason."""
    try:
        return importlib.import_module(module)
    except Exception as e:  # noqa: BLE001 -- an ImportError, or a broken install raising anything else
        raise EngineSkip(f"{module} is not importable: {e}") from None


def require_ops(engine_name: str, graph, table: Mapping) -> None:
    missing = sorted(graph.ops() - set(table))
    if missing:
        raise EngineSkip(f"{engine_name} does not support op(s): {', '.join(missing)}")


def constants(graph, dtype) -> dict[str, np.ndarray]:
    """The graph's literal numbers as 0-d arrays of the case's dtype."""
    return {name: np.asarray(value, dtype=dtype) for name, value in graph.consts.items()}
