"""Engines that misbehave on purpose, for the fault tests.

They live in a module of their own, importable from `tests/` (pytest puts that folder on
`sys.path`, and a spawned worker inherits it), because a worker process can only unpickle
an engine whose class it can import: classes defined inside a test module cannot travel.
"""

from __future__ import annotations

import os
import time

import numpy as np

from gradcheck.engines import NumpyEngine
from gradcheck.engines.base import require


class Raising:
    name = "raising"

    def vjp(self, graph, inputs, wrt, cotangent):
        raise RuntimeError("boom: a deliberate failure")


class Hanging:
    """Hangs on cases that have an input named `trigger`; elsewhere agrees with numpy."""

    name = "hanging"

    def __init__(self, trigger: str = "slow"):
        self.trigger = trigger

    def vjp(self, graph, inputs, wrt, cotangent):
        if self.trigger in inputs:
            time.sleep(3600)
        return NumpyEngine().vjp(graph, inputs, wrt, cotangent)


class Crashing:
    """Kills its own process, as a segfault in a framework would."""

    name = "crashing"

    def vjp(self, graph, inputs, wrt, cotangent):
        os._exit(13)


class NanGrads:
    """Right values, NaN gradients: a backward that divides by zero somewhere."""

    name = "nan-grads"

    def vjp(self, graph, inputs, wrt, cotangent):
        out = NumpyEngine().vjp(graph, inputs, wrt, cotangent)
        return out.value, {k: np.full_like(g, np.nan) for k, g in out.grads.items()}


class MissingFramework:
    """An engine over a framework that is not installed."""

    name = "missing"

    def vjp(self, graph, inputs, wrt, cotangent):
        require("gradcheck_no_such_framework")
        raise AssertionError("unreachable: require() skips the engine")


class Unpicklable:
    """Agrees with numpy, but holds a lambda, so it cannot be sent to a worker."""

    name = "unpicklable"

    def __init__(self):
        self.hook = lambda x: x
        self.inner = NumpyEngine(name=self.name)

    def vjp(self, graph, inputs, wrt, cotangent):
        return self.inner.vjp(graph, inputs, wrt, cotangent)


class Aborting:
    """Calls abort(), as XLA does on a failed CHECK: SIGABRT, no Python exception."""

    name = "aborting"

    def vjp(self, graph, inputs, wrt, cotangent):
        os.abort()


def BrokenTanh():
    """The numpy engine with tanh' = 1 - tanh (a corpus mutant), under its usual name."""
    from gradcheck.power.corpus import CORPUS

    return next(m for m in CORPUS["tanh"] if m.name == "tanh.unsquared").engine()


class Preparing:
    """Agrees with numpy; its `prepare()` (called in a worker before its first case) writes
    the worker's process id to `marker`, or raises when `marker` is empty."""

    name = "preparing"

    def __init__(self, marker: str = ""):
        self.marker = marker

    def prepare(self) -> None:
        if not self.marker:
            raise RuntimeError("boom: a deliberate failure to prepare")
        with open(self.marker, "w") as f:
            f.write(str(os.getpid()))

    def vjp(self, graph, inputs, wrt, cotangent):
        return NumpyEngine(name=self.name).vjp(graph, inputs, wrt, cotangent)
