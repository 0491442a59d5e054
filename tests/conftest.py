"""Fixtures shared by several test modules, and the order of the run under xdist.

`make test` runs the suite under pytest-xdist, each worker with its own `tmp_path` folders,
where tests write (the linters keep their caches in the repository, as when run by hand).
What the workers share is built for it: the jax engine's compile cache (its executables
are written whole or not at all, and an entry that does not load is a miss) and
hypothesis's example database.
"""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

from helpers import COLAH_E, TANH_LAYER, write_case

# Beside a case that passes (helpers.COLAH_E): one whose hand-written `expect` is wrong in
# one element of a 3 x 4 tensor (so `expect` is blamed), and one whose text is full of HTML.
WRONG_EXPECT = """\
    name: wx-wrong-expect
    description: sum(W @ x), one entry of the hand-derived dW is wrong
    tags: [l2-wx]
    inputs:
      W: [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]
      x: [1.0, -1.0, 2.0, 0.5]
    expr: sum(W @ x)
    wrt: [W]
    expect:
      grad:
        W: [[1.0, -1.0, 2.0, 0.5], [1.0, -1.0, 2.5, 0.5], [1.0, -1.0, 2.0, 0.5]]
"""
HTML_TEXT = """\
    name: html-text
    description: "<script>alert(1)</script> & <b>bold</b>"
    source: "<img src=x onerror=alert(2)>"
    tags: [scalar]
    inputs: {a: 3.0}
    expr: tanh(a) * a
"""


# Module fixtures that take from seconds to minutes to compute (a mutation matrix of the
# whole catalog, a catalog run, a docs build, a package build).
SHARED_FIXTURES = {"catalog_mutation", "catalog_result", "site", "dists"}
# The longest single tests (ten seconds and more of CPU), longest first.
LONGEST = (
    "tests/test_mutations.py::test_every_mutant_is_killed",
    "tests/test_fuzz.py::test_fuzz_writes_a_shrunk_case",
    "tests/test_workers.py::test_two_workers_write_the_same_reports",
    "tests/test_examples.py::test_new_op_under_the_cli",
    "tests/test_taylor.py::test_every_catalog_case",
    "tests/test_examples.py::test_custom_engine_under_the_cli",
    "tests/test_fuzz.py::test_fuzz_cli",
)


def pytest_collection_modifyitems(items):
    """Under xdist, the tests that share a costly module fixture and the longest tests run
    first.

    `--dist worksteal` hands each worker a contiguous share of the run and lets an idle
    worker take the end of another's queue, never its start. What starts the first share
    stays in one worker: a costly module fixture is computed once, not once per worker.
    And the longest work starts first, so that the run does not end waiting on one long
    test."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    rank = {}
    for item in items:
        shared = sorted(SHARED_FIXTURES.intersection(_module_fixtures(item)))
        longest = [i for i, prefix in enumerate(LONGEST) if item.nodeid.startswith(prefix)]
        if shared or longest:
            rank[item] = (0, shared[0], 0) if shared else (1, "", longest[0])
    first = sorted(rank, key=rank.__getitem__)
    items[:] = first + [item for item in items if item not in rank]


def _module_fixtures(item) -> list[str]:
    defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
    return [name for name, chain in defs.items() if chain and chain[-1].scope != "function"]


@pytest.fixture
def mixed_catalog(tmp_path) -> Path:
    """A folder of three cases: one passes, one FAILs blaming `expect`, one has HTML text."""
    root = tmp_path / "cases"
    for folder, name, text in [
        ("scalar", "colah-e", COLAH_E),
        ("l2-wx", "wx-wrong-expect", WRONG_EXPECT),
        ("scalar", "html-text", HTML_TEXT),
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A folder of two cases that pass (colah-e, tanh-layer), for the command-line tests."""
    root = tmp_path / "cases"
    write_case(root / "scalar", "colah-e.yaml", COLAH_E)
    write_case(root / "l2-wx", "tanh-layer.yaml", TANH_LAYER)
    return root
