"""Your own code as an engine: numpy layers and losses, torch functions and modules, jax
functions. Each kind is a way to call your code and get its outputs and VJP, and its JVP
and HVP where it has them (`calls` says the protocol); one engine (`OwnEngine`) and one
harness serve them all."""

from .calls import name_of
from .engine import OwnEngine
from .numpy_code import ForwardModeLayerCode, LayerCode, ValueAndGradCode

__all__ = ["OwnEngine", "LayerCode", "ForwardModeLayerCode", "ValueAndGradCode", "name_of"]
