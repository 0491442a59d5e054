"""Register a new op from Python, and load the modules that do (plugins).

An op lives in the same places as a built-in one: the registry (`gradcheck.ir.ops.OPS`),
the numpy table (`reference_impls.OPS`), and, when you give them, the torch and jax tables
(`gradcheck.engines.torch_ops.OPS`, `jax_ops.OPS`). An engine without a form of the op
SKIPs the cases that use it, naming the op.

Plugins are modules imported for their `register_op` calls: `gradcheck run --plugin
my_ops`, a `conftest.py` that imports them under pytest, the `GRADCHECK_PLUGINS`
environment variable (comma-separated module names), or, for an installed package, an
entry point in the group `gradcheck.plugins`. `import gradcheck` loads the last two, so
that the worker processes that run cases with a time limit know the ops too.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import re
import sys
from collections.abc import Callable, Sequence

import reference_impls
from reference_impls import Primitive

from ..ir.ops import OPS as REGISTRY
from ..ir.ops import OpSpec, broadcast

PLUGINS_VARIABLE = "GRADCHECK_PLUGINS"
ENTRY_POINT_GROUP = "gradcheck.plugins"
IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")  # what the expression parser calls
_FROM_PYTHON: set[str] = set()  # ops registered here, which may be registered again


def register_op(
    name: str,
    forward: Callable,
    grads: Sequence[Callable | None],
    *,
    shape: Callable | None = None,
    attrs: dict | None = None,
    int_args: Sequence[int] = (),
    torch: Callable | None = None,
    jax: Callable | None = None,
    doc: str = "",
) -> OpSpec:
    """Add op `name`: `forward(*args, **attrs)` in numpy, one gradient rule per argument
    (`rule(g, out, *args, **attrs)`, `None` for integer data), a shape rule
    `shape(*input_shapes, **attrs) -> output shape` (default: elementwise, broadcasting
    two or more arguments), and optional torch / jax forms with the same signature."""
    _check_name(name)
    arity = len(grads)
    spec = OpSpec(
        name=name,
        arity=arity,
        shape=shape or _elementwise_shape,
        attrs=dict(attrs or {}),
        int_args=tuple(int_args),
        doc=doc,
    )
    REGISTRY[name] = spec
    reference_impls.OPS[name] = Primitive(forward, tuple(grads))
    for framework, form in (("torch", torch), ("jax", jax)):
        table = _framework_table(framework)
        if table is not None and form is not None:
            table[name] = form
    _FROM_PYTHON.add(name)
    return spec


def unregister_op(name: str) -> None:
    """Remove an op that `register_op` added (built-in ops stay)."""
    if name not in _FROM_PYTHON:
        raise ValueError(f"op {name!r} was not registered from Python")
    loaded = [sys.modules.get(f"gradcheck.engines.{f}_ops") for f in ("torch", "jax")]
    tables: list[dict] = [REGISTRY, reference_impls.OPS, *(m.OPS for m in loaded if m)]
    for table in tables:
        table.pop(name, None)
    _FROM_PYTHON.discard(name)


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not IDENTIFIER.match(name):
        raise ValueError(f"op name {name!r} is not an identifier (letters, digits, _)")
    if name in REGISTRY and name not in _FROM_PYTHON:
        raise ValueError(f"op {name!r} is built in; choose another name")


def _elementwise_shape(*shapes, **attrs) -> tuple[int, ...]:
    """The arguments' shape, broadcast when there are several; attributes do not matter."""
    out = shapes[0]
    for s in shapes[1:]:
        out = broadcast(out, s)
    return out


def _framework_table(framework: str) -> dict | None:
    """The torch or jax op table, or None when the framework cannot be imported (its
    engine then skips every case anyway, saying why)."""
    try:
        return importlib.import_module(f"gradcheck.engines.{framework}_ops").OPS
    except Exception:  # noqa: BLE001 -- a missing or broken framework install
        return None


def load_plugins(modules: Sequence[str]) -> None:
    """Import each module (from the current folder too, as `python -m` does) and remember
    it in GRADCHECK_PLUGINS for worker processes."""
    if not modules:
        return
    add_cwd_to_path()
    for module in modules:
        importlib.import_module(module)
    known = [m for m in os.environ.get(PLUGINS_VARIABLE, "").split(",") if m]
    os.environ[PLUGINS_VARIABLE] = ",".join(dict.fromkeys(known + list(modules)))


def load_installed_plugins() -> None:
    """The modules that installed packages name under the `gradcheck.plugins` entry points."""
    for entry in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry.load()
        except Exception as e:
            raise ImportError(
                f"entry point {entry.name} = {entry.value} of group "
                f"{ENTRY_POINT_GROUP}: {type(e).__name__}: {e}"
            ) from e


def load_env_plugins() -> None:
    modules = [m.strip() for m in os.environ.get(PLUGINS_VARIABLE, "").split(",") if m.strip()]
    try:
        load_plugins(modules)
    except Exception as e:
        raise ImportError(
            f"{PLUGINS_VARIABLE}={os.environ[PLUGINS_VARIABLE]!r}: {type(e).__name__}: {e}"
        ) from e


def add_cwd_to_path() -> None:
    """Modules in the current folder import without PYTHONPATH, as under `python -m`."""
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
