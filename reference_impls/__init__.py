"""From-scratch numpy reverse mode: one forward and one gradient rule per input, per op."""
from .backprop import MissingGradRule, backprop, dependents, forward, topological_order
from .elementwise import OPS as _ELEMENTWISE
from .indexing import OPS as _INDEXING
from .nn import OPS as _NN
from .primitive import GradRule, Primitive, unbroadcast
from .reductions import OPS as _REDUCTIONS

# The op table of the numpy engine: a plain dict, so a caller can copy it and replace an
# entry (their own layer, or a deliberately broken backward).
OPS: dict[str, Primitive] = {**_ELEMENTWISE, **_REDUCTIONS, **_INDEXING, **_NN}

__all__ = ["OPS", "Primitive", "GradRule", "unbroadcast", "backprop", "forward", "dependents",
           "topological_order", "MissingGradRule"]
