"""The pytest plugin: each YAML case, in each of its dtypes, is a test item.

Registered through the `pytest11` entry point. It stays out of a project's way: it
collects `*.yaml` / `*.yml` files only
- named on the command line (`pytest some/case.yaml`),
- under a folder listed in the `gradcheck_paths` ini option (default `cases`, relative to
  the rootdir), or
- under a folder named on the command line (`pytest mycases/`), when the file looks like a
  case (top-level `name:` and `inputs:` keys), so that `pytest tests/` in a project with
  `tests/cases/get_users.yaml` collects that project's tests as before.

A case's tags are pytest markers (`pytest -m conv2d`), registered as they are collected so
that `--strict-markers` accepts them; `-k` matches tags too.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from .errors import CaseError
from .harness.isolation import keep_freed_memory
from .harness.runner import run_case
from .harness.verdict import FAILING, Verdict

SUFFIXES = (".yaml", ".yml")
ENGINES_KEY = pytest.StashKey[list]()
CASE_KEYS = (re.compile(r"^name\s*:", re.M), re.compile(r"^inputs\s*:", re.M))
SNIFF_BYTES = 65536  # the top-level keys of a case are near its start
MARKER_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")  # what `-m` can select


def pytest_addoption(parser):
    group = parser.getgroup("gradcheck")
    group.addoption(
        "--gradcheck-engines",
        default="numpy,fd,torch,jax",
        help="comma-separated engines for YAML cases (default: all four)",
    )
    group.addoption(
        "--gradcheck-engine",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="add a custom engine (repeatable; the current folder is searched)",
    )
    parser.addini(
        "gradcheck_paths",
        type="paths",
        default=["cases"],
        help="folders whose YAML files are gradcheck cases (default: cases)",
    )


def pytest_configure(config):
    """Engines are made once, here: a misspelt name is one usage error, not one per item."""
    from .engines import BUILTIN, make_engines

    names = [n.strip() for n in config.getoption("gradcheck_engines").split(",") if n.strip()]
    unknown = [n for n in names if n not in BUILTIN]
    if unknown:
        raise pytest.UsageError(
            f"--gradcheck-engines: unknown engine(s) {', '.join(unknown)} "
            f"(built in: {', '.join(BUILTIN)})"
        )
    try:
        config.stash[ENGINES_KEY] = make_engines(names, config.getoption("gradcheck_engine"))
    except (ImportError, AttributeError, ValueError) as e:
        raise pytest.UsageError(f"--gradcheck-engine: cannot load engine: {e}") from None


def pytest_collect_file(file_path: Path, parent):
    if file_path.suffix in SUFFIXES and _wanted(file_path, parent.config):
        return CaseFile.from_parent(parent, path=file_path)
    return None


def _wanted(path: Path, config) -> bool:
    path = path.resolve()
    here = config.invocation_params.dir
    typed = config.args_source == pytest.Config.ArgsSource.ARGS  # not testpaths, not "."
    named = [(here / arg.split("::")[0]).resolve() for arg in config.args] if typed else []
    listed = [(config.rootpath / folder).resolve() for folder in config.getini("gradcheck_paths")]
    if path in named or any(path.is_relative_to(folder) for folder in listed):
        return True
    return any(path.is_relative_to(folder) for folder in named) and _looks_like_a_case(path)


def _looks_like_a_case(path: Path) -> bool:
    try:
        with path.open(encoding="utf-8", errors="replace") as f:
            head = f.read(SNIFF_BYTES)
    except OSError:
        return False
    return all(key.search(head) for key in CASE_KEYS)


class CaseFile(pytest.File):
    def collect(self):
        from .loading import load_file

        for case in load_file(self.path):
            _register_markers(self.config, case.tags)
            for dtype in case.dtypes:
                yield CaseItem.from_parent(
                    self, name=f"{case.name}[{dtype}]", case=case, dtype=dtype
                )

    def repr_failure(self, excinfo, style=None):  # Node's signature; a Collector's has no style
        if isinstance(excinfo.value, CaseError):
            return f"invalid case file: {excinfo.value}"
        return super().repr_failure(excinfo)


def _register_markers(config, tags) -> None:
    known = {line.split(":")[0].split("(")[0].strip() for line in config.getini("markers")}
    for tag in tags:
        if MARKER_NAME.match(tag) and tag not in known:
            config.addinivalue_line("markers", f"{tag}: gradcheck cases tagged {tag}")


class CaseFailed(Exception):
    def __init__(self, result):
        super().__init__(result.case.message)
        self.result = result


class CaseItem(pytest.Item):
    def __init__(self, *, case, dtype, **kwargs):
        super().__init__(**kwargs)
        self.case, self.dtype = case, dtype
        self.extra_keyword_matches.update(case.tags)  # `pytest -k conv2d` selects a family
        for tag in case.tags:
            if MARKER_NAME.match(tag):
                self.add_marker(tag)  # `pytest -m conv2d` too

    def runtest(self):
        keep_freed_memory()  # only a session that runs cases gets the setting
        result = run_case(self.case, self.dtype, _engines(self.config))
        verdict = result.case.verdict
        if verdict == Verdict.SKIP:
            pytest.skip(result.case.message)
        if verdict in FAILING:
            raise CaseFailed(result)
        assert verdict in (Verdict.PASS, Verdict.NONDIFF), verdict

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, CaseFailed):
            return discrepancy_table(excinfo.value.result)
        return super().repr_failure(excinfo, style)

    def reportinfo(self):
        return self.path, self.case.line - 1, f"case {self.case.name} [{self.dtype}]"


def _engines(config) -> list:
    """Made once per session in `pytest_configure`, kept in the config's stash."""
    return config.stash[ENGINES_KEY]


def discrepancy_table(result) -> str:
    from .harness.result import RunResult
    from .reports.text import render_text

    return render_text(RunResult.from_case_results([result]))
