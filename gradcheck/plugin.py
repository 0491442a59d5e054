"""The pytest plugin: each YAML case, in each of its dtypes, is a test item.

Registered through the `pytest11` entry point. Collects `*.yaml` / `*.yml` files that sit
under a folder named `cases`, and any YAML file named on the command line.
"""
from __future__ import annotations

from pathlib import Path

import pytest

from .errors import CaseError
from .harness.runner import run_case
from .harness.verdict import FAILING, Verdict

SUFFIXES = (".yaml", ".yml")


def pytest_addoption(parser):
    group = parser.getgroup("gradcheck")
    group.addoption("--gradcheck-engines", default="numpy,fd,torch,jax",
                    help="comma-separated engines for YAML cases (default: all four)")
    group.addoption("--gradcheck-engine", action="append", default=[], metavar="MODULE:ATTR",
                    help="add a custom engine (repeatable; the current folder is searched)")


def pytest_configure(config):
    """Engines are made once, here: a misspelt name is one usage error, not one per item."""
    from .engines import BUILTIN, make_engines
    names = [n.strip() for n in config.getoption("gradcheck_engines").split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise pytest.UsageError(f"--gradcheck-engines: unknown engine(s) {', '.join(unknown)} "
                                f"(built in: {', '.join(BUILTIN)})")
    try:
        config._gradcheck_engines = make_engines(names, config.getoption("gradcheck_engine"))
    except (ImportError, AttributeError, ValueError) as e:
        raise pytest.UsageError(f"--gradcheck-engine: cannot load engine: {e}") from None


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix in SUFFIXES and _wanted(file_path, parent.config):
        return CaseFile.from_parent(parent, path=file_path)
    return None


def _wanted(path: Path, config) -> bool:
    named = {Path(a.split("::")[0]).resolve() for a in config.invocation_params.args}
    return "cases" in path.parent.parts or path.resolve() in named


class CaseFile(pytest.File):
    def collect(self):
        from .loading import load_file
        for case in load_file(self.path):
            for dtype in case.dtypes:
                yield CaseItem.from_parent(self, name=f"{case.name}[{dtype}]", case=case,
                                           dtype=dtype)

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CaseError):
            return f"invalid case file: {excinfo.value}"
        return super().repr_failure(excinfo)


class CaseFailed(Exception):
    def __init__(self, result):
        super().__init__(result.case.message)
        self.result = result


class CaseItem(pytest.Item):
    def __init__(self, *, case, dtype, **kwargs):
        super().__init__(**kwargs)
        self.case, self.dtype = case, dtype
        self.extra_keyword_matches.update(case.tags)      # `pytest -k conv2d` selects a family

    def runtest(self):
        result = run_case(self.case, self.dtype, _engines(self.config))
        verdict = result.case.verdict
        if verdict == Verdict.SKIP:
            pytest.skip(result.case.message)
        if verdict in FAILING:
            raise CaseFailed(result)
        assert verdict in (Verdict.PASS, Verdict.NONDIFF), verdict

    def repr_failure(self, excinfo):
        if isinstance(excinfo.value, CaseFailed):
            return discrepancy_table(excinfo.value.result)
        return super().repr_failure(excinfo)

    def reportinfo(self):
        return self.path, self.case.line - 1, f"case {self.case.name} [{self.dtype}]"


def _engines(config):
    return config._gradcheck_engines


def discrepancy_table(result) -> str:
    from .harness.result import RunResult
    from .reports.text import render_text
    return render_text(RunResult.from_case_results([result]))
