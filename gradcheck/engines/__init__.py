"""The engines: built-in ones by name, and any `module:attr` a user names."""

from __future__ import annotations

import importlib
import inspect

from .base import Engine, EngineOutput, EngineSkip, Settings, as_output, call_vjp
from .fd import FiniteDifferences
from .jax_engine import JaxEngine
from .numpy_engine import NumpyEngine
from .register import add_cwd_to_path, load_plugins, register_op, unregister_op
from .torch_engine import TorchEngine

BUILTIN = {"numpy": NumpyEngine, "fd": FiniteDifferences, "torch": TorchEngine, "jax": JaxEngine}
DEFAULT_ENGINES = tuple(BUILTIN)


def make_engines(names=DEFAULT_ENGINES, custom=()) -> list:
    """Built-in engines by name, then custom ones given as `package.module:attr` (an
    engine object, a class / factory called with no arguments, or a plain function
    `vjp(graph, inputs, wrt, cotangent)`), found from the current folder too."""
    engines = [BUILTIN[n]() for n in names]
    return engines + [load_engine(spec) for spec in custom]


def load_engine(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--engine wants module:attr, got {spec!r}")
    add_cwd_to_path()
    target = getattr(importlib.import_module(module_name), attr)
    engine = target
    if _is_vjp_function(target):
        engine = VjpFunction(target)
    elif isinstance(target, type) or not hasattr(target, "vjp"):
        if not callable(target):
            raise ValueError(f"{spec} is not an engine: it needs a `name` and a `vjp` method")
        try:
            engine = target()
        except Exception as e:  # noqa: BLE001 -- a function that is not a factory, or a factory that fails
            raise ValueError(f"{spec}() raised {type(e).__name__}: {e}") from None
    if not isinstance(getattr(engine, "name", None), str) or not callable(
        getattr(engine, "vjp", None)
    ):
        raise ValueError(f"{spec} is not an engine: it needs a `name` and a `vjp` method")
    return engine


def _is_vjp_function(target) -> bool:
    """A plain function `vjp(graph, inputs, wrt, cotangent)` (a factory takes no arguments)."""
    if not inspect.isfunction(target):
        return False
    return len(inspect.signature(target).parameters) == 4


class VjpFunction:
    """A plain function `vjp(graph, inputs, wrt, cotangent)` as an engine named after it."""

    def __init__(self, function):
        self.function, self.name = function, function.__name__

    def vjp(self, graph, inputs, wrt, cotangent):
        return self.function(graph, inputs, wrt, cotangent)


__all__ = [
    "VjpFunction",
    "register_op",
    "unregister_op",
    "load_plugins",
    "Engine",
    "EngineOutput",
    "EngineSkip",
    "Settings",
    "as_output",
    "call_vjp",
    "make_engines",
    "load_engine",
    "BUILTIN",
    "DEFAULT_ENGINES",
    "NumpyEngine",
    "FiniteDifferences",
    "TorchEngine",
    "JaxEngine",
]
