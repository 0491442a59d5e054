"""Calling your code: every failure becomes a `UserCodeError` whose message names the
function, what it raised or returned, and the line of your code where it happened.

The one protocol every kind of code (numpy functions, a torch function or module, a jax
function) follows, so that one engine and one harness serve them all:

    name           what a wrong gradient is blamed on (the engine's name)
    forward_name   what a wrong forward value is blamed on
    outputs(arrays) -> list of arrays            the forward alone (fd differentiates it)
    vjp(arrays, cotangents, wrt) -> (outputs, {name: gradient})

and, where your code has forward mode or second derivatives, either or both of

    jvp(arrays, tangents, wrt) -> (outputs, {name: [J_name u_name, one per output]})
    hvp(arrays, cotangents, tangents, wrt) -> (outputs, {name: (H u)_name})

`arrays` are numpy arrays in the checked dtype, by input name, in your argument order;
there is one cotangent per output, and one tangent per name in `wrt`. `jvp` moves each
name of `wrt` alone, along its tangent; `hvp`'s H is the Hessian of <cotangents, outputs>
over all of `wrt`, and u all the tangents at once. What comes back is numpy, in any
floating dtype. A kind of code without `jvp` (or `hvp`) cannot be asked for that product.
"""

from __future__ import annotations

import contextlib
import inspect
import os
import sys
import traceback
from collections.abc import Callable, Mapping

import numpy as np

from ..base import UserCodeError

# what a framework's refusal of forward mode means, said of your code
NO_FORWARD_RULE = "has no forward-mode rule (jvp)"

# frames in these folders are not "your code": the line named is the last one outside them
_LIBRARY_DIRS = tuple(
    {os.path.dirname(os.path.dirname(os.path.dirname(__file__))), os.path.dirname(os.__file__)}
    | {p for p in sys.path if "site-packages" in p}
)


def name_of(fn) -> str:
    """A function's name: `__name__`, a partial's function, a module's class, a Function's."""
    fn = getattr(fn, "func", fn)  # functools.partial
    owner = getattr(fn, "__self__", None)  # MyFunction.apply: name it MyFunction
    if isinstance(owner, type):
        return owner.__name__
    return getattr(fn, "__name__", None) or type(fn).__name__


@contextlib.contextmanager
def calling(what: str, meaning: Callable[[Exception], str | None] | None = None, defined=None):
    """Turns whatever `what` raises into one UserCodeError naming it and the line.

    meaning(error): what an error means where the framework's own message does not say it
    of your code ("has no forward-mode rule (jvp)"), said in place of "raised <type>";
    None where it means nothing more. defined: a function of yours whose definition is the
    line named where the traceback holds none of your code (torch's autograd engine calls
    your backward from C++, and its errors surface at the call of `torch.autograd.grad`)."""
    try:
        yield
    except UserCodeError:
        raise
    except Exception as e:
        known = meaning(e) if meaning is not None else None
        said = known or f"raised {type(e).__name__}"
        raise UserCodeError(f"{what} {said}: {e}{_where(e, defined)}") from e


def _where(error: BaseException, defined=None) -> str:
    frames = traceback.extract_tb(error.__traceback__)
    mine = [(f.filename, f.lineno) for f in frames if not f.filename.startswith(_LIBRARY_DIRS)]
    last = [(f.filename, f.lineno) for f in frames[-1:]]
    place = (mine or _definition(defined) or last or [None])[-1]
    return "" if place is None else f" (at {os.path.basename(place[0])}:{place[1]})"


def _definition(fn) -> list[tuple[str, int]]:
    """Where `fn` (under any decorators) is defined: [(file, line)]; [] if unknown, or if
    it is no code of yours (a `custom_vjp` of `jnp.tanh` itself)."""
    code = getattr(inspect.unwrap(fn), "__code__", None) if fn is not None else None
    if code is None or code.co_filename.startswith(_LIBRARY_DIRS):
        return []
    return [(code.co_filename, code.co_firstlineno)]


def as_output(x, what: str, index: int) -> np.ndarray:
    """One output of your forward as an array; None or a non-number is your code's error."""
    if x is None:
        raise UserCodeError(
            f"{what} returned None as output {index + 1}: it returned no value (is it finished?)"
        )
    array = np.asarray(x)
    if array.dtype.kind not in "fiu" and array.dtype.name != "bfloat16":
        raise UserCodeError(
            f"{what} returned a {type(x).__name__} as output {index + 1}; "
            "expected an array of numbers"
        )
    return array


def named_gradients(
    grads, names: list[str], wrt: list[str], floating: list[str], who: str
) -> dict[str, np.ndarray]:
    """The gradients your function returned, by input name: a dict, or a tuple with one
    entry per differentiated input, per floating input, or per input, in order."""
    if grads is None:
        raise UserCodeError(
            f"{who} returned None; expected one gradient per differentiated "
            f"input ({', '.join(wrt)}), or a dict of them"
        )
    if isinstance(grads, Mapping):
        return {k: _gradient(v, who, k) for k, v in grads.items() if k in wrt}
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    for order in (wrt, floating, names):
        if len(grads) == len(order):
            return {k: _gradient(g, who, k) for k, g in zip(order, grads) if k in wrt}
    raise UserCodeError(
        f"{who} returned {len(grads)} gradient(s); expected one per "
        f"differentiated input ({', '.join(wrt)}), or a dict of them"
    )


def _gradient(g, who: str, name: str) -> np.ndarray:
    if g is None:
        raise UserCodeError(f"{who} returned None as the gradient of {name!r}")
    return np.asarray(g)
