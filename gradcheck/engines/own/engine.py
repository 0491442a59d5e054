"""Your code as an engine: its VJP in the checked dtype (and its JVP and HVP, where your
code has them), and its own rounding, measured.

The engine ignores the graph (it is the reference's, or a one-node graph of your forward).
Several outputs travel as one flat value (each output raveled, in order), as the graph's
output does; the cotangent is split back into one per output.

Your rounding is your code's business, and the reference's rounding model cannot know it (a
batch norm whose variance is `mean(x**2) - mean(x)**2` loses digits to cancellation that
the reference's two-pass variance does not). So it is measured: the same call again in the
next coarser dtype of float32's range, the difference scaled by the ratio of the two eps
(an unstable step that costs k digits costs them in both), becomes part of the tolerance of
every pair with your engine. A bug common to both runs cancels out of the measurement, and
one confined to the checked dtype's path is not in it: neither can be masked by it. And it
can be no larger than (scaled) the value itself: for float64 a few 1e-9 relative at most.
"""

from __future__ import annotations

import numpy as np

from ... import dtypes as dt
from ..base import EngineOutput, EngineSkip, UserCodeError

PROBE = {"float64": "float32", "float32": "bfloat16"}
SAMPLES = 4
JIGGLE = 4  # ulps: a smaller change of the inputs often rounds to the same numbers


class OwnEngine:
    """`code` follows the protocol of `calls`; `shapes`: its outputs' shapes. Its JVP and
    HVP are your code's `jvp` and `hvp` (EngineSkip where your kind of code has none)."""

    def __init__(self, code, shapes: list[tuple]):
        self.code, self.shapes = code, [tuple(s) for s in shapes]
        self.name, self.forward_name = code.name, code.forward_name

    def options(self) -> dict:
        """What the report says of how your code ran: its device, and TF32 where it was on."""
        options: dict[str, object] = {"device": str(getattr(self.code, "device", "cpu"))}
        if hasattr(self.code, "tf32"):
            options["tf32"] = bool(self.code.tf32)
        return options

    def vjp(self, graph, inputs, wrt, cotangent) -> EngineOutput:
        """Your VJP of the joined outputs, with its rounding measured (see the module)."""

        def run(arrays, dtype):
            return self._vjp(arrays, dt.cast(cotangent, dtype), wrt)

        return self._measured_run(run, inputs, np.asarray(cotangent).dtype.name)

    def jvp(self, graph, inputs, wrt, tangents) -> EngineOutput:
        """grads[x] = J_x u_x of the joined outputs, x alone moving: your code's forward
        mode, with its rounding measured as the VJP's."""
        yours = self._method("jvp", "forward mode")

        def run(arrays, dtype):
            along = {w: dt.cast(tangents[w], dtype) for w in wrt}
            outs, products = yours(dict(arrays), along, list(wrt))
            self._check_shapes(outs)
            return outs, {w: joined(products[w]) for w in wrt}

        return self._measured_run(run, inputs, np.asarray(tangents[wrt[0]]).dtype.name)

    def hvp(self, graph, inputs, wrt, cotangent, tangents) -> EngineOutput:
        """grads[x] = (H u)_x, H the Hessian of <cotangent, joined outputs> over all of
        `wrt`: your code's second derivative, with its rounding measured as the VJP's."""
        yours = self._method("hvp", "second derivatives")

        def run(arrays, dtype):
            along = {w: dt.cast(tangents[w], dtype) for w in wrt}
            cotangents = self._split(dt.cast(cotangent, dtype))
            outs, products = yours(dict(arrays), cotangents, along, list(wrt))
            self._check_shapes(outs)
            return outs, products

        return self._measured_run(run, inputs, np.asarray(cotangent).dtype.name)

    def _method(self, name: str, what: str):
        """Your code's method `name`; a SKIP saying so where your kind of code has none."""
        method = getattr(self.code, name, None)
        if method is None:
            raise EngineSkip(f"{self.name}: this kind of code has no {what} ({name})")
        return method

    def _vjp(self, inputs, cotangent, wrt):
        outs, grads = self.code.vjp(dict(inputs), self._split(cotangent), list(wrt))
        self._check_shapes(outs)
        return outs, grads

    def _check_shapes(self, outs) -> None:
        shapes = [tuple(np.shape(o)) for o in outs]
        if shapes != self.shapes:
            raise UserCodeError(
                f"{self.forward_name} returned outputs of shape "
                f"{_listed(shapes)}, on its first call {_listed(self.shapes)}"
            )

    def _split(self, cotangent) -> list[np.ndarray]:
        if len(self.shapes) == 1:
            return [np.asarray(cotangent).reshape(self.shapes[0])]
        ends = np.cumsum([int(np.prod(s)) for s in self.shapes])[:-1]
        return [c.reshape(s) for c, s in zip(np.split(np.ravel(cotangent), ends), self.shapes)]

    def _measured_run(self, run, inputs, dtype: str) -> EngineOutput:
        """`run(arrays, dtype) -> (outputs, products)` in the checked dtype, as an output
        that carries its rounding, measured by running it again in the probe dtype."""
        outs, products = run(dict(inputs), dtype)
        output = EngineOutput(joined(outs), products)
        probe = self._probe(dtype)
        if probe is not None:
            output.value_rounding, output.grad_rounding = self._measured(probe, run, inputs, output)
        return output

    def _probe(self, dtype: str) -> tuple[str, float] | None:
        """(dtype to measure in, factor to the checked dtype's rounding). With TF32 on, a
        float32 run is not float32's precision: it is measured against float64 itself."""
        if dtype == "float32" and getattr(self.code, "tf32", False):
            return "float64", 1.0
        probe = PROBE.get(dtype)
        return None if probe is None else (probe, dt.eps(dtype) / dt.eps(probe))

    def _measured(self, probe, run, inputs, output: EngineOutput):
        """Per element, the root-mean-square scaled difference of SAMPLES runs in the probe
        dtype, the inputs jiggled at its eps in all but the first (one run is one draw of
        each element's rounding); 0 where a run overflowed; (None, {}) when your code
        cannot run in that dtype."""
        dtype, scale = probe
        runs = []
        for k in range(SAMPLES):
            jiggled = {n: jiggle(a, dtype, k) for n, a in inputs.items()}
            try:
                with np.errstate(all="ignore"):
                    outs, grads = run(jiggled, dtype)
            except Exception:  # noqa: BLE001 -- your code in a dtype it was not written for: no measurement
                return None, {}
            runs.append(
                (
                    _difference(joined(outs), output.value, scale),
                    {w: _difference(grads.get(w), g, scale) for w, g in output.grads.items()},
                )
            )
        return (
            _rms([v for v, _ in runs]),
            {w: _rms([g[w] for _, g in runs]) for w in output.grads},
        )


def joined(outs: list) -> np.ndarray:
    """Your outputs as the graph's one output: a single one as it is, several raveled and
    concatenated in order (in float64: they may differ in dtype)."""
    if len(outs) == 1:
        return np.asarray(outs[0])
    return np.concatenate([np.ravel(np.asarray(o, np.float64)) for o in outs])


def joined_shape(shapes: list[tuple]) -> tuple:
    """The shape of `joined` outputs of these shapes."""
    if len(shapes) == 1:
        return tuple(shapes[0])
    return (sum(int(np.prod(s)) for s in shapes),)


def jiggle(array, dtype: str, k: int) -> np.ndarray:
    """`array` in `dtype`, times (1 + JIGGLE u eps), u seeded in [-1, 1] (the k-th draw;
    none for k = 0): a few units in the last place, so that each run rounds its own way."""
    if k == 0 or not dt.floating(np.asarray(array).dtype):
        return dt.cast(array, dtype)
    u = np.random.default_rng(k).uniform(-1, 1, np.shape(array))
    return dt.cast(np.asarray(array, np.float64) * (1 + JIGGLE * u * dt.eps(dtype)), dtype)


def _rms(samples: list) -> np.ndarray:
    return np.sqrt(np.mean(np.square(samples), axis=0))


def _difference(probe, checked, scale: float) -> np.ndarray:
    checked = np.asarray(checked, np.float64)
    if probe is None or np.shape(probe) != checked.shape:
        return np.zeros(checked.shape)
    with np.errstate(all="ignore"):
        d = scale * np.abs(np.asarray(probe, np.float64) - checked)
    return np.where(np.isfinite(d), d, 0.0)


def _listed(shapes) -> str:
    return ", ".join(str(list(s)) for s in shapes)
