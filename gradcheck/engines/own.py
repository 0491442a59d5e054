"""Your own code as an engine: a layer's forward and backward, or a function that returns a
value and its gradients together (CS231n's `softmax_loss(x, y) -> (loss, dx)`).

The engine ignores the graph (it is the reference's, or a one-node graph of your forward)
and calls your functions on copies, so that a backward that writes into `dout` or into its
cache (legal, and common) changes nothing any other engine sees.
"""
from __future__ import annotations

import copy
from typing import Callable, Mapping, Sequence

import numpy as np

from .base import EngineOutput


def call_forward(forward: Callable, arrays: Sequence[np.ndarray]):
    """`forward(*arrays)` on copies -> (out, cache); cache is None for a plain `out`."""
    result = forward(*(np.array(a, copy=True) for a in arrays))
    if isinstance(result, tuple) and len(result) == 2:
        return result
    if isinstance(result, tuple):
        raise ValueError(f"{_name(forward)} returned a tuple of {len(result)}; expected "
                         "`out` or `(out, cache)`")
    return result, None


def forward_value(forward: Callable) -> Callable:
    """`forward` as a function of the arrays alone, returning only `out` (for `fd`)."""
    def value(*arrays):
        return np.asarray(call_forward(forward, arrays)[0])
    value.__name__ = _name(forward)
    return value


def named_gradients(grads, names: list[str], wrt: list[str], floating: list[str],
                    who: str) -> dict[str, np.ndarray]:
    """The gradients a user's function returned, by input name: a dict, or a tuple with
    one entry per differentiated input, per floating input, or per input, in order."""
    if isinstance(grads, Mapping):
        return {k: np.asarray(v) for k, v in grads.items() if k in wrt}
    if not isinstance(grads, (tuple, list)):
        grads = (grads,)
    for order in (wrt, floating, names):
        if len(grads) == len(order):
            return {k: np.asarray(g) for k, g in zip(order, grads) if k in wrt}
    raise ValueError(f"{who} returned {len(grads)} gradient(s); expected one per "
                     f"differentiated input ({', '.join(wrt)}), or a dict of them")


class FunctionEngine:
    """`forward(*arrays) -> out | (out, cache)`; `backward(dout, cache)` when there is a
    cache, else `backward(dout, *arrays)`; gradients as `named_gradients` reads them."""

    def __init__(self, forward: Callable, backward: Callable, names: list[str],
                 floating: list[str], name: str | None = None):
        self.forward, self.backward = forward, backward
        self.names, self.floating = list(names), list(floating)
        self.name = name or _name(backward)

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        arrays = [inputs[k] for k in self.names]
        out, cache = call_forward(self.forward, arrays)
        value = np.array(out, copy=True)        # before a backward can write into its cache
        dout = np.array(cotangent, copy=True)
        if cache is None:
            grads = self.backward(dout, *(np.array(a, copy=True) for a in arrays))
        else:
            grads = self.backward(dout, cache)
        return EngineOutput(value, named_gradients(grads, self.names, wrt, self.floating,
                                                   _name(self.backward)))


class ValueAndGradEngine:
    """`fn(*arrays) -> (value, grads)` or `(value, g1, g2, ...)`, value a scalar (a loss):
    its gradients are those of the value itself, so the cotangent is 1."""

    def __init__(self, fn: Callable, names: list[str], floating: list[str],
                 name: str | None = None):
        self.fn, self.names, self.floating = fn, list(names), list(floating)
        self.name = name or _name(fn)

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        value, grads = split_value_and_grads(self.fn, [inputs[k] for k in self.names])
        if np.ndim(value) != 0:
            raise ValueError(f"{_name(self.fn)} returned a value of shape "
                             f"{list(np.shape(value))}; a value-and-gradient function "
                             "returns a scalar (a loss)")
        scale = np.asarray(cotangent)
        grads = named_gradients(grads, self.names, wrt, self.floating, _name(self.fn))
        return EngineOutput(np.asarray(value), {k: g * scale for k, g in grads.items()})


def split_value_and_grads(fn: Callable, arrays: Sequence[np.ndarray]):
    result = fn(*(np.array(a, copy=True) for a in arrays))
    if not isinstance(result, tuple) or len(result) < 2:
        raise ValueError(f"{_name(fn)} must return (value, gradients)")
    value, grads = result[0], result[1:]
    if len(grads) == 1 and isinstance(grads[0], (tuple, list, Mapping)):
        grads = grads[0]
    return np.array(value, copy=True), copy.copy(grads)


def loss_value(fn: Callable) -> Callable:
    """A value-and-gradient function as a function of the arrays returning the value."""
    def value(*arrays):
        return split_value_and_grads(fn, arrays)[0]
    value.__name__ = _name(fn)
    return value


def _name(fn) -> str:
    return getattr(fn, "__name__", None) or type(fn).__name__
