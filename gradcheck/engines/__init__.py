"""The engines: built-in ones by name, and any `module:attr` a user names."""
from __future__ import annotations

import importlib

from .base import Engine, EngineOutput, EngineSkip, Settings, as_output, call_vjp
from .fd import FiniteDifferences
from .jax_engine import JaxEngine
from .numpy_engine import NumpyEngine
from .torch_engine import TorchEngine

BUILTIN = {"numpy": NumpyEngine, "fd": FiniteDifferences, "torch": TorchEngine, "jax": JaxEngine}
DEFAULT_ENGINES = tuple(BUILTIN)


def make_engines(names=DEFAULT_ENGINES, custom=()) -> list:
    """Built-in engines by name, then custom ones given as `package.module:attr` (an
    engine object, or a class / factory called with no arguments)."""
    engines = [BUILTIN[n]() for n in names]
    return engines + [load_engine(spec) for spec in custom]


def load_engine(spec: str):
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise ValueError(f"--engine wants module:attr, got {spec!r}")
    target = getattr(importlib.import_module(module_name), attr)
    engine = target
    if isinstance(target, type) or not hasattr(target, "vjp"):
        if not callable(target):
            raise ValueError(f"{spec} is not an engine: it needs a `name` and a `vjp` method")
        try:
            engine = target()
        except Exception as e:      # a function that is not a factory, or a factory that fails
            raise ValueError(f"{spec}() raised {type(e).__name__}: {e}") from None
    if not isinstance(getattr(engine, "name", None), str) or not callable(getattr(engine, "vjp", None)):
        raise ValueError(f"{spec} is not an engine: it needs a `name` and a `vjp` method")
    return engine


__all__ = ["Engine", "EngineOutput", "EngineSkip", "Settings", "as_output", "call_vjp", "make_engines", "load_engine",
           "BUILTIN", "DEFAULT_ENGINES", "NumpyEngine", "FiniteDifferences", "TorchEngine",
           "JaxEngine"]
