"""fd's coverage of big inputs: every element up to a limit, above it seeded random
directions (J v against each engine's <g, v>) plus a per-element sample."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import gradcheck
import reference_impls
from gradcheck.engines import FiniteDifferences
from gradcheck.engines.base import constants
from gradcheck.engines.fd.batching import stacked_forward
from helpers import MILLION, engine_vjp, graph_of, load_one

rng = np.random.default_rng(5)
BIG = rng.normal(size=(20, 30))


def exact(x):
    return 3 * (1 - np.tanh(x) ** 2)


def fd_of(**options):
    _, _, _, out = engine_vjp(FiniteDifferences(**options), "sum(tanh(x) * 3)", dict(x=BIG))
    return out


@pytest.mark.parametrize(
    "options, coverage",
    [
        (dict(max_elements=100), "directional"),
        (dict(max_elements=600), "full"),
        (dict(), "full"),  # by default, at least 10^4 elements
        (dict(coverage="directional"), "directional"),
        (dict(max_elements=100, coverage="full"), "full"),
    ],
)
def test_coverage_by_size_or_by_choice(options, coverage):
    out = fd_of(**options)
    assert out.coverage["x"] == coverage
    assert ("x" in out.directions) is (coverage == "directional")
    assert bool(out.checked["x"].all()) is (coverage == "full")


def test_directional_slopes_match_the_gradient_along_each_direction():
    out = fd_of(coverage="directional", directions=5)
    found = out.directions["x"]
    assert found.vectors.shape == (5, 20, 30) and found.slopes.shape == (5,)
    along = np.tensordot(found.vectors, exact(BIG), axes=2)  # <g, v> for each v
    assert np.all(np.abs(found.slopes - along) <= found.err)
    assert np.all(found.err < 1e-6 * np.abs(along).max())
    # the per-element sample is computed, and right
    checked = out.checked["x"]
    assert 0 < checked.sum() < BIG.size
    np.testing.assert_allclose(out.grads["x"][checked], exact(BIG)[checked], rtol=1e-8)


def test_directions_are_seeded():
    first, again, other = (fd_of(coverage="directional", seed=s).directions["x"] for s in (0, 0, 1))
    assert np.array_equal(first.vectors, again.vectors)
    assert not np.allclose(first.vectors, other.vectors)


def test_a_wrong_gradient_is_off_along_the_directions():
    found = fd_of(coverage="directional").directions["x"]
    wrong = 3 * (1 - np.tanh(BIG))  # the square left out
    along = np.tensordot(found.vectors, wrong, axes=2)
    assert np.all(np.abs(found.slopes - along) > 100 * found.err)


def test_batched_and_in_place_engine_agree():
    w, x = BIG[:4], BIG[0]
    outs = [
        engine_vjp(FiniteDifferences(batched=b), "sum(tanh(w @ x))", dict(w=w, x=x))[3]
        for b in (True, False)
    ]
    for name, g in (
        ("x", w.T @ (1 - np.tanh(w @ x) ** 2)),
        ("w", np.outer(1 - np.tanh(w @ x) ** 2, x)),
    ):
        np.testing.assert_allclose(outs[0].grads[name], outs[1].grads[name], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(outs[0].grads[name], g, rtol=1e-8, atol=1e-10)


# --- batching rules: a stack through the graph gives each row's value -------------------------

A, V, M3 = rng.normal(size=(3, 4)), rng.normal(size=4), rng.normal(size=(2, 4, 3))


@pytest.mark.parametrize(
    "expr, inputs, name",
    [
        ("sum(tanh(x) * y + x / (y * y + 1))", dict(x=A, y=V), "x"),
        ("sum(tanh(x) * y)", dict(x=A, y=V), "y"),  # y broadcast
        ("softmax_cross_entropy(x, labels)", dict(x=A, labels=np.array([0, 3, 1])), "x"),  # by row
        (
            "sum(maxpool2d(conv2d(x, w, b, pad=1)) ** 2)",  # folded into N
            dict(x=rng.normal(size=(2, 1, 4, 4)), w=rng.normal(size=(2, 1, 3, 3)), b=V[:2]),
            "x",
        ),
        (
            "sum(conv2d(x, w, b, stride=2, pad=1) ** 2)",  # w stacked: into filters
            dict(x=rng.normal(size=(2, 3, 5, 4)), w=rng.normal(size=(2, 3, 3, 3)), b=V[:2]),
            "w",
        ),
        (
            "sum(conv2d(x, w, b) ** 2)",  # b stacked
            dict(x=rng.normal(size=(2, 1, 4, 4)), w=rng.normal(size=(2, 1, 3, 3)), b=V[:2]),
            "b",
        ),
        *[
            (
                "sum(conv2d(x, w, b, groups=2) ** 2)",  # groups: filters by group
                dict(x=rng.normal(size=(2, 2, 4, 4)), w=rng.normal(size=(4, 1, 3, 3)), b=V),
                name,
            )
            for name in ("x", "w", "b")
        ],
        *[
            (
                f"sum(conv2d(x, w, b, pad=1, groups={g}) ** 2)",  # image and filters: groups
                dict(x=rng.normal(size=(2, 2, 4, 3)), w=rng.normal(size=(4, 2 // g, 3, 3)), b=V),
                names,
            )
            for g in (1, 2)
            for names in (("x", "w"), ("x", "b"), ("x", "w", "b"))
        ],
        *[
            (
                "sum(rnn(x, h0, wx, wh, b) ** 2)",  # any argument stacked
                dict(x=M3, h0=A[:2], wx=A[:3], wh=rng.normal(size=(4, 4)), b=V),
                name,
            )
            for name in ("x", "h0", "wx", "wh", "b")
        ],
        *[
            (
                "sum(lstm(x, h0, c0, wx, wh, b) ** 2)",
                dict(
                    x=M3,
                    h0=A[:2, :2],
                    c0=A[1:, 2:],
                    wx=rng.normal(size=(3, 8)),
                    wh=rng.normal(size=(2, 8)),
                    b=rng.normal(size=8),
                ),
                name,
            )
            for name in ("x", "h0", "c0", "wx", "wh", "b")
        ],
        *[
            (
                "sum(batchnorm(x, gamma, beta) ** 3)",  # stack beside the channels
                dict(x=x, gamma=V[:3], beta=V[1:]),
                name,
            )
            for x in (A.T, rng.normal(size=(2, 3, 4, 2)))
            for name in ("x", "gamma", "beta")
        ],
        *[
            ("sum(layernorm(x, gamma, beta) ** 3)", dict(x=M3, gamma=V[:3], beta=V[1:]), name)
            for name in ("x", "gamma", "beta")
        ],
        *[('sum(einsum("ij,jk->ik", x, y) ** 2)', dict(x=A, y=A.T), name) for name in ("x", "y")],
        ('sum(einsum("ij,ij", x, y))', dict(x=A, y=A), "y"),  # implicit output, scalar
        ("sum(x[1, ::2, None] ** 2)", dict(x=M3), "x"),
        ("sum(x @ transpose(x))", dict(x=A), "x"),
        *[("sum(tanh(x @ w))", dict(x=M3, w=A), name) for name in ("x", "w")],  # 3-d @ 2-d
        *[
            ("sum(tanh(x @ w))", dict(x=A, w=rng.normal(size=(2, 4, 5))), name)  # 2-d @ 3-d
            for name in ("x", "w", ("x", "w"))
        ],
        *[
            ("sum(tanh(x @ w))", dict(x=M3, w=rng.normal(size=(2, 3, 5))), name)  # batched
            for name in ("x", "w", ("x", "w"))
        ],
        ("sum(sigmoid(a @ x))", dict(a=A, x=V), "x"),  # matrix @ vector
        ("sum(x @ a)", dict(x=V, a=A.T), "x"),  # vector @ matrix
        ("sum(x @ y)", dict(x=V, y=V), "x"),  # vector . vector
        ("sum(mean(x, axis=0) * max(x, axis=1, keepdims=True))", dict(x=A), "x"),
        ("sum(softmax(x, axis=0) * log_softmax(x))", dict(x=A), "x"),
        ("sum(reshape(transpose(x, axes=[0, 2, 1]), shape=[6, 4]) ** 2)", dict(x=M3), "x"),
    ],
)
def test_stacked_forward_matches_row_by_row(expr, inputs, name):
    names = (name,) if isinstance(name, str) else name
    graph = graph_of(expr, inputs)
    leaves = {k: np.asarray(v, float if k != "labels" else int) for k, v in inputs.items()}
    leaves.update(constants(graph, float))
    env = reference_impls.forward(graph, reference_impls.OPS, dict(leaves))
    order = reference_impls.topological_order(graph)
    touched = reference_impls.dependents(order, names)
    run = stacked_forward(
        graph, reference_impls.OPS, env, [n for n in order if n.name in touched], names
    )
    stacks = [env[n] + rng.normal(size=(5,) + np.shape(env[n])) * 0.1 for n in names]
    rows = [
        reference_impls.forward(
            graph, reference_impls.OPS, {**leaves, **{n: s[r] for n, s in zip(names, stacks)}}
        )[graph.output]
        for r in range(5)
    ]
    np.testing.assert_allclose(run(*stacks), rows, rtol=1e-12, atol=1e-12)


# --- directional checks in a run: caught and blamed -------------------------------------------


def tanh_rule_wrong_above(threshold: float):
    """A tanh backward that is right except where x > threshold (a few elements)."""

    def rule(g, out, x):
        return g * (1 - out * out) * np.where(x > threshold, 1.5, 1.0)

    return rule


def wrong_numpy(rule, name="numpy"):
    ops = {**reference_impls.OPS, "tanh": reference_impls.Primitive(np.tanh, (rule,))}
    return gradcheck.NumpyEngine(ops, name=name)


def fd_rows(result, param="x"):
    return {
        (r.engine_a, r.engine_b): r
        for r in result.comparisons
        if r.param == param and "fd" in (r.engine_a, r.engine_b)
    }


def test_directions_catch_what_the_sample_misses(tmp_path):
    case = load_one(
        tmp_path,
        """\
        name: directional-few-wrong
        inputs:
          x: {shape: [20, 30], seed: 3}
        expr: sum(tanh(x) * 3)
        fd_coverage: directional
        fd_max_elements: 2
        """,
    )
    wrong = wrong_numpy(tanh_rule_wrong_above(2.5))  # 4 of 600 elements
    result = gradcheck.run_case(
        case,
        "float64",
        [wrong, gradcheck.FiniteDifferences(), gradcheck.NumpyEngine(name="reference")],
    )
    rows = fd_rows(result)
    assert result.case.verdict == "FAIL" and result.case.blame == "numpy"
    bad, good = rows[("numpy", "fd")], rows[("fd", "reference")]
    assert (bad.coverage, bad.directions, bad.checked) == ("directional", 4, 2)
    # the two sampled elements agree: the directions alone fail it
    assert bad.verdict == "FAIL" and bad.message.endswith("of 4 direction(s) out of tolerance")
    assert ";" not in bad.message
    assert good.verdict == "PASS" and good.tol_ratio < 0.1


def test_run_option_chooses_directional_coverage(tmp_path):
    case = load_one(
        tmp_path,
        """\
        name: directional-by-option
        inputs:
          x: {shape: [10, 10], seed: 3}
        expr: sum(exp(x) * x)
        """,
    )
    options = gradcheck.RunOptions(fd_coverage="directional")
    result = gradcheck.run_case(
        case, "float64", [gradcheck.NumpyEngine(), gradcheck.FiniteDifferences()], options
    )
    [row] = fd_rows(result).values()
    assert (row.coverage, row.directions, row.verdict) == ("directional", 4, "PASS")


def test_a_wrong_backward_on_a_million_inputs_is_caught_and_blamed():
    [case] = gradcheck.load_cases([MILLION])
    wrong = wrong_numpy(tanh_rule_wrong_above(0.2))
    result = gradcheck.run_case(
        case,
        "float64",
        [wrong, gradcheck.FiniteDifferences(), gradcheck.NumpyEngine(name="reference")],
    )
    rows = fd_rows(result)
    assert result.case.verdict == "FAIL" and result.case.blame == "numpy"
    assert {r.coverage for r in rows.values()} == {"directional"}
    assert rows[("numpy", "fd")].verdict == "FAIL" and rows[("fd", "reference")].verdict == "PASS"


def test_a_gradient_within_tolerance_everywhere_never_fails_a_direction():
    """The directional bound is the element-wise tolerance carried through <g, v>."""
    from gradcheck.engines.base import Directions
    from gradcheck.harness.compare import Tolerance, judge_directions

    tol = Tolerance(rtol=1e-6, atol=1e-8)
    local = np.random.default_rng(0)
    g = local.normal(size=(50, 40))
    vectors = local.normal(size=(6, 50, 40))
    exact = np.tensordot(vectors, g, axes=2)
    found = Directions(vectors, exact, np.zeros(6), np.zeros(6, bool))
    # every element off by 0.9 of its own tolerance, all in the worst direction for each v
    for v in vectors:
        nudged = g + 0.9 * (tol.rtol * np.abs(g)) * np.sign(v)
        assert judge_directions(nudged, found, tol).failing == 0
    # 1e-3 too large everywhere: caught, except along a v nearly orthogonal to g
    off = judge_directions(g * (1 + 1e-3), found, tol)
    assert off.failing >= 4 and off.tol_ratio > 10
    kinked = Directions(vectors, exact + 1.0, np.zeros(6), np.ones(6, bool))
    assert judge_directions(g, kinked, tol).count == 0  # kinks along v: not judged


def test_command_line_chooses_directional_coverage_and_the_case_wins(tmp_path):
    from gradcheck.cli import main
    from helpers import write_case

    write_case(
        tmp_path / "cases",
        "a.yaml",
        """\
        name: by-the-run
        inputs:
          x: {shape: [6, 5], seed: 3}
        expr: sum(tanh(x) ** 2)
        """,
    )
    write_case(
        tmp_path / "cases",
        "b.yaml",
        """\
        name: by-the-case
        inputs:
          x: {shape: [6, 5], seed: 3}
        expr: sum(tanh(x) ** 2)
        fd_coverage: full
        """,
    )
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(tmp_path / "cases"),
            "--engines",
            "numpy,fd",
            "--fd-coverage",
            "directional",
            "--out",
            str(out),
            "--timeout",
            "0",
            "-q",
        ]
    )
    rows = pd.read_csv(out / "comparisons.csv", keep_default_na=False).query("param == 'x'")
    assert code == 0
    assert dict(zip(rows["case"], rows["coverage"])) == {
        "by-the-run": "directional",
        "by-the-case": "full",
    }
    assert dict(zip(rows["case"], rows["directions"])) == {"by-the-run": 4, "by-the-case": 0}
