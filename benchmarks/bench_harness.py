"""The whole harness against the one-engine checkers people run today, in one process, one
thread per library, warm, best of 5 (`cases`: the checkers of a case timed in turn) or 3.

    .venv/bin/python benchmarks/bench_harness.py cases     # catalog cases with >= 100 inputs
    .venv/bin/python benchmarks/bench_harness.py cases --modes rev --order 1   # like for like
    .venv/bin/python benchmarks/bench_harness.py scaling   # L2 of W x, n = 8 .. 1024
    .venv/bin/python benchmarks/bench_harness.py workers   # catalog wall time, 1 and 2 workers
    .venv/bin/python benchmarks/bench_harness.py checks [CASE ...]   # what two checks cost

`cases`: per catalog case (float64) with at least 100 differentiated elements, one harness
run of the case (numpy, fd, torch, jax, comparisons) against torch.autograd.gradcheck in
its slow mode (every element's column of the Jacobian by finite differences) and its fast
mode (one random direction), and jax.test_util.check_grads (reverse mode, a random
direction), each on the same function, built from the case's graph with the engines' own
op tables: the case's output contracted with its seeded cotangent (the VJP the harness
checks), or the output itself for a Jacobian case. `coverage` is how many elements each
checks one by one. Read the ratios: the machine is shared.

`checks`: on the smallest cases (or those named), the harness in full, without the Taylor
test, and without the Taylor test and the rounding bound, each against torch's slow mode.

`cases`, `scaling` and `checks` take `--markdown PATH`: the table also written as Markdown,
for the documentation (docs/tables/harness-cases.md, harness-scaling.md, harness-checks.md).
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy, torch and jax start their thread pools
os.environ["XLA_FLAGS"] = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import math  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

import gradcheck  # noqa: E402
from gradcheck.engines import make_engines  # noqa: E402
from gradcheck.engines.base import constants  # noqa: E402
from gradcheck.ir.graph import interpret  # noqa: E402
from gradcheck.loading import load_text  # noqa: E402
from timing import best_of_each  # noqa: E402

MIN_INPUTS = 100
SLOW_MODE_LIMIT = 20_000  # elements: torch's slow mode above this takes minutes


def framework_function(case, table, to_array, contract):
    """The case's function of its differentiated inputs, interpreted with one engine's op
    table; the output contracted with the case's cotangent unless it asks for a Jacobian."""
    arrays = case.arrays("float64")
    fixed = {k: to_array(v) for k, v in arrays.items() if k not in case.wrt}
    fixed.update({k: to_array(v) for k, v in constants(case.graph, "float64").items()})
    cotangent = None if case.jacobian else to_array(case.cotangent("float64"))

    def f(*xs):
        out = interpret(case.graph, table, {**fixed, **dict(zip(case.wrt, xs))})[case.graph.output]
        return out if cotangent is None else contract(out, cotangent)

    return f, [arrays[w] for w in case.wrt]


def torch_call(case, fast: bool):
    """torch.autograd.gradcheck of the case's function, as a call to time."""
    import torch

    from gradcheck.engines.torch_ops import OPS

    f, xs = framework_function(case, OPS, torch.from_numpy, lambda out, c: (out * c).sum())
    leaves = [torch.tensor(x, requires_grad=True) for x in xs]
    return lambda: torch.autograd.gradcheck(f, leaves, fast_mode=fast, raise_exception=False)


def jax_call(case):
    """jax's check_grads of the case's function, as a call to time."""
    import jax
    import jax.numpy as jnp
    from jax.test_util import check_grads

    from gradcheck.engines.jax_ops import OPS

    jax.config.update("jax_enable_x64", True)
    f, xs = framework_function(case, OPS, jnp.asarray, lambda out, c: jnp.sum(out * c))
    args = [jnp.asarray(x) for x in xs]

    def check():
        with contextlib.suppress(AssertionError):  # a kink in the direction: timed all the same
            check_grads(f, args, order=1, modes=["rev"])

    return check


def harness_split(case, engines, options=None) -> tuple[int, dict]:
    """How many elements fd checked in a harness run of the case (its VJP, as the checkers
    it is timed against check), and each engine's seconds in that run."""
    result = gradcheck.run_case(case, "float64", engines, options)
    checked = {
        r.param: r.checked
        for r in result.comparisons
        if "fd" in (r.engine_a, r.engine_b) and r.param in case.wrt and r.product == "vjp"
    }
    return sum(checked.values()), {r.engine: r.seconds for r in result.engines}


def inputs_of(case) -> int:
    return sum(int(np.prod(case.graph.inputs[w].shape)) for w in case.wrt)


def compare_case(case, engines, repeat: int = 3, options=None) -> dict:
    """Every checker timed on the case, their calls in turn (timing.best_of_each).
    `options`: the harness's RunOptions (modes, order); None, the case's own."""
    n = inputs_of(case)
    calls = {
        "harness": lambda: gradcheck.run_case(case, "float64", engines, options),
        "torch_fast": torch_call(case, True),
        "jax_check_grads": jax_call(case),
    }
    if n <= SLOW_MODE_LIMIT:
        calls["torch_slow"] = torch_call(case, False)
    times = {"torch_slow": float("nan"), **best_of_each(calls, repeat)}
    fd_checked, split = harness_split(case, engines, options)
    return {
        "case": case.name,
        "inputs": n,
        "fd_checked": fd_checked,
        **times,
        "ratio": times["harness"] / times["torch_slow"],
        "split": split,
    }


def print_rows(rows: list[dict]) -> None:
    print(
        f"{'case':<28}{'inputs':>8}{'fd checks':>10}{'harness':>10}{'torch slow':>12}"
        f"{'torch fast':>12}{'jax check':>11}{'harness/slow':>14}   harness: ms per engine"
    )
    for r in rows:
        print(
            f"{r['case']:<28}{r['inputs']:>8}{r['fd_checked']:>10}{r['harness'] * 1e3:>8.1f}ms"
            f"{r['torch_slow'] * 1e3:>10.1f}ms{r['torch_fast'] * 1e3:>10.1f}ms"
            f"{r['jax_check_grads'] * 1e3:>9.1f}ms{r['ratio']:>13.2f}x   "
            + " ".join(f"{e} {t * 1e3:.1f}" for e, t in r["split"].items())
        )
    print(
        "coverage, elements checked one by one: harness = numpy, torch, jax every element, "
        "fd as shown; torch slow = every element; torch fast and jax = one random direction"
    )


def markdown_rows(rows: list[dict], first: str = "case", label=lambda r: r["case"]) -> str:
    """The rows of `compare_case` as a Markdown table; `first` names the first column."""

    def ms(seconds: float) -> str:
        return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f} ms"

    lines = [
        f"| {first} | inputs | fd checks | harness | torch slow | torch fast "
        "| jax check_grads | harness / slow |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        ratio = "-" if math.isnan(r["ratio"]) else f"{r['ratio']:.2f}x"
        lines.append(
            f"| {label(r)} | {r['inputs']:,} | {r['fd_checked']:,} | {ms(r['harness'])} "
            f"| {ms(r['torch_slow'])} | {ms(r['torch_fast'])} | {ms(r['jax_check_grads'])} "
            f"| {ratio} |"
        )
    return "\n".join(lines) + "\n"


def write_markdown(path: Path | None, text: str) -> None:
    if path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")


def cmd_cases(args) -> None:
    engines = make_engines()
    cases = [
        c
        for c in gradcheck.load_cases(args.paths)
        if inputs_of(c) >= MIN_INPUTS and "float64" in c.dtypes
    ]
    modes = args.modes.split(",") if args.modes else None
    options = gradcheck.RunOptions(modes=modes, order=args.order)
    rows = [compare_case(case, engines, args.repeat, options) for case in cases]
    print_rows(rows)
    write_markdown(args.markdown, markdown_rows(rows))


L2_WX = """\
name: l2-wx-{n}
inputs:
  W: {{shape: [{n}, {n}], init: normal, seed: 1}}
  x: {{shape: [{n}], init: normal, seed: 2}}
expr: sum((W @ x) ** 2)
"""


def cmd_scaling(args) -> None:
    engines = make_engines()
    rows = []
    for n in args.sizes:
        [case] = load_text(L2_WX.format(n=n))
        rows.append(compare_case(case, engines))
    print_rows(rows)
    write_markdown(args.markdown, markdown_rows(rows, "n", lambda r: r["case"].rsplit("-", 1)[1]))


def cmd_workers(args) -> None:
    """The README's catalog command, warm (a first run fills the compile cache)."""
    with tempfile.TemporaryDirectory() as out:
        command = [sys.executable, "-m", "gradcheck", "run", *args.paths, "-q", "--out", out]
        subprocess.run(command + ["--workers", "2"], capture_output=True, check=False)
        for workers in (1, 2):
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                subprocess.run(
                    command + ["--workers", str(workers)], capture_output=True, check=False
                )
                times.append(time.perf_counter() - start)
            print(
                f"{' '.join(args.paths)}, both dtypes, {workers} worker(s): best of {args.repeat} "
                f"{min(times):.2f} s wall"
            )


def harness_without(case, engines, taylor: bool, rounding: bool):
    """One harness run of the case, as a call to time, optionally without the Taylor test
    or the rounding bound (the comparisons then fall back to the fixed tolerance tables)."""
    from gradcheck.harness import runner

    bounds = runner._rounding_bounds

    def call():
        runner._rounding_bounds = bounds if rounding else (lambda *args: None)
        try:
            gradcheck.run_case(case, "float64", engines, gradcheck.RunOptions(taylor=taylor))
        finally:
            runner._rounding_bounds = bounds

    return call


def cmd_checks(args) -> None:
    """The harness against torch's slow mode in full, without the Taylor test, and without
    both the Taylor test and the rounding bound: what those checks cost on the smallest
    cases, where the fixed costs decide the ratio."""
    engines = make_engines()
    lines = [
        "| case | torch slow | harness | without the Taylor test "
        "| without it and the rounding bound |",
        "|---|---:|---:|---:|---:|",
    ]
    for case in gradcheck.load_cases(["cases"]):
        if case.name not in args.names:
            continue
        t = best_of_each(
            {
                "slow": torch_call(case, False),
                "full": harness_without(case, engines, True, True),
                "no_taylor": harness_without(case, engines, False, True),
                "neither": harness_without(case, engines, False, False),
            },
            args.repeat,
        )
        print(
            f"{case.name:<28} torch slow {t['slow'] * 1e3:6.1f} ms   harness/slow: full "
            f"{t['full'] / t['slow']:.2f}x   no Taylor {t['no_taylor'] / t['slow']:.2f}x   "
            f"no Taylor, no rounding bound {t['neither'] / t['slow']:.2f}x"
        )
        lines.append(
            f"| {case.name} | {t['slow'] * 1e3:.1f} ms | {t['full'] / t['slow']:.2f}x "
            f"| {t['no_taylor'] / t['slow']:.2f}x | {t['neither'] / t['slow']:.2f}x |"
        )
    write_markdown(args.markdown, "\n".join(lines) + "\n")


SMALLEST = [
    "batchnorm-spatial-vjp",
    "conv2d-1x1",
    "dropout-two-layer",
    "two-layer-tanh-mse",
    "rnn-softmax-every-step",
    "attention-softmax-over-queries",
    "maxpool-global-max",
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="what", required=True)
    cases = sub.add_parser("cases")
    cases.add_argument("paths", nargs="*", default=["cases"])
    cases.add_argument("--repeat", type=int, default=5, help="timed calls of each, the best kept")
    cases.add_argument(
        "--modes", help="rev and/or fwd for every case (rev: like for like with the checkers)"
    )
    cases.add_argument("--order", type=int, choices=(1, 2), help="2: Hessian-vector products")
    cases.set_defaults(func=cmd_cases)
    scaling = sub.add_parser("scaling")
    scaling.add_argument(
        "--sizes", type=int, nargs="*", default=[8, 16, 32, 64, 128, 256, 512, 1024]
    )
    scaling.set_defaults(func=cmd_scaling)
    workers = sub.add_parser("workers")
    workers.add_argument("paths", nargs="*", default=["cases"])
    workers.add_argument("--repeat", type=int, default=3)
    workers.set_defaults(func=cmd_workers)
    checks = sub.add_parser("checks")
    checks.add_argument("names", nargs="*", default=SMALLEST)
    checks.add_argument("--repeat", type=int, default=7)
    checks.set_defaults(func=cmd_checks)
    for command in (cases, scaling, checks):
        command.add_argument(
            "--markdown", type=Path, metavar="PATH", help="also write the table here, as Markdown"
        )
    args = parser.parse_args()
    args.func(args)


if __name__ == "__main__":
    main()
