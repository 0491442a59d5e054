"""Checks of a compiled case against its use of the data, at validate time: integer data in
range for what it indexes (labels in 0..C-1, indices in range for their axis), and an output
that depends on something differentiated. Each problem names the step and the value."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import reference_impls

from ..ir.graph import INT, Graph
from ..ir.ops import OPS
from .case import make_array
from .models import CaseModel, RandomInput, ValueInput

# fail(message, step) -> the error to raise, naming the file, the case and the step's line
Fail = Callable[[str, str], Exception]


def check_uses(model: CaseModel, graph: Graph, wrt: list[str], fail: Fail) -> None:
    if graph.output not in graph.dependents(wrt):
        raise fail(
            f"the output does not depend on any differentiated input "
            f"(wrt: {', '.join(wrt)}): there is no gradient to check",
            graph.output,
        )
    data = _IntegerData(model, graph)
    for node in graph.nodes:
        spec = OPS[node.op]
        if spec.int_bound is not None:
            bound = spec.int_bound(node.attrs, *(graph.shape_of(a) for a in node.args))
            for i in spec.int_args:
                _check_range(node, node.args[i], data.range_of(node.args[i]), bound, fail)
        data.passed(node)


def _check_range(node, name: str, value_range, bound: int, fail: Fail) -> None:
    low, high = value_range
    if low is None or (low >= 0 and high < bound):
        return
    bad = low if low < 0 else high
    role = "labels" if node.op == "softmax_cross_entropy" else "indices"
    what = repr(name) if "#" not in name else f"computed in step {node.step!r}"
    raise fail(f"{node.op}: {role} {what} must lie in 0..{bound - 1}, got {bad}", node.step)


class _IntegerData:
    """The range of the integer data an op uses: an input's from its spec; data computed
    from the inputs (`expand_dims(y, 1)`, `y - 1`) from its values, the integer nodes run
    forward in order, only when asked, and only as far as the checks have passed (an index
    they use is already known to be in range)."""

    def __init__(self, model: CaseModel, graph: Graph):
        self.model, self.graph = model, graph
        self.pending: list = []  # integer nodes passed, not yet run forward
        self.env: dict[str, np.ndarray] | None = None

    def passed(self, node) -> None:
        if node.kind == INT:
            self.pending.append(node)

    def range_of(self, name: str) -> tuple[int | None, int | None]:
        if name in self.model.inputs:
            return _value_range(self.model.inputs[name])
        values = self._values()[name]
        return (int(values.min()), int(values.max())) if values.size else (None, None)

    def _values(self) -> dict:
        if self.env is None:
            self.env = {
                k: make_array(self.model.name, k, spec)
                for k, spec in self.model.inputs.items()
                if self.graph.inputs[k].kind == INT
            }
            self.env.update({k: np.asarray(v, np.float64) for k, v in self.graph.consts.items()})
        reference_impls.forward(self.graph, reference_impls.OPS, self.env, self.pending)
        self.pending = []
        return self.env


def _value_range(spec) -> tuple[int | None, int | None]:
    """The smallest and largest value integer data can hold (None, None when empty)."""
    if isinstance(spec, RandomInput):
        return int(spec.low), int(spec.high) - 1  # randint draws from [low, high)
    values = np.asarray(spec.value if isinstance(spec, ValueInput) else spec, dtype=np.float64)
    if values.size == 0:
        return None, None
    return int(values.min()), int(values.max())
