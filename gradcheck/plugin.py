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
    if not hasattr(config, "_gradcheck_engines"):
        from .engines import make_engines
        names = [n.strip() for n in config.getoption("gradcheck_engines").split(",") if n.strip()]
        config._gradcheck_engines = make_engines(names)
    return config._gradcheck_engines


def discrepancy_table(result) -> str:
    c = result.case
    lines = [f"{c.verdict}: case {c.case} [{c.dtype}] blame: {c.blame or '-'}",
             f"  {c.message}", "",
             f"  {'param':<12} {'pair':<16} {'verdict':<9} {'tol_ratio':>10} {'max_abs_err':>12}"
             f"  worst  a / b"]
    for r in result.comparisons:
        if r.verdict != Verdict.PASS:
            pair = f"{r.engine_a}~{r.engine_b}"
            where = list(r.worst_index) if r.worst_index is not None else "-"
            lines.append(f"  {r.param:<12} {pair:<16} {r.verdict:<9} {r.tol_ratio:>10.3g} "
                         f"{r.max_abs_err:>12.3g}  {where}  {r.value_a:.10g} / {r.value_b:.10g}")
    lines += [f"  engine {e.engine}: {e.status} {e.message}"
              for e in result.engines if e.status != "ok"]
    return "\n".join(lines)
