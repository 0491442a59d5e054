"""The random families of benchmarks/false_alarms.py: every family generates cases that
load and validate for any seed, and a few cases of the newer families (attention,
embedding, indexing, einsum, dropout, svm) come out PASS or NONDIFF in both dtypes under
all four engines (a correct implementation never fails)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from gradcheck.engines import make_engines
from gradcheck.harness.runner import RunOptions
from gradcheck.loading import load_text

_PATH = Path(__file__).resolve().parents[1] / "benchmarks" / "false_alarms.py"
_SPEC = importlib.util.spec_from_file_location("false_alarms", _PATH)
fa = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(fa)

DTYPES = ["float64", "float32"]
NEW_FAMILIES = ["attention", "embedding", "indexing", "einsum", "dropout", "svm"]


def test_every_family_has_a_seed_slot():
    assert set(fa.SEED_ORDER) == set(fa.FAMILIES)
    assert set(NEW_FAMILIES) <= set(fa.FAMILIES)


def test_default_engines_are_all_four():
    assert "--engines numpy,fd,torch,jax" in fa.__doc__
    assert fa.DEFAULT_ENGINES == "numpy,fd,torch,jax"


@pytest.mark.parametrize("family", list(fa.FAMILIES))
def test_generated_cases_load(family):
    for seed in (0, 7):
        for i in range(15):  # 30 cases per family, two seeds
            cases = load_text(fa.case_yaml(family, i, seed, DTYPES), f"<{family}-{i}>")
            assert len(cases) == 1 and cases[0].family == family


@pytest.fixture(scope="module")
def engines():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    return make_engines(["numpy", "fd", "torch", "jax"])


@pytest.mark.parametrize("family", NEW_FAMILIES)
def test_new_family_no_false_alarm(family, engines):
    counts, alarms = fa.measure(fa.generate(family, 3, 0, DTYPES), DTYPES, engines, RunOptions())
    assert alarms == []
    assert sum(counts.values()) == 3 * len(DTYPES)
