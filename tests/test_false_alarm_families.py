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


def test_a_fail_naming_an_engine_measured_wrong_there_is_an_engine_fault(engines):
    """dropout-00828 float32, the one FAIL of 32,000 four-engine runs: torch's float32 gelu is
    -0.0 at -6.54 (true: -2.07e-10). The alarm is right; it is counted apart."""
    [case] = load_text(fa.case_yaml("dropout", 828, 0, ["float32"]), "<dropout-828>")
    counts, alarms = fa.measure([case], ["float32"], engines, RunOptions())
    assert counts == {("dropout", "float32", fa.ENGINE_FAULT): 1}
    assert [(a["case"], a["kind"], a["blame"]) for a in alarms] == [
        ("dropout-00828", fa.ENGINE_FAULT, "torch")
    ]
    [row] = fa.rates(counts, ["dropout"], ["float32"])
    assert (row["false_alarms"], row["engine_faults"], row["runs"]) == (0, 1, 1)
    assert "0 (0.00%) + 1 engine fault" in fa.wide_markdown([row], ["float32"])
