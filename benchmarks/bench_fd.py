"""fd against a CS231n-style per-element loop, and a 10^6-input case in directional mode.

    .venv/bin/python benchmarks/bench_fd.py [--sizes 1000 10000 100000] [--sample 500] [--repeat 3]
        [--markdown docs/tables/fd.md]

Part 1, on f(x) = sum(tanh(W @ x)), W of shape (32, n): time per checked element and peak
memory (tracemalloc, in a separate run) of
- `loop`: central differences, x[i] += h; f(); x[i] -= 2h; f(); restore (two evaluations
  per element, nothing copied);
- `differentiate`: gradcheck.differentiate on the same function written to accept a stack
  of inputs (four evaluations per element: Richardson, an error estimate, kink checks),
  batched under the default memory budget, and the same forced in place;
- `fd engine (all)`: the `fd` engine on the case's graph, every element.
Above --sample elements (default 500), the loop and `differentiate` check the same seeded
sample of elements; the engine checks all of them, up to 10^4. The ratio is against the
loop, measured in the same process, the methods timed in turn (`timing.best_of_each`, best
of --repeat); tracemalloc's peak is of another, traced run. `--markdown PATH` also writes
part 1 as a Markdown table, for the documentation.

Part 2: a case with 10^6 inputs checked in directional mode (numpy, fd, torch), then the
same with a numpy engine whose tanh rule is wrong: caught and blamed.
"""

from __future__ import annotations

import argparse
import tempfile
import textwrap
import time
import tracemalloc
from pathlib import Path

import numpy as np

import gradcheck
import reference_impls
from gradcheck.engines import FiniteDifferences, NumpyEngine, TorchEngine
from gradcheck.engines.fd import MEMORY_BUDGET
from timing import best_of_each

ROWS = 32


def loop_gradient(f, x: np.ndarray, indices: np.ndarray, h: float = 1e-5) -> np.ndarray:
    grad = np.full(x.shape, np.nan)
    for i in indices:
        old = x[i]
        x[i] = old + h
        fp = f(x)
        x[i] = old - h
        fm = f(x)
        x[i] = old
        grad[i] = (fp - fm) / (2 * h)
    return grad


def traced(run):
    """The result of `run` and its peak of traced memory."""
    tracemalloc.start()
    result = run()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return result, peak


def per_element(n: int, sample: int, repeat: int) -> dict:
    """Print each method's cost per checked element; return name -> (us/element, ratio to
    the loop, peak MiB)."""
    case = load_case(TANH_WX.format(n=n, rows=ROWS))
    arrays = case.arrays("float64")
    w, x = arrays["w"], arrays["x"]
    exact = w.T @ (1 - np.tanh(w @ x) ** 2)
    rng = np.random.default_rng(n)
    indices = np.arange(n) if n <= sample else np.sort(rng.choice(n, sample, replace=False))

    def f(v):  # one x, or a stack of them
        return np.sum(np.tanh(v @ w.T), axis=-1)

    methods = {
        "loop": lambda: loop_gradient(lambda v: float(np.sum(np.tanh(w @ v))), x.copy(), indices),
        "differentiate": lambda: gradcheck.differentiate(f, x, indices=indices).grad,
        "differentiate in place": lambda: (
            gradcheck.differentiate(f, x, indices=indices, vectorized=False).grad
        ),
    }
    if n <= 10_000:  # the engine checks every element
        engine = FiniteDifferences(max_elements=n)
        methods["fd engine (all)"] = lambda: engine.vjp(
            case.graph, arrays, ["x"], case.cotangent("float64")
        ).grads["x"]
    times = best_of_each(methods, repeat)
    base = None
    measured = {}
    for name, run in methods.items():
        grad, peak = traced(run)
        checked = n if name.endswith("(all)") else len(indices)
        cost = times[name] / checked
        base = base or cost
        error = np.max(np.abs(grad[indices] - exact[indices]))
        print(
            f"{n:>8} {name:<24}{checked:>8}{cost * 1e6:>12.2f}{cost / base:>8.2f}x"
            f"{peak / 2**20:>10.1f}{error:>12.1e}"
        )
        measured[name] = (cost * 1e6, cost / base, peak / 2**20)
    return measured


def markdown_table(measured: dict) -> str:
    """Part 1 as a Markdown table: n -> the methods' results of `per_element`."""

    def size(n: int) -> str:
        exponent = len(str(n)) - 1
        return f"10^{exponent}" if n == 10**exponent else f"{n:,}"

    lines = [
        "| n | loop us/element | `differentiate` (batched) | in place "
        "| `fd` engine, every element | peak MiB (batched / engine) |",
        "|---|---|---|---|---|---|",
    ]
    for n, m in measured.items():
        engine = m.get("fd engine (all)")
        lines.append(
            f"| {size(n)} | {m['loop'][0]:,.0f} | {m['differentiate'][1]:.2f}x "
            f"| {m['differentiate in place'][1]:.2f}x "
            f"| {f'{engine[1]:.2f}x' if engine else '(directional by default)'} "
            f"| {m['differentiate'][2]:.0f} / {f'{engine[2]:.0f}' if engine else '-'} |"
        )
    return "\n".join(lines) + "\n"


TANH_WX = """\
    name: tanh-wx
    inputs:
      w: {{shape: [{rows}, {n}], seed: 1, scale: 0.01}}
      x: {{shape: [{n}], seed: 2}}
    expr: sum(tanh(w @ x))
    wrt: [x]
    """


def load_case(text: str):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "case.yaml"
        path.write_text(textwrap.dedent(text))
        [case] = gradcheck.load_cases([path])
    return case


MILLION = Path(__file__).resolve().parent / "tanh-million.yaml"  # the tests use it too


def wrong_tanh_grad(g, out, x):
    return g * (1 - out)  # the square is missing


def directional() -> None:
    [case] = gradcheck.load_cases([MILLION])
    warm = load_case(TANH_WX.format(n=10, rows=2))  # imports and first calls, untimed
    gradcheck.run_case(warm, "float64", [NumpyEngine(), FiniteDifferences(), TorchEngine()])
    ops = {**reference_impls.OPS, "tanh": reference_impls.Primitive(np.tanh, (wrong_tanh_grad,))}
    for label, numpy_engine in (("right", NumpyEngine()), ("wrong tanh rule", NumpyEngine(ops))):
        engines = [numpy_engine, FiniteDifferences(), TorchEngine()]
        start = time.perf_counter()
        result = gradcheck.run_case(case, "float64", engines)
        seconds = time.perf_counter() - start
        fd_rows = [
            r for r in result.comparisons if r.param == "x" and "fd" in (r.engine_a, r.engine_b)
        ]
        covered = {
            f"{r.coverage} ({r.directions} directions, {r.checked} elements)" for r in fd_rows
        }
        print(
            f"10^6 inputs, {label:<16} {seconds:6.2f} s  verdict {result.case.verdict:<5}"
            f" blame {result.case.blame or '-':<6} coverage {' '.join(covered)}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[1000, 10_000, 100_000])
    parser.add_argument(
        "--sample",
        type=int,
        default=500,
        help="above this many elements, every method checks the same sample",
    )
    parser.add_argument("--repeat", type=int, default=3, help="timed calls of each, the best kept")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write part 1 here, as Markdown"
    )
    args = parser.parse_args()
    print(f"memory budget of differentiate: {MEMORY_BUDGET / 2**20:.0f} MiB")
    print(
        f"{'n':>8} {'method':<24}{'checked':>8}{'us/elem':>12}{'ratio':>9}{'peak MiB':>10}"
        f"{'max error':>12}"
    )
    measured = {n: per_element(n, min(args.sample, n), args.repeat) for n in args.sizes}
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(markdown_table(measured))
        print(f"wrote {args.markdown}")
    directional()


if __name__ == "__main__":
    main()
