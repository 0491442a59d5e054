"""Checks of a compiled case against its use of the data, at validate time: integer data in
range for what it indexes (labels in 0..C-1, indices in range for their axis), and an output
that depends on something differentiated. Each problem names the step and the value."""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..ir.graph import Graph
from ..ir.ops import OPS
from .models import CaseModel, RandomInput, ValueInput

# fail(message, step) -> the error to raise, naming the file, the case and the step's line
Fail = Callable[[str, str], Exception]


def check_uses(model: CaseModel, graph: Graph, wrt: list[str], fail: Fail) -> None:
    if graph.output not in graph.dependents(wrt):
        raise fail(f"the output does not depend on any differentiated input "
                   f"(wrt: {', '.join(wrt)}): there is no gradient to check", graph.output)
    for node in graph.nodes:
        spec = OPS[node.op]
        if spec.int_bound is not None:
            bound = spec.int_bound(node.attrs, *(graph.shape_of(a) for a in node.args))
            for i in spec.int_args:
                _check_range(model, node, node.args[i], bound, fail)


def _check_range(model: CaseModel, node, name: str, bound: int, fail: Fail) -> None:
    low, high = _value_range(model.inputs[name])
    if low is None or (0 <= low and high < bound):
        return
    bad = low if low < 0 else high
    role = "labels" if node.op == "softmax_cross_entropy" else "indices"
    raise fail(f"{node.op}: {role} {name!r} must lie in 0..{bound - 1}, got {bad}", node.step)


def _value_range(spec) -> tuple[int | None, int | None]:
    """The smallest and largest value integer data can hold (None, None when empty)."""
    if isinstance(spec, RandomInput):
        return int(spec.low), int(spec.high) - 1         # randint draws from [low, high)
    values = np.asarray(spec.value if isinstance(spec, ValueInput) else spec, dtype=np.float64)
    if values.size == 0:
        return None, None
    return int(values.min()), int(values.max())
