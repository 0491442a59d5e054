"""From-scratch numpy reverse mode: one forward and one gradient rule per input, per op."""

from .backprop import MissingGradRule, backprop, dependents, forward, operands, topological_order
from .elementwise import OPS as _ELEMENTWISE
from .indexing import OPS as _INDEXING
from .layers import OPS as _LAYERS
from .nn import OPS as _NN
from .primitive import GradRule, JointPart, Primitive, joint_rules, unbroadcast
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
    "unbroadcast",
    "backprop",
    "forward",
    "operands",
    "dependents",
    "topological_order",
    "MissingGradRule",
]
