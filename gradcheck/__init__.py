"""gradcheck: proof that gradients are right.

    cases = gradcheck.load_cases(["cases/"])
    result = gradcheck.run(cases)            # numpy backprop, fd, torch, jax
    result.write_reports("reports/latest")
    assert result.ok
"""
from .engines import (Engine, EngineOutput, EngineSkip, FiniteDifferences, JaxEngine, NumpyEngine,
                      Settings, TorchEngine)
from .engines.fd import Derivative, differentiate, differentiate_along
from .errors import CaseError, CaseErrors
from .harness.api import run
from .harness.result import RunResult, read_run, read_table
from .harness.runner import RunOptions, run_case
from .harness.verdict import Verdict
from .loading import Case, load_cases

__version__ = "0.1.0"

__all__ = ["load_cases", "run", "differentiate", "differentiate_along", "Derivative", "run_case", "RunOptions", "RunResult", "read_run", "read_table",
           "Verdict", "Case", "CaseError", "CaseErrors", "Engine", "EngineOutput", "EngineSkip",
           "Settings", "NumpyEngine",
           "FiniteDifferences", "TorchEngine", "JaxEngine"]
