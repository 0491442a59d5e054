"""The catalog's power: a wrong gradient rule for any op argument must FAIL at least one
catalog case, blamed on `numpy` alone.

Two kinds of mutants: every rule scaled by 1.1 (a missing or extra factor, the commonest
hand-backprop bug), checked against torch and jax on every float64 catalog case that uses
the op; and the corpus of `gradcheck mutate` (realistic bugs: a transposed matmul
gradient, a reduction that forgets its axis, fan-out gradients overwritten...), which the
catalog must kill in both dtypes.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import gradcheck
import reference_impls
from gradcheck.cli import main
from gradcheck.engines import NumpyEngine, make_engines
from gradcheck.harness.runner import RunOptions, run_case
from gradcheck.harness.verdict import FAILING
from gradcheck.power.corpus import CORPUS, EXECUTOR, all_mutants
from gradcheck.power.mutate import KILLED, REFERENCES, Replay, mutate, select
from helpers import engine_vjp, load_one

CATALOG = Path(__file__).resolve().parent.parent / "cases"
MUTANTS = [
    (op, i)
    for op, prim in sorted(reference_impls.OPS.items())
    for i, rule in enumerate(prim.grads)
    if rule is not None
]


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
    ops[op] = replace(ops[op], grads=tuple(grads))  # keeps a variadic op variadic
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
    verdicts = []
    for case in cases:  # until one catches it: the cases after it could only catch it again
        verdicts.append(run_case(case, "float64", engines).case)
        if verdicts[-1].verdict == "FAIL" and verdicts[-1].blame == "numpy":
            break
    caught = [v for v in verdicts if v.verdict == "FAIL" and v.blame == "numpy"]
    assert caught, f"mutant {op} arg {index + 1} passed every case: " + ", ".join(
        f"{v.case}={v.verdict}/{v.blame}" for v in verdicts
    )


# --- `gradcheck mutate`: the corpus of realistic bugs ------------------------------------------
# The whole matrix (every mutant on every case that uses its op) takes minutes: `-m slow`. The
# default run finds the same kills case by case, stopping at the first case that kills each
# mutant in each dtype, and checks the matrix itself on the softmax mutants and cases.


@pytest.fixture(scope="module")
def catalog_mutation(catalog):
    return mutate(catalog)


@pytest.mark.slow
def test_the_catalog_kills_every_mutant_blamed_on_numpy_alone(catalog_mutation):
    counted = catalog_mutation.counted
    survivors = counted[counted["status"] != KILLED]
    assert survivors.empty, survivors[["mutant", "status", "runs"]].to_string()
    assert catalog_mutation.kill_rate == 1.0 and catalog_mutation.ok
    assert len(counted) >= 40
    # in both dtypes, and `cases` names the cases that catch each one
    assert set(counted["killed_dtypes"]) == {"float32 float64"}
    assert counted["cases"].str.len().gt(0).all()


@pytest.mark.slow
def test_the_baseline_passes_and_the_matrix_has_one_row_per_mutant(catalog_mutation, catalog):
    check_matrix(catalog_mutation, catalog, all_mutants())


def check_matrix(result, cases, mutants):
    assert set(result.baseline["verdict"]) <= {"PASS", "NONDIFF"}
    matrix = result.matrix
    assert list(matrix["mutant"]) == [m.name for m in mutants]
    assert len(matrix.columns) == 1 + sum(len(c.dtypes) for c in cases)
    softmax_last = matrix.set_index("mutant").loc["softmax.last-axis"]
    assert softmax_last["softmax-axis0-vjp[float64]"] == "killed"
    assert softmax_last["softmax-vjp[float64]"] == "survived"  # the last axis hides it
    assert softmax_last["colah-e[float64]"] == ""  # no softmax there


def test_the_matrix_of_the_softmax_mutants_on_the_softmax_cases(catalog):
    cases = [c for c in catalog if c.name in ("softmax-axis0-vjp", "softmax-vjp", "colah-e")]
    mutants = select(["softmax."])
    assert len(cases) == 3 and mutants
    check_matrix(mutate(cases, mutants), cases, mutants)


@pytest.mark.parametrize("dtype", ["float32", "float64"])  # every dtype of the catalog
def test_every_mutant_is_killed_blamed_on_numpy_alone(dtype, catalog):
    """What the whole matrix says of each mutant, found case by case, the smallest cases
    first: in each dtype, some case whose unmutated run passes FAILs blamed on numpy alone.
    The reference engines run once per case, as in `mutate`."""
    assert sorted({d for c in catalog for d in c.dtypes}) == ["float32", "float64"]
    replays = [Replay(e) for e in make_engines(REFERENCES)]
    options = RunOptions(bounds_memo={})
    passes: dict = {}

    def kills(engine, case) -> bool:
        if case.name not in passes:  # a case that fails unmutated judges no mutant
            unmutated = run_case(case, dtype, [NumpyEngine()] + replays, options).case
            passes[case.name] = unmutated.verdict not in FAILING
        if not passes[case.name]:
            return False
        row = run_case(case, dtype, [engine] + replays, options).case
        return row.verdict in FAILING and row.blame == "numpy"

    cases = sorted(
        (c for c in catalog if dtype in c.dtypes),
        key=lambda c: sum(np.size(a) for a in c.arrays(dtype).values()),
    )
    counted = [m for m in all_mutants() if m.applicable() and not m.equivalent]
    assert len(counted) >= 40
    survivors = []
    for mutant in counted:
        engine = mutant.engine()
        if not any(kills(engine, c) for c in cases if mutant.exercised_by(c)):
            survivors.append(mutant.name)
    assert not survivors, survivors


def test_every_op_of_the_numpy_table_has_a_mutant():
    assert set(reference_impls.OPS) <= set(CORPUS)
    names = [m.name for m in all_mutants()]
    assert len(names) == len(set(names))
    assert all(m.description for m in all_mutants())
    assert len(CORPUS[EXECUTOR]) >= 4


def grad_x(engine, x):
    return engine_vjp(engine, "sum(x * x)", {"x": x})[3].grads["x"]


def test_executor_mutants_change_the_sum_over_paths():
    """d(x * x)/dx = 2x; with fan-out gradients overwritten, only one path's x is left."""
    overwrite = next(m for m in CORPUS[EXECUTOR] if m.name.endswith("fanout-overwrite"))
    x = np.array([1.5, -2.0])
    np.testing.assert_allclose(grad_x(gradcheck.NumpyEngine(), x), 2 * x)
    np.testing.assert_allclose(grad_x(overwrite.engine(), x), x)


def test_never_zeroed_buffers_add_up_across_calls():
    mutant = next(m for m in CORPUS[EXECUTOR] if m.name.endswith("never-zeroed"))
    engine, x = mutant.engine(), np.array([0.5, 1.0])
    np.testing.assert_allclose(grad_x(engine, x), 2 * x)
    np.testing.assert_allclose(grad_x(engine, x), 4 * x)
    # a fresh engine of the same mutant starts from zero again
    np.testing.assert_allclose(grad_x(mutant.engine(), x), 2 * x)


def test_an_equivalent_mutant_is_not_a_survivor(tmp_path):
    """relu'(0) = 1 is a valid subgradient: the run at the kink is NONDIFF, not a kill, and
    the mutant is reported as equivalent, not counted."""
    case = load_one(
        tmp_path,
        "name: relu-kink\n"
        "inputs: {x: [-1.0, 0.0, 2.0], w: [1.0, 3.0, -0.5]}\n"
        "expr: sum(relu(x) * w)\nwrt: [x]\n",
    )
    result = mutate(
        [case],
        [m for m in all_mutants() if m.op == "relu" and not m.tangents],
        references=[gradcheck.TorchEngine(), gradcheck.FiniteDifferences()],
    )
    status = result.mutants.set_index("mutant")["status"]
    assert status["relu.one-at-zero"] == "equivalent"
    assert status["relu.gated-by-upstream"] == "killed"
    cells = result.matrix.set_index("mutant")
    assert cells.at["relu.one-at-zero", "relu-kink[float64]"] == "survived"
    assert result.ok


def test_mutate_cli_writes_the_folder_and_exits_1_on_a_survivor(tmp_path):
    out = tmp_path / "mutants"
    code = main(
        [
            "mutate",
            str(CATALOG / "softmax" / "softmax-vjp.yaml"),
            "--mutant",
            "softmax",
            "--out",
            str(out),
            "-q",
        ]
    )
    assert code == 1  # softmax.last-axis survives a last-axis case
    rows = pd.read_csv(out / "mutants.csv", keep_default_na=False).set_index("mutant")
    assert {"mutant", "description", "killed", "blamed_alone", "cases"} <= set(rows.reset_index())
    assert rows.loc["softmax.last-axis", "status"] == "survived"
    assert not rows.loc["softmax.last-axis", "killed"]
    assert rows.loc["softmax.diagonal-only", "cases"] == "softmax-vjp"
    assert rows.index[0] == "softmax.last-axis"  # survivors first
    html = (out / "mutants.html").read_text()
    assert "softmax.last-axis" in html and "survived" in html
    assert (
        main(
            [
                "mutate",
                str(CATALOG / "softmax" / "softmax-vjp.yaml"),
                "--mutant",
                "softmax.diag",
                "--out",
                str(out),
                "-q",
            ]
        )
        == 0
    )
    for bad in (["--mutant", "no-such-op"], ["--dtypes", "float8"]):
        assert main(["mutate", str(CATALOG / "scalar"), "--out", str(out), *bad]) == 2


class CountingTorch:
    """torch's autograd, counting its calls."""

    name = "torch"

    def __init__(self):
        self.engine, self.calls = gradcheck.TorchEngine(), 0

    def vjp(self, graph, inputs, wrt, cotangent):
        self.calls += 1
        return self.engine.vjp(graph, inputs, wrt, cotangent)


def test_reference_engines_run_once_per_case_and_dtype_whatever_the_mutants(catalog):
    cases = [c for c in catalog if c.name in ("softmax-vjp", "softmax-axis0-vjp")]
    counting = CountingTorch()
    mutants = [m for m in all_mutants() if m.op in ("softmax", "log_softmax", EXECUTOR)]
    result = mutate(
        cases,
        mutants,
        dtypes=["float64", "float32"],
        references=[counting, gradcheck.FiniteDifferences()],
    )
    assert len(mutants) > 5 and counting.calls == 2 * 2
    runs = result.mutants.set_index("mutant")["runs"]
    assert runs["softmax.last-axis"] == 4 and runs["log_softmax.last-axis"] == 0
    assert result.mutants.set_index("mutant").at["log_softmax.last-axis", "status"] == "unexercised"


# a gradient sent to every element equal to the maximum: only an exact tie that is no kink
# (a value duplicated and summed back through concat) tells it from a valid rule
TIE_CASES = [
    ("max.ties-to-all", "maxpool/max-duplicated-tie.yaml"),
    ("maxpool2d.ties-to-all", "maxpool/maxpool-duplicated-rows.yaml"),
]


@pytest.mark.parametrize("name,path", TIE_CASES, ids=[n for n, _ in TIE_CASES])
def test_a_max_that_gives_every_tie_the_gradient_is_killed_by_a_structural_tie(name, path):
    case = gradcheck.load_cases([CATALOG / path])[0]
    ties = [
        m
        for m in all_mutants()
        if m.op == name.split(".")[0]
        and m.name in (name, f"{m.op}.ties-first", f"{m.op}.ties-last")
    ]
    result = mutate([case], ties)
    assert set(result.baseline["verdict"]) == {"PASS"}  # correct engines agree
    assert case.dtypes == ["float64", "float32"]
    rows = result.mutants.set_index("mutant")
    assert rows.at[name, "status"] == KILLED and rows.at[name, "blamed_alone"]
    assert rows.at[name, "killed_dtypes"] == "float32 float64"
    assert rows.at[name, "cases"] == case.name
    cells = result.matrix.set_index("mutant").loc[name]
    assert {cells[f"{case.name}[{d}]"] for d in case.dtypes} == {"killed"}  # numpy alone
    # a valid tie-breaking rule (one copy gets it all) survives the same case: no false kill
    valid = [m.name for m in ties if m.equivalent]
    assert valid and all(rows.at[v, "status"] == "equivalent" for v in valid)
    assert all(
        result.matrix.set_index("mutant").at[v, f"{case.name}[{d}]"] == "survived"
        for v in valid
        for d in case.dtypes
    )
