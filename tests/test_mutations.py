"""The catalog's power: a wrong gradient rule for any op argument must FAIL at least one
catalog case, blamed on `numpy` alone.

Each mutant is the numpy engine with one rule scaled by 1.1 (a missing or extra factor,
the commonest hand-backprop bug), checked against torch and jax on every float64 catalog
case that uses the op.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

import gradcheck
import reference_impls
from gradcheck.harness.runner import run_case

CATALOG = Path(__file__).resolve().parent.parent / "cases"
MUTANTS = [(op, i) for op, prim in sorted(reference_impls.OPS.items())
           for i, rule in enumerate(prim.grads) if rule is not None]


@pytest.fixture(scope="module")
def catalog():
    return gradcheck.load_cases([CATALOG])


@pytest.fixture(scope="module")
def references():
    return [gradcheck.TorchEngine(), gradcheck.JaxEngine()]


def scaled(rule, factor=1.1):
    return lambda *args, **attrs: factor * rule(*args, **attrs)


def mutant_engine(op: str, index: int) -> gradcheck.NumpyEngine:
    ops = dict(reference_impls.OPS)
    grads = list(ops[op].grads)
    grads[index] = scaled(grads[index])
    ops[op] = replace(ops[op], grads=tuple(grads))     # keeps a variadic op variadic
    return gradcheck.NumpyEngine(ops, name="numpy")


def differentiates_through(case, op: str, index: int) -> bool:
    """Whether some node of `op` has a differentiated value at argument `index`."""
    needs = set(case.wrt)
    for node in case.graph.nodes:
        if node.op == op and node.args[index] in needs:
            return True
        if needs.intersection(node.args):
            needs.add(node.name)
    return False


@pytest.mark.parametrize("op,index", MUTANTS, ids=[f"{op}-arg{i + 1}" for op, i in MUTANTS])
def test_mutant_is_caught_and_blamed_on_numpy(op, index, catalog, references):
    cases = [c for c in catalog if differentiates_through(c, op, index)]
    assert cases, f"no catalog case differentiates through argument {index + 1} of {op}"
    engines = [mutant_engine(op, index)] + references
    verdicts = [run_case(c, "float64", engines).case for c in cases]
    caught = [v for v in verdicts if v.verdict == "FAIL" and v.blame == "numpy"]
    assert caught, f"mutant {op} arg {index + 1} passed every case: " + \
        ", ".join(f"{v.case}={v.verdict}/{v.blame}" for v in verdicts)
