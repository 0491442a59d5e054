"""Your numpy code: a layer's forward and backward (CS231n's `forward -> (out, cache)`,
`backward(dout, cache)`), with one output or several, or a function that returns a value
and its gradients together (`softmax_loss(x, y) -> (loss, dx)`). A layer may come with its
forward mode too (`ForwardModeLayerCode`); numpy code has no second derivatives.

Your functions are called on copies, so that a backward that writes into `dout` or into its
cache (legal, and common) changes nothing any other engine sees.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterable, Mapping

import numpy as np

from ..base import UserCodeError
from .calls import as_output, calling, name_of, named_gradients


def _copies(arrays: Iterable) -> list[np.ndarray]:
    return [np.array(a, copy=True) for a in arrays]


class LayerCode:
    """`forward(*arrays, **params) -> out | (out, cache)`, or with `outputs=k`
    `(out_1, ..., out_k, cache)` / `(out_1, ..., out_k)`; `backward(dout_1, ..., dout_k,
    cache)` when there is a cache, else `backward(dout_1, ..., dout_k, *arrays, **params)`."""

    limits = "numpy code has forward mode where check(..., jvp=...) gives it, and no second order"

    def __init__(
        self,
        forward: Callable,
        backward: Callable,
        floating: list[str],
        outputs: int = 1,
        params: Mapping | None = None,
        name: str | None = None,
    ):
        self.forward, self.backward, self.floating = forward, backward, list(floating)
        self.count, self.params = outputs, dict(params or {})
        self.name, self.forward_name = name or name_of(backward), name_of(forward)

    def outputs(self, arrays: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self._forward(arrays)[0]

    def vjp(self, arrays, cotangents, wrt):
        outs, cache = self._forward(arrays)
        outs = [np.array(o, copy=True) for o in outs]  # before a backward writes into its cache
        douts = _copies(cotangents)
        with calling(self.name):
            if cache is None:
                grads = self.backward(*douts, *_copies(arrays.values()), **self.params)
            else:
                grads = self.backward(*douts, cache)
        return outs, named_gradients(grads, list(arrays), wrt, self.floating, self.name)

    def _forward(self, arrays: Mapping[str, np.ndarray]) -> tuple[list[np.ndarray], object]:
        with calling(self.forward_name):
            result = self.forward(*_copies(arrays.values()), **self.params)
        outs, cache = _split(result, self.count, self.forward_name)
        return [as_output(o, self.forward_name, i) for i, o in enumerate(outs)], cache


class ForwardModeLayerCode(LayerCode):
    """A `LayerCode` with your forward mode: `jvp(tangents, *arrays, **params)` returns the
    output's tangent (with `outputs=k`, a tuple of k), where `tangents` holds one tangent
    per floating input by name, zeros but for the input moving."""

    def __init__(self, forward: Callable, backward: Callable, jvp: Callable, *args, **kwargs):
        super().__init__(forward, backward, *args, **kwargs)
        self.forward_mode = jvp

    def jvp(self, arrays, tangents, wrt):
        """Your outputs, and per input of `wrt` your `jvp` with that input alone moving."""
        outs = [np.array(o, copy=True) for o in self._forward(arrays)[0]]
        still = {k: np.zeros_like(arrays[k]) for k in self.floating}
        return outs, {w: self._tangents(arrays, {**still, w: tangents[w]}) for w in wrt}

    def _tangents(self, arrays, tangents: dict) -> list[np.ndarray]:
        who = name_of(self.forward_mode)
        copied = dict(zip(tangents, _copies(tangents.values())))
        with calling(who):
            result = self.forward_mode(copied, *_copies(arrays.values()), **self.params)
        return _output_tangents(result, self.count, who)


def _output_tangents(result, count: int, who: str) -> list[np.ndarray]:
    """The output tangents your `jvp` returned: one array, or with several outputs a tuple
    of one per output."""
    if count == 1:
        result = [result]
    elif not (isinstance(result, (tuple, list)) and len(result) == count):
        raise UserCodeError(
            f"{who} returned {type(result).__name__}; expected a tuple of {count} output tangents"
        )
    return [as_output(t, who, i) for i, t in enumerate(result)]


def _split(result, count: int, who: str) -> tuple[tuple, object]:
    """(outputs, cache) from what a forward returned; cache None when it returned none."""
    wanted = (
        "out or (out, cache)" if count == 1 else f"({count} outputs, cache) or ({count} outputs)"
    )
    if result is None:
        raise UserCodeError(f"{who} returned None; expected {wanted} (is it finished?)")
    if not isinstance(result, tuple):
        if count == 1:
            return (result,), None
        raise UserCodeError(f"{who} returned one {type(result).__name__}; expected {wanted}")
    if len(result) == count + 1:
        return result[:count], result[count]
    if len(result) == count and count > 1:
        return result, None
    raise UserCodeError(f"{who} returned a tuple of {len(result)}; expected {wanted}")


class ValueAndGradCode:
    """`fn(*arrays, **params) -> (value, grads)` or `(value, g1, g2, ...)`, value a scalar
    (a loss): its gradients are those of the value itself, scaled by the cotangent."""

    limits = "a function returning a value and its gradients has no forward mode or second order"

    def __init__(
        self,
        fn: Callable,
        floating: list[str],
        params: Mapping | None = None,
        name: str | None = None,
    ):
        self.fn, self.floating, self.params = fn, list(floating), dict(params or {})
        self.name = self.forward_name = name or name_of(fn)

    def outputs(self, arrays) -> list[np.ndarray]:
        return [self._call(arrays)[0]]

    def vjp(self, arrays, cotangents, wrt):
        value, grads = self._call(arrays)
        grads = named_gradients(grads, list(arrays), wrt, self.floating, self.name)
        scale = np.asarray(cotangents[0])
        return [value], {k: g * scale for k, g in grads.items()}

    def _call(self, arrays):
        with calling(self.name):
            result = self.fn(*_copies(arrays.values()), **self.params)
        if not isinstance(result, tuple) or len(result) < 2:
            raise UserCodeError(
                f"{self.name} returned {type(result).__name__}; expected (value, gradients)"
            )
        value = as_output(result[0], self.name, 0)
        grads: tuple | list | Mapping = result[1:]
        if np.ndim(value) != 0:
            raise UserCodeError(
                f"{self.name} returned a value of shape "
                f"{list(np.shape(value))}; a value-and-gradient function "
                "returns a scalar (a loss)"
            )
        if len(grads) == 1 and isinstance(grads[0], (tuple, list, Mapping)):
            grads = grads[0]
        return np.array(value, copy=True), copy.copy(grads)
