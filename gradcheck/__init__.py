"""gradcheck: proof that gradients are right.

cases = gradcheck.load_cases(["cases/"])
result = gradcheck.run(cases)            # numpy backprop, fd, torch, jax
result.write_reports("reports/latest")
assert result.ok
"""

from .engines import (
    Engine,
    EngineOutput,
    EngineSkip,
    FiniteDifferences,
    JaxEngine,
    NumpyEngine,
    Settings,
    TorchEngine,
    load_plugins,
    register_op,
    unregister_op,
)
from .engines.fd import Derivative, differentiate, differentiate_along
from .engines.register import load_env_plugins, load_installed_plugins
from .errors import CaseError, CaseErrors
from .harness.api import run
from .harness.own import (
    assert_gradients,
    assert_jax_gradients,
    assert_loss_gradients,
    assert_torch_gradients,
    check,
    check_jax,
    check_loss,
    check_torch,
)
from .harness.result import RunResult, read_run, read_table
from .harness.runner import RunOptions, run_case
from .harness.verdict import Verdict
from .loading import Case, load_cases

__version__ = "0.1.0"

__all__ = [
    "load_cases",
    "run",
    "differentiate",
    "differentiate_along",
    "Derivative",
    "check",
    "check_loss",
    "check_torch",
    "check_jax",
    "assert_gradients",
    "assert_loss_gradients",
    "assert_torch_gradients",
    "assert_jax_gradients",
    "run_case",
    "RunOptions",
    "RunResult",
    "read_run",
    "read_table",
    "Verdict",
    "Case",
    "CaseError",
    "CaseErrors",
    "Engine",
    "EngineOutput",
    "EngineSkip",
    "Settings",
    "NumpyEngine",
    "FiniteDifferences",
    "TorchEngine",
    "JaxEngine",
    "register_op",
    "unregister_op",
    "load_plugins",
]

# Last, so that a plugin importing gradcheck finds everything above: installed packages'
# `gradcheck.plugins` entry points and the modules named in GRADCHECK_PLUGINS register
# their ops here, in worker processes as in the main one.
load_installed_plugins()
load_env_plugins()
