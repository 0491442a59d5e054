"""Forward mode (`jvp`) and second order (`hvp`) of the torch, jax and fd engines.

grads[x] of a JVP is J_x u_x, the output's derivative with x alone moving along its
tangent; of an HVP it is (H u)_x, H the Hessian of <cotangent, output> over every input
at once. Checked against hand-derived products, between the engines on one catalog case
of each family in float64 (torch and jax to rounding, fd within a few of its error
estimates), against each engine's own VJP by the dot-product identity
<cotangent, J_x u_x> = <vjp_x, u_x>, and in float32 (torch and jax answer in float32).
"""

from __future__ import annotations

import numpy as np
import pytest

import gradcheck
from gradcheck.engines import FiniteDifferences, JaxEngine, TorchEngine, jax_cache, jax_engine
from gradcheck.loading.case import stable_seed
from helpers import CATALOG, assert_close, cast, graph_of

ENGINES = {"torch": TorchEngine(), "jax": JaxEngine(), "fd": FiniteDifferences()}
EXACT = ("torch", "jax")
FD_FACTOR = 4  # fd's products are held within this many of its own error estimates
# one smooth case of each family (fd judges a kink, not a slope, at a non-differentiable point)
CATALOG_CASES = {
    "scalar": "cs231n-xyz",
    "l2-wx": "l2-wx-lecture",
    "softmax": "softmax-vjp",
    "two-layer": "two-layer-tanh-mse",
    "conv2d": "conv2d-vjp",
    "rnn": "rnn-vjp",
    "lstm": "lstm-vjp",
    "layernorm": "layernorm-3d-vjp",
    "attention": "attention-multi-head",
}

rng = np.random.default_rng(20240611)
X3, U3 = np.array([0.5, -1.2, 2.0]), np.array([1.0, 0.3, -2.0])
W23, XW, UW = rng.normal(size=(2, 3)), rng.normal(size=3), rng.normal(size=(2, 3))
A4, B4, UA4, UB4, C4 = (rng.normal(size=4) for _ in range(5))


def l2_wx_products(w, x, uw, ux):
    """f = sum((W x)^2): the JVPs along U (W moving) and v (x moving), and H (U, v)."""
    q = w @ x
    jvps = {"w": 2 * q @ (uw @ x), "x": 2 * q @ (w @ ux)}
    dq = uw @ x + w @ ux  # q's derivative, both moving
    hvps = {"w": 2 * np.outer(dq, x) + 2 * np.outer(q, ux), "x": 2 * uw.T @ q + 2 * w.T @ dq}
    return jvps, hvps


# name: (expression, inputs, tangents, cotangent or None for a scalar, hand JVPs, hand HVPs)
HAND = {
    "cube": ("x ** 3", dict(x=X3), dict(x=U3), C4[:3], {"x": 3 * X3**2 * U3}, None),
    "sum-cube": ("sum(x ** 3)", dict(x=X3), dict(x=U3), None, None, {"x": 6 * X3 * U3}),
    "product": (
        "a * b",
        dict(a=A4, b=B4),
        dict(a=UA4, b=UB4),
        C4,
        {"a": UA4 * B4, "b": A4 * UB4},
        {"a": C4 * UB4, "b": C4 * UA4},  # the cross terms: both move at once
    ),
    "l2-wx": (
        "sum((w @ x) ** 2)",
        dict(w=W23, x=XW),
        dict(w=UW, x=U3),
        None,
        *l2_wx_products(W23, XW, UW, U3),
    ),
}


def run(engine, product, graph, arrays, wrt, cotangent, tangents):
    if product == "jvp":
        return engine.jvp(graph, arrays, wrt, tangents)
    return engine.hvp(graph, arrays, wrt, cotangent, tangents)


def hand_case(name, dtype="float64"):
    expr, inputs, tangents, cotangent, *expected = HAND[name]
    graph = graph_of(expr, inputs)
    cotangent = np.ones(()) if cotangent is None else cotangent
    return graph, cast(inputs, dtype), cast(tangents, dtype), np.asarray(cotangent, dtype), expected


STATED = [(name, "jvp") for name, case in HAND.items() if case[4] is not None] + [
    (name, "hvp") for name, case in HAND.items() if case[5] is not None
]


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("name, product", STATED)
def test_hand_derived_products(engine, name, product):
    graph, arrays, tangents, cotangent, (jvps, hvps) = hand_case(name)
    expected = jvps if product == "jvp" else hvps
    out = run(ENGINES[engine], product, graph, arrays, list(arrays), cotangent, tangents)
    for w, want in expected.items():
        if engine in EXACT:
            assert_close(out.grads[w], want, rtol=1e-12, atol=1e-14, what=f"{engine} {w}")
        else:
            assert np.all(np.abs(out.grads[w] - want) <= out.grad_err[w]), f"fd {w}"
            assert_close(out.grads[w], want, rtol=1e-7, atol=1e-9, what=f"fd {w}")
            assert out.checked[w].all() and not out.kinks[w].any()


@pytest.fixture(scope="module")
def catalog():
    cases = gradcheck.load_cases([CATALOG / family for family in CATALOG_CASES])
    return {c.name: c for c in cases if c.name in CATALOG_CASES.values()}


def tangents_of(case, arrays):
    """Seeded random tangents of each differentiated input's shape and dtype."""
    seeded = np.random.default_rng(stable_seed(case.name, "<tangents>"))
    return {
        w: seeded.standard_normal(np.shape(arrays[w])).astype(arrays[w].dtype) for w in case.wrt
    }


def products_of(case, dtype, engines, product):
    arrays, cotangent = case.arrays(dtype), case.cotangent(dtype)
    tangents = tangents_of(case, arrays)
    return {
        e: run(ENGINES[e], product, case.graph, arrays, case.wrt, cotangent, tangents)
        for e in engines
    }


def assert_relatively_close(actual, expected, rtol, what):
    """Within rtol of the largest element of `expected` (a product's small elements are
    sums that cancel: their rounding is that of the large ones)."""
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1e-300)
    worst = float(np.max(np.abs(np.asarray(actual, np.float64) - expected), initial=0.0))
    assert worst <= rtol * scale, f"{what}: off by {worst:.3g}, {worst / scale:.3g} relatively"


def assert_within_fd_error(out, expected: dict, what: str):
    for w, want in expected.items():
        gap = np.abs(out.grads[w] - want)
        # what float64 keeps of the exact engines' own sums
        allowed = FD_FACTOR * out.grad_err[w] + 1e-12 * np.max(np.abs(want), initial=0.0)
        assert np.all(gap <= allowed), f"{what} {w}: {np.max(gap / allowed):.3g} x allowed"
        assert out.checked[w].all() and not out.kinks[w].any(), f"{what} {w}"


@pytest.mark.parametrize("product, rtol", [("jvp", 1e-10), ("hvp", 1e-9)])
@pytest.mark.parametrize("name", list(CATALOG_CASES.values()))
def test_engines_agree_on_the_catalog(catalog, name, product, rtol):
    case = catalog[name]
    outs = products_of(case, "float64", ENGINES, product)
    torch_grads = outs["torch"].grads
    for w in case.wrt:
        # a JVP is shaped like the output, an HVP like its input
        shape = case.graph.output_shape if product == "jvp" else case.graph.inputs[w].shape
        assert all(np.shape(out.grads[w]) == tuple(shape) for out in outs.values()), w
        assert_relatively_close(outs["jax"].grads[w], torch_grads[w], rtol, f"jax {w}")
    assert_relatively_close(outs["jax"].value, outs["torch"].value, 1e-12, "value")
    assert_within_fd_error(outs["fd"], torch_grads, f"fd {product} of {name}")


@pytest.mark.parametrize("engine", list(ENGINES))
@pytest.mark.parametrize("name", list(CATALOG_CASES.values()))
def test_a_jvp_and_the_vjp_agree_on_the_dot_product(catalog, name, engine):
    """<cotangent, J_x u_x> = <vjp_x, u_x>, each side from the same engine."""
    case, e = catalog[name], ENGINES[engine]
    arrays, cotangent = case.arrays("float64"), case.cotangent("float64")
    tangents = tangents_of(case, arrays)
    jvp = e.jvp(case.graph, arrays, case.wrt, tangents)
    vjp = gradcheck.engines.as_output(e.vjp(case.graph, arrays, case.wrt, cotangent))
    for w in case.wrt:
        forward_terms, reverse_terms = cotangent * jvp.grads[w], vjp.grads[w] * tangents[w]
        forward, reverse = np.sum(forward_terms), np.sum(reverse_terms)
        terms = np.sum(np.abs(forward_terms)) + np.sum(np.abs(reverse_terms))
        if engine in EXACT:
            allowed = 1e-12 * terms
        else:  # each side within its own error estimates
            err = np.sum(np.abs(cotangent) * jvp.grad_err[w]) + np.sum(
                np.abs(tangents[w]) * vjp.grad_err[w]
            )
            allowed = FD_FACTOR * err + 1e-12 * terms
        assert abs(forward - reverse) <= allowed, f"{engine} {w}: {forward} != {reverse}"


@pytest.mark.parametrize("product", ["jvp", "hvp"])
@pytest.mark.parametrize("engine", EXACT)
@pytest.mark.parametrize("name", ["two-layer-tanh-mse", "conv2d-vjp", "lstm-vjp"])
def test_float32_products_are_float32(catalog, name, engine, product):
    case = catalog[name]
    single = products_of(case, "float32", [engine], product)[engine]
    double = products_of(case, "float64", [engine], product)[engine]
    assert single.value.dtype == np.float32
    for w in case.wrt:
        assert single.grads[w].dtype == np.float32
        # float32 inputs and tangents are float64's rounded: the products differ by that
        assert_relatively_close(single.grads[w], double.grads[w], 1e-4, f"{engine} {w}")


def test_fd_flags_a_kink_in_the_output_element_it_is_in():
    """relu at an input exactly 0: the JVP of that output element is at a kink, the others
    are smooth and exact."""
    x = np.array([0.5, 0.0, -1.0])
    graph = graph_of("relu(x) * 2", dict(x=x))
    out = ENGINES["fd"].jvp(graph, dict(x=x), ["x"], dict(x=np.array([1.0, 1.0, 1.0])))
    np.testing.assert_array_equal(out.kinks["x"], [False, True, False])
    np.testing.assert_allclose(out.grads["x"][[0, 2]], [2.0, 0.0], atol=1e-9)


def test_differentiate_an_array_valued_function():
    """`vector_valued=True`: the Jacobian, x's axes first, with an error estimate per entry."""
    x = np.array([0.3, -0.8, 1.1])
    found = gradcheck.differentiate(lambda v: np.sin(v) * v[..., :1], x, vector_valued=True)
    jacobian = np.diag(np.cos(x) * x[0])  # d out_j / d x_i, i first
    jacobian[0] += np.sin(x)
    assert found.grad.shape == found.checked.shape == (3, 3)
    assert np.all(np.abs(found.grad - jacobian) <= found.err)
    np.testing.assert_allclose(found.grad, jacobian, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("vectorized", [True, False])
def test_an_array_valued_function_may_hand_back_its_argument(vectorized):
    """The identity returns the very array (or stack) fd then moves on: its values are
    kept as they were when returned."""
    x = np.array([0.3, -0.8, 1.1])
    found = gradcheck.differentiate(lambda v: v, x, vector_valued=True, vectorized=vectorized)
    np.testing.assert_allclose(found.grad, np.eye(3), atol=1e-9)


def test_each_product_is_compiled_once_and_apart(monkeypatch):
    """jax keeps one program per product of a graph: none answers for another."""
    compiled = []
    real = jax_engine._compile
    monkeypatch.setattr(jax_engine, "_compile", lambda *a: compiled.append(a[3]) or real(*a))
    monkeypatch.setattr(jax_cache, "_COMPILED", type(jax_cache._COMPILED)())
    engine = JaxEngine(cache_dir=None)
    graph, arrays, tangents, cotangent, (jvps, hvps) = hand_case("product")
    for _ in range(2):
        vjp = engine.vjp(graph, arrays, ["a", "b"], cotangent)
        jvp = engine.jvp(graph, arrays, ["a", "b"], tangents)
        hvp = engine.hvp(graph, arrays, ["a", "b"], cotangent, tangents)
    assert compiled == ["vjp", "jvp", "hvp"]
    np.testing.assert_allclose(vjp.grads["a"], cotangent * arrays["b"], rtol=1e-14)
    np.testing.assert_allclose(jvp.grads["a"], jvps["a"], rtol=1e-14)
    np.testing.assert_allclose(hvp.grads["a"], hvps["a"], rtol=1e-14)
