"""The jax engine compiles a graph once: per structure, dtype and shapes in memory, across
processes through the cache folder; a Jacobian's rows come from one vmapped program."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest

jax = pytest.importorskip("jax")

import gradcheck  # noqa: E402
from gradcheck import JaxEngine, NumpyEngine  # noqa: E402
from gradcheck.engines import Settings, jax_cache, jax_engine  # noqa: E402
from gradcheck.harness import isolation  # noqa: E402
from gradcheck.harness.runner import _run_engine  # noqa: E402
from gradcheck.loading import load_text  # noqa: E402
from helpers import CATALOG  # noqa: E402

SOFTMAX_JACOBIAN = """\
name: softmax-jac
inputs: {x: [0.5, -1.0, 2.0]}
expr: softmax(x)
jacobian: true
dtypes: [float64, float32]
"""
TANH = "name: t\ninputs: {x: [0.3, -0.7], w: [1.5, 2.0]}\nexpr: sum(tanh(w * x))\n"


def case_of(text):
    [case] = load_text(text)
    return case


@pytest.fixture
def compiles(monkeypatch):
    """Counts compilations; the in-memory cache starts empty and jax's cache folder is put
    back afterwards."""
    count = []
    real = jax_engine._compile
    monkeypatch.setattr(jax_engine, "_compile", lambda *a: count.append(1) or real(*a))
    monkeypatch.setattr(jax_cache, "_COMPILED", type(jax_cache._COMPILED)())
    before = jax.config.jax_compilation_cache_dir
    yield count
    jax_cache.use_persistent_cache(jax, before)


def softmax_jacobian(x):
    s = np.exp(x - x.max()) / np.exp(x - x.max()).sum()
    return np.diag(s) - np.outer(s, s)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_a_jacobian_is_one_batched_program_with_the_right_rows(compiles, dtype):
    case = case_of(SOFTMAX_JACOBIAN)
    out = _run_engine(JaxEngine(cache_dir=None), case, case.arrays(dtype), Settings(dtype))
    x = np.array([0.5, -1.0, 2.0])
    np.testing.assert_allclose(
        out.grads["x"], softmax_jacobian(x), rtol=1e-12 if dtype == "float64" else 1e-5
    )
    assert out.grads["x"].dtype == dtype and out.value.shape == (3,)
    assert len(compiles) == 1  # not one program per row


def test_the_runner_uses_batched_vjp_when_an_engine_has_it():
    calls = []

    class Batched(NumpyEngine):
        def vjp(self, *args):
            raise AssertionError("the row loop must not run")

        def batched_vjp(self, graph, inputs, wrt, cotangents):
            calls.append(cotangents.copy())
            rows = [NumpyEngine.vjp(self, graph, inputs, wrt, c) for c in cotangents]
            return rows[0].value, {w: np.stack([r.grads[w] for r in rows]) for w in wrt}

    case = case_of(SOFTMAX_JACOBIAN)
    out = _run_engine(Batched(), case, case.arrays("float64"), Settings("float64"))
    [cotangents] = calls
    np.testing.assert_array_equal(cotangents, np.eye(3))
    np.testing.assert_allclose(
        out.grads["x"], softmax_jacobian(np.array([0.5, -1.0, 2.0])), rtol=1e-12
    )


def test_a_graph_of_the_same_structure_is_compiled_once_per_dtype(compiles):
    engine = JaxEngine(cache_dir=None)
    for _ in range(2):  # two loads: equal, not identical
        case = case_of(TANH)
        out = engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(compiles) == 1
    np.testing.assert_allclose(out.grads["x"], [1.5 / np.cosh(0.45) ** 2, 2.0 / np.cosh(1.4) ** 2])
    engine.vjp(case.graph, case.arrays("float32"), case.wrt, case.cotangent("float32"))
    assert len(compiles) == 2
    other = case_of(TANH.replace("tanh", "sigmoid"))
    engine.vjp(other.graph, other.arrays("float64"), other.wrt, other.cotangent("float64"))
    assert len(compiles) == 3


def test_the_in_memory_cache_is_bounded(compiles, monkeypatch):
    monkeypatch.setattr(jax_cache, "MAX_IN_MEMORY", 2)
    engine = JaxEngine(cache_dir=None)
    for op in ("tanh", "sigmoid", "exp"):
        case = case_of(TANH.replace("tanh", op))
        engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(jax_cache._COMPILED) == 2


def test_a_new_process_loads_the_program_from_the_cache_folder(compiles, tmp_path):
    case = case_of(TANH)
    engine = JaxEngine(cache_dir=tmp_path)
    first = engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(compiles) == 1 and list((tmp_path / "executables").glob("*.pkl"))
    assert jax.config.jax_compilation_cache_dir == str(tmp_path)  # jax's own cache too
    jax_cache._COMPILED.clear()  # as a fresh process starts
    again = engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(compiles) == 1  # loaded, not compiled
    np.testing.assert_array_equal(again.grads["w"], first.grads["w"])
    np.testing.assert_allclose(
        again.grads["w"], [0.3 / np.cosh(0.45) ** 2, -0.7 / np.cosh(1.4) ** 2]
    )


LOADS_BACK = """
import sys
import gradcheck
from gradcheck.engines import jax_cache
from gradcheck.engines.jax_engine import JaxEngine
loaded, load = [], jax_cache.ExecutableStore.load
def counted(self, key, device):
    program = load(self, key, device)
    loaded.append(program is not None)
    return program
jax_cache.ExecutableStore.load = counted
for case in gradcheck.load_cases(sys.argv[2:]):
    JaxEngine(cache_dir=sys.argv[1]).vjp(case.graph, case.arrays("float64"), case.wrt,
                                         case.cotangent("float64"))
print(sum(loaded), len(loaded))
"""


def test_a_program_missing_from_the_store_is_saved_again(tmp_path):
    """JAX's own cache outlives the store's entries (their keys change with gradcheck's
    code, JAX's do not); an executable that JAX loads from its cache does not load back
    once written, so the program is compiled afresh and kept: the next run loads it."""

    def run() -> list[str]:
        return subprocess.run(
            [sys.executable, "-c", LOADS_BACK, str(tmp_path), str(CATALOG / "maxpool")],
            env=isolation._worker_env(),
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()

    programs = run()[1]
    shutil.rmtree(tmp_path / "executables")  # JAX's cache stays
    assert run() == ["0", programs]
    assert run() == [programs, programs]  # every one loaded back


@pytest.fixture
def cache_events():
    """What JAX's persistent cache is asked while the test runs: each lookup's outcome."""
    events: list[str] = []

    def listen(event: str, **_) -> None:
        if event.endswith(("/cache_hits", "/cache_misses")):
            events.append(event.rsplit("/", 1)[1])

    jax.monitoring.register_event_listener(listen)
    yield events
    jax.monitoring.unregister_event_listener(listen)


def test_a_program_compiled_afresh_is_compiled_by_xla_without_jaxs_cache(
    compiles, cache_events, tmp_path
):
    """JAX decides once per process whether it uses its cache, so turning the setting off
    later only changed its keys: a second compile "afresh" loaded the first from JAX's
    cache, did not load back either, and the program was marked as never travelling (traced
    again in every run)."""
    jax_cache.use_persistent_cache(jax, tmp_path)
    x = np.linspace(-1.0, 1.0, 5)

    def compile_():
        return jax.jit(lambda v: jax.numpy.tanh(v) * 3.0).lower(x).compile()

    compile_()
    assert cache_events == ["cache_misses"]  # and now in JAX's cache
    for _ in range(2):
        afresh = jax_cache._compiled_afresh(jax, compile_)
        np.testing.assert_allclose(np.asarray(afresh(x)), np.tanh(x) * 3.0)
    assert cache_events == ["cache_misses"]  # XLA compiled both: JAX's cache was not asked
    compile_()
    assert cache_events == ["cache_misses", "cache_hits"]  # and is in use again afterwards


def test_a_program_that_does_not_travel_is_compiled_once_per_process(
    compiles, tmp_path, monkeypatch
):
    """Where no executable loads back, the first run compiles twice (the second time
    afresh) and notes it; later runs compile once and write nothing."""
    monkeypatch.setattr(jax_cache.ExecutableStore, "save", lambda *a: False)
    case, engine = case_of(TANH), JaxEngine(cache_dir=tmp_path)
    engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    marks = list((tmp_path / "executables").glob("*" + jax_cache.STAYS))
    assert len(compiles) == 2 and len(marks) == 1
    jax_cache._COMPILED.clear()  # as a fresh process starts
    out = engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(compiles) == 3
    assert float(out.value) == pytest.approx(np.tanh(0.45) + np.tanh(-1.4))


def test_a_damaged_cache_file_is_compiled_again(compiles, tmp_path):
    case = case_of(TANH)
    engine = JaxEngine(cache_dir=tmp_path)
    engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    for f in (tmp_path / "executables").glob("*.pkl"):
        f.write_bytes(b"not a program")
    jax_cache._COMPILED.clear()
    out = engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    # compiled again: from JAX's cache, and afresh where that executable does not load back
    assert len(compiles) in (2, 3)
    assert float(out.value) == pytest.approx(np.tanh(0.45) + np.tanh(-1.4))
    jax_cache._COMPILED.clear()
    compiled = len(compiles)
    engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(compiles) == compiled  # the store holds it again


def test_no_cache_folder_writes_nothing(compiles, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    case = case_of(TANH)
    JaxEngine(cache_dir=None).vjp(
        case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64")
    )
    assert jax.config.jax_compilation_cache_dir is None
    assert not list(tmp_path.rglob("*"))


@pytest.mark.parametrize(
    "setting, expected",
    [
        (None, "{xdg}/gradcheck/jax"),
        ("off", None),
        ("OFF", None),
        ("0", None),
        ("", None),
        ("{tmp}/elsewhere", "{tmp}/elsewhere"),
    ],
)
def test_the_cache_folder_setting(monkeypatch, tmp_path, setting, expected):
    monkeypatch.setattr("sys.platform", "linux")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if setting is None:
        monkeypatch.delenv(jax_cache.CACHE_ENV, raising=False)
    else:
        monkeypatch.setenv(jax_cache.CACHE_ENV, setting.format(tmp=tmp_path))
    want = expected and expected.format(xdg=tmp_path / "xdg", tmp=tmp_path)
    assert JaxEngine().cache_dir == want
    assert JaxEngine(cache_dir=tmp_path / "mine").cache_dir == tmp_path / "mine"  # option wins
    assert JaxEngine(cache_dir=None).cache_dir is None


def test_the_catalog_agrees_with_and_without_the_cache(compiles, tmp_path):
    """Loaded programs compute what compiled ones do, bit for bit."""
    cases = [
        c
        for c in gradcheck.load_cases([CATALOG / "rnn", CATALOG / "softmax"])
        if c.model.jacobian or "vjp" in c.name
    ]
    assert len(cases) >= 4
    fresh, cached = JaxEngine(cache_dir=None), JaxEngine(cache_dir=tmp_path)
    for case in cases:
        a = _run_engine(fresh, case, case.arrays("float64"), Settings("float64"))
        _run_engine(cached, case, case.arrays("float64"), Settings("float64"))
        jax_cache._COMPILED.clear()
        b = _run_engine(cached, case, case.arrays("float64"), Settings("float64"))
        for w in case.wrt:
            np.testing.assert_array_equal(a.grads[w], b.grads[w])


def test_an_edited_op_table_gets_its_own_program(compiles, tmp_path, monkeypatch):
    """A program kept for one `tanh` must not answer for another (a user's edit, or a new
    version of the table): the key names the functions that trace the graph."""
    from gradcheck.engines import jax_ops

    case = case_of(TANH)
    engine = JaxEngine(cache_dir=tmp_path)
    engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    monkeypatch.setitem(jax_ops.OPS, "tanh", jax.numpy.sin)
    jax_cache._COMPILED.clear()
    out = engine.vjp(case.graph, case.arrays("float64"), case.wrt, case.cotangent("float64"))
    assert len(compiles) == 2
    assert float(out.value) == pytest.approx(np.sin(0.45) + np.sin(-1.4))
