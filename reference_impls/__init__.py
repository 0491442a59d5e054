"""From-scratch numpy reverse and forward mode: per op, one forward, and per input one
gradient rule and one tangent rule."""

from .backprop import MissingGradRule, backprop, dependents, forward, operands, topological_order
from .elementwise import OPS as _ELEMENTWISE
from .forward_mode import MissingTangentRule, jvp
from .indexing import OPS as _INDEXING
from .layers import OPS as _LAYERS
from .nn import OPS as _NN
from .primitive import (
    GradRule,
    JointPart,
    Primitive,
    TangentPart,
    TangentRule,
    joint_rules,
    joint_tangents,
    linear,
    unbroadcast,
)
from .reductions import OPS as _REDUCTIONS

# The op table of the numpy engine: a plain dict, so a caller can copy it and replace an
# entry (their own layer, or a deliberately broken backward).
OPS: dict[str, Primitive] = {**_ELEMENTWISE, **_REDUCTIONS, **_INDEXING, **_NN, **_LAYERS}

__all__ = [
    "OPS",
    "Primitive",
    "GradRule",
    "JointPart",
    "joint_rules",
    "TangentRule",
    "TangentPart",
    "joint_tangents",
    "linear",
    "unbroadcast",
    "backprop",
    "jvp",
    "forward",
    "operands",
    "dependents",
    "topological_order",
    "MissingGradRule",
    "MissingTangentRule",
]
