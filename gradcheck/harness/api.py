"""The Python API that the CLI and the pytest plugin are thin front ends over."""

from __future__ import annotations

import platform
import sys
import time
from collections.abc import Callable, Iterable
from importlib import metadata as importlib_metadata

from ..engines import make_engines
from .isolation import WorkerPool, run_jobs
from .result import RunResult
from .runner import CaseResult, RunOptions

SEED = 0  # random inputs and cotangents are seeded per case; this names the scheme's version


def run(
    cases,
    engines=None,
    dtypes: Iterable[str] | None = None,
    options: RunOptions | None = None,
    progress: Callable[[str], None] | None = None,
    workers: int | WorkerPool | None = None,
    on_result: Callable[[CaseResult], None] | None = None,
) -> RunResult:
    """Run every case in each of its dtypes (or in `dtypes`) through `engines` (default: all
    four built-in ones) and return the tables. With a time limit (`options.timeout`, in
    seconds) cases run in `workers` worker processes (default: one per 4 runs, at most one
    per core; or a pool started beforehand, `WorkerPool.prepare`, which the run then stops);
    without one (None or 0), one after another in this process. The rows come in the same
    order either way. As each run ends, `progress` hears its label and `on_result` its
    `CaseResult` (a progress bar that counts failures)."""
    engines = make_engines() if engines is None else list(engines)
    cases = list(cases)
    jobs = [(case, dtype) for case in cases for dtype in (list(dtypes) if dtypes else case.dtypes)]
    results = run_jobs(jobs, engines, options, workers, _listeners(progress, on_result))
    return RunResult.from_case_results(
        results, run_metadata(engines), {c.name: c.details() for c in cases}
    )


def _listeners(progress, on_result) -> Callable[[CaseResult, str], None]:
    def heard(result: CaseResult, label: str) -> None:
        if on_result:
            on_result(result)
        if progress:
            progress(label)

    return heard


def run_metadata(engines) -> dict:
    return {
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "seed": SEED,
        "command": " ".join(sys.argv),
        "engines": [e.name for e in engines],
        "engine_options": {e.name: e.options() for e in engines if hasattr(e, "options")},
        "versions": {p: _version(p) for p in ("numpy", "torch", "jax", "jaxlib", "pandas")},
    }


def _version(package: str) -> str | None:
    try:
        return importlib_metadata.version(package)
    except importlib_metadata.PackageNotFoundError:
        return None
