"""A loaded, compiled case: its YAML model, its graph, and the arrays it runs on.

Everything here is plain data and pickles, so a case can run in a worker process.
Random inputs are seeded (per input, or stably from the case and input names), so a case
gives the same numbers on every run and machine.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import cast

import numpy as np

from ..dtypes import numpy_dtype
from ..ir.graph import Graph
from .models import CaseModel, RandomInput, ValueInput


def stable_seed(*parts: str) -> int:
    return zlib.crc32("/".join(parts).encode())


@dataclass
class Case:
    model: CaseModel
    graph: Graph
    wrt: list[str]
    file: str
    line: int
    # the numpy forward's op table where it is not reference_impls.OPS: a check of your own
    # code without a reference, whose one op is your forward (the Taylor test evaluates it)
    ops: Mapping | None = None

    @property
    def name(self) -> str:
        return self.model.name

    @property
    def tags(self) -> list[str]:
        return list(self.model.tags)

    @property
    def family(self) -> str:
        return self.model.tags[0] if self.model.tags else ""

    @property
    def dtypes(self) -> list[str]:
        return list(self.model.dtypes)

    @property
    def tolerance(self):
        """The case's own `tolerance` override (rtol and/or atol), or None."""
        return self.model.tolerance

    @property
    def jacobian(self) -> bool:
        return self.model.jacobian

    @property
    def modes(self) -> list[str]:
        return list(self.model.modes)

    @property
    def order(self) -> int:
        return self.model.order

    def tangents(self, dtype: str) -> dict[str, np.ndarray]:
        """One seeded random direction per differentiated input (forward mode, second order)."""
        arrays = self.arrays(dtype)
        return {
            name: np.random.default_rng(stable_seed(self.name, name, "<tangent>"))
            .standard_normal(arrays[name].shape)
            .astype(arrays[name].dtype)
            for name in self.wrt
        }

    @property
    def fd_max_elements(self) -> int | None:
        return self.model.fd_max_elements

    @property
    def fd_coverage(self) -> str | None:
        return self.model.fd_coverage

    def expected(self) -> tuple[np.ndarray | None, dict[str, np.ndarray]] | None:
        """The hand-written `expect` values as float64 arrays: (value or None, grads)."""
        expect = self.model.expect
        if expect is None:
            return None
        value = None if expect.value is None else np.asarray(expect.value, dtype=np.float64)
        return value, {k: np.asarray(v, dtype=np.float64) for k, v in expect.grad.items()}

    def details(self) -> dict:
        """What a report shows about the case beside its numbers."""
        m = self.model
        return {
            "description": m.description,
            "source": m.source or "",
            "tags": list(m.tags),
            "steps": m.steps(),
            "wrt": self.wrt,
            "file": self.file,
            "line": self.line,
        }

    def arrays(self, dtype: str) -> dict[str, np.ndarray]:
        """The inputs: made in float64 from their seeds, then rounded to `dtype` (a name of
        `gradcheck.dtypes.DTYPES`: bfloat16 arrays are `ml_dtypes.bfloat16`)."""
        return {
            name: _cast(make_array(self.name, name, spec), dtype)
            for name, spec in self.model.inputs.items()
        }

    def cotangent(self, dtype: str) -> np.ndarray:
        """1 for a scalar output; else a seeded random cotangent (a VJP check)."""
        shape = self.graph.output_shape
        if not shape:
            return np.ones((), dtype=numpy_dtype(dtype))
        rng = np.random.default_rng(stable_seed(self.name, "<cotangent>"))
        return rng.standard_normal(shape).astype(numpy_dtype(dtype))


def _cast(array: np.ndarray, dtype: str) -> np.ndarray:
    return array if array.dtype == np.int64 else array.astype(numpy_dtype(dtype))


def make_array(case: str, name: str, spec) -> np.ndarray:
    if isinstance(spec, ValueInput):
        return np.asarray(spec.value, dtype=np.int64 if spec.dtype == "int64" else np.float64)
    if isinstance(spec, RandomInput):
        return _random(
            spec, np.random.default_rng(stable_seed(case, name) if spec.seed is None else spec.seed)
        )
    return np.asarray(spec, dtype=np.float64)


def _random(spec: RandomInput, rng: np.random.Generator) -> np.ndarray:
    makers = {
        "normal": lambda: rng.standard_normal(spec.shape) * spec.scale,
        "uniform": lambda: rng.uniform(spec.low, spec.high, spec.shape),
        "zeros": lambda: np.zeros(spec.shape),
        "ones": lambda: np.ones(spec.shape) * spec.scale,
        "randint": lambda: rng.integers(int(spec.low), int(spec.high), spec.shape),
        # p is set exactly when init is bernoulli (RandomInput's validator)
        "bernoulli": lambda: (rng.random(spec.shape) < cast(float, spec.p)).astype(np.float64),
    }
    return np.asarray(makers[spec.init](), dtype=np.int64 if spec.dtype == "int64" else np.float64)
