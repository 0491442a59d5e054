"""The floating dtypes a case runs in: the one place that names them and says what the
harness needs of each (its numpy type, machine epsilon, smallest normal and subnormal, and
whether numpy computes in it or in float32).

bfloat16 is `ml_dtypes.bfloat16`: numpy has no bfloat16 of its own, and its arrays are of
kind 'V', not 'f', so `floating` and `as_float64` here are how the harness recognises one.
Importing this module does not import torch: the torch helpers import it when called.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

# A "low" dtype has no complete, fast numpy arithmetic (bfloat16 none, float16 slow and
# partial): numpy code computes in float32 for it and rounds its results to it.
_TYPES = {
    "float64": (np.float64, False),
    "float32": (np.float32, False),
    "bfloat16": (ml_dtypes.bfloat16, True),
    "float16": (np.float16, True),
}
DTYPES = tuple(_TYPES)
LOW_COMPUTE = np.dtype(np.float32)  # what numpy computes a low dtype in


@dataclass(frozen=True)
class DtypeInfo:
    name: str
    numpy: np.dtype
    eps: float  # machine epsilon: the gap between 1 and the next number
    tiny: float  # the smallest normal number
    smallest_subnormal: float
    low: bool

    @property
    def compute(self) -> np.dtype:
        """The dtype numpy computes in for this one."""
        return LOW_COMPUTE if self.low else self.numpy


def _info(name: str) -> DtypeInfo:
    scalar, low = _TYPES[name]
    finfo = ml_dtypes.finfo(scalar)  # np.finfo's numbers, and bfloat16's too
    return DtypeInfo(
        name,
        np.dtype(scalar),
        float(finfo.eps),
        float(finfo.tiny),
        float(finfo.smallest_subnormal),
        low,
    )


INFO = {name: _info(name) for name in DTYPES}


def info(dtype) -> DtypeInfo:
    """A dtype's facts, by name ("bfloat16") or as a numpy dtype or type."""
    name = dtype if isinstance(dtype, str) else np.dtype(dtype).name
    if name not in INFO:
        raise ValueError(f"unknown dtype {name!r}; valid: {', '.join(DTYPES)}")
    return INFO[name]


def numpy_dtype(dtype) -> np.dtype:
    return info(dtype).numpy


def floating(dtype) -> bool:
    """Whether arrays of `dtype` hold floating numbers: numpy's own, and bfloat16."""
    dtype = np.dtype(dtype)
    return dtype.name in INFO or np.issubdtype(dtype, np.floating)


def as_float64(array) -> np.ndarray:
    """Floating arrays (bfloat16 included) as float64, exactly; integer data as it is."""
    array = np.asarray(array)
    return array.astype(np.float64) if floating(array.dtype) else array


def compute_dtype(dtype) -> np.dtype:
    """The dtype numpy computes in for `dtype`: float32 for a low one, else `dtype` itself
    (one this module does not name too: a user's engine may run in it)."""
    name = np.dtype(dtype).name
    return INFO[name].compute if name in INFO else np.dtype(dtype)


def as_compute(array) -> np.ndarray:
    """An array in the dtype numpy computes in for its own: float32 for a low dtype; any
    other array (float64, float32, integer data) as it is, not copied."""
    array = np.asarray(array)
    return array.astype(compute_dtype(array.dtype), copy=False)


# --- torch (imported only when one of these is called) ------------------------------------


def torch_dtype(dtype):
    """The torch dtype of that name: torch names the four as numpy and ml_dtypes do."""
    import torch

    return getattr(torch, info(dtype).name)


def to_torch(array, device="cpu", requires_grad: bool = False):
    """A numpy array as a tensor of the same dtype. `torch.tensor` cannot read a bfloat16
    array: a low dtype goes through float32, which holds each of its values exactly."""
    import torch

    array = np.asarray(array)
    if not (array.dtype.name in INFO and INFO[array.dtype.name].low):
        return torch.tensor(array, device=device, requires_grad=requires_grad)
    tensor = torch.tensor(array.astype(np.float32), device=device)
    return tensor.to(torch_dtype(array.dtype)).requires_grad_(requires_grad)


def to_numpy(tensor, dtype=None) -> np.ndarray:
    """A tensor as a numpy array, in `dtype` when given (a name or numpy dtype). A bfloat16
    tensor has no numpy equivalent: it goes through float32, exactly."""
    import torch

    tensor = tensor.detach().cpu()
    if tensor._is_zerotensor():  # autograd's symbolic zero (a derivative that is 0 by
        tensor = torch.zeros(tensor.shape, dtype=tensor.dtype)  # structure) has no array
    if tensor.dtype == torch.bfloat16:
        tensor = tensor.float()
    array = tensor.numpy()
    return array if dtype is None else array.astype(numpy_dtype(dtype), copy=False)


def eps(dtype) -> float:
    """The dtype's machine epsilon."""
    return info(dtype).eps


def cast(array, dtype) -> np.ndarray:
    """Floating data rounded to `dtype`; integer data (labels, masks) as it is."""
    array = np.asarray(array)
    return array.astype(numpy_dtype(dtype)) if floating(array.dtype) else array
