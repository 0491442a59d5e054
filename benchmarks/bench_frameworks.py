"""gradcheck's check_torch / check_jax against the frameworks' own checkers on the framework
suite (tests/framework_code.py: correct code and code with one realistic bug each).

    .venv/bin/python benchmarks/bench_frameworks.py [--markdown docs/tables/frameworks.md]

For each item, in float64 and float32: the right answer (PASS for correct code, FAIL for a
bug), gradcheck's verdict (one `check_torch` / `check_jax` call in that dtype, with the item's
reference where it has one, else fd of the function itself) and its blame, and the anchor's:
`torch.autograd.gradcheck` with its default tolerances on inputs of that dtype (an exception
is a FAIL), or for jax `jax.test_util.check_grads(fn, args, order=1, modes=["rev"])` (its
default tolerances for the dtype; an AssertionError is a FAIL). Prints a Markdown table,
the count of right verdicts per tool, and a timing line; `--markdown PATH` also writes the
counts and the rows where gradcheck and the frameworks' checkers differ, as Markdown, for
the documentation."""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import numpy as np
import torch

import framework_code as fc
import gradcheck

DTYPES = ["float64", "float32"]


def ours(item: fc.Item, dtype: str) -> tuple[str, str]:
    result = fc.check(item, [dtype])
    row = result.cases.iloc[0]
    return str(row.verdict), str(row.blame)


def _torch_function(item: fc.Item):
    """The item as a function of tensors, a module's parameters as arguments after the data."""
    if not isinstance(item.fn, torch.nn.Module):
        return item.fn, item.inputs()
    names = dict(zip(item.params(), (k for k, _ in item.fn.named_parameters())))
    data = item.inputs()

    def call(*args):
        given = dict(zip([*data, *names], args))
        params = {names[s]: given[s] for s in names}
        return torch.func.functional_call(item.fn, params, tuple(given[k] for k in data))

    return call, {**data, **item.params()}


def torch_anchor(item: fc.Item, dtype: str) -> str:
    fn, arrays = _torch_function(item)
    tensors = tuple(
        torch.tensor(a, dtype=getattr(torch, dtype), requires_grad=True) for a in arrays.values()
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # its "not double precision" warning
            ok = torch.autograd.gradcheck(fn, tensors)
    except Exception:  # noqa: BLE001 -- GradcheckError (a mismatch) or anything the code raised
        return "FAIL"
    return "PASS" if ok else "FAIL"


def jax_anchor(item: fc.Item, dtype: str) -> str:
    import jax.numpy as jnp
    from jax.test_util import check_grads

    args = tuple(jnp.asarray(a, dtype=dtype) for a in item.inputs().values())
    try:
        check_grads(item.fn, args, order=1, modes=["rev"])
    except AssertionError:
        return "FAIL"
    return "PASS"


def anchor(item: fc.Item, dtype: str) -> str:
    return (jax_anchor if item.framework == "jax" else torch_anchor)(item, dtype)


def table(markdown: Path | None = None) -> None:
    print(
        "| item | kind | bug | dtype | right answer | gradcheck (blame) | "
        "torch.autograd.gradcheck / jax check_grads |"
    )
    print("|---|---|---|---|---|---|---|")
    right = {"gradcheck": 0, "gradcheck, right blame": 0, "anchor": 0}
    wrong = []
    rows = 0
    differ = []
    for item in fc.SUITE:
        for dtype in DTYPES:
            want = "PASS" if item.correct else "FAIL"
            verdict, blame = ours(item, dtype)
            theirs = anchor(item, dtype)
            rows += 1
            right["gradcheck"] += verdict == want
            right["gradcheck, right blame"] += verdict == want and blame == (
                "" if item.correct else item.engine
            )
            right["anchor"] += theirs == want
            if verdict != want:
                wrong.append(f"{item.label} [{dtype}]: gradcheck said {verdict}, right is {want}")
            shown = f"{verdict} ({blame})" if blame else verdict
            if verdict != theirs:
                differ.append(
                    f"| {item.label} | {item.kind} | {dtype} | {want} | {shown} | {theirs} |"
                )
            anchor_name = "check_grads" if item.framework == "jax" else "autograd.gradcheck"
            print(
                f"| {item.label} | {item.kind} | {item.bug or '-'} | {dtype} | {want} | "
                f"{shown} | {theirs} ({anchor_name}) |"
            )
    print()
    print(
        f"Right verdicts of {rows}: gradcheck {right['gradcheck']} "
        f"(with the right blame: {right['gradcheck, right blame']}); "
        f"torch.autograd.gradcheck / jax check_grads {right['anchor']}"
    )
    for line in wrong:
        print(f"WRONG: {line}")
    if markdown:
        write_markdown(markdown, rows, right, differ)


def write_markdown(path: Path, rows: int, right: dict, differ: list[str]) -> None:
    """The counts of right verdicts, and the rows where gradcheck and the anchor differ."""
    lines = [
        f"| | right verdicts of {rows} | with the blame on the buggy code alone |",
        "|---|---:|---:|",
        f"| gradcheck (`check_torch` / `check_jax`, one call each) | {right['gradcheck']} | "
        f"{right['gradcheck, right blame']} |",
        f"| `torch.autograd.gradcheck` (default tolerances) / jax `check_grads` | "
        f"{right['anchor']} | - |",
        "",
        "| item | kind | dtype | right answer | gradcheck (blame) | "
        "torch.autograd.gradcheck / jax check_grads |",
        "|---|---|---|---|---|---|",
        *differ,
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    print(f"wrote {path}")


def _median_seconds(call, repeats: int = 5) -> float:
    call()  # the first call: imports, jit, op tables
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def timing() -> None:
    x = fc.x_only(0)()
    xt = torch.tensor(x["x"], requires_grad=True)
    with_ref = _median_seconds(
        lambda: gradcheck.check_torch(fc.Sigmoid.apply, x, reference="sigmoid(x)")
    )
    fd_only = _median_seconds(lambda: gradcheck.check_torch(fc.Sigmoid.apply, x))
    anchor_s = _median_seconds(lambda: torch.autograd.gradcheck(fc.Sigmoid.apply, (xt,)))
    print(
        f"\nTiming (Sigmoid Function, 6x5, float64, median of 5 after a first call): "
        f"check_torch with reference {with_ref:.4f} s ({with_ref / anchor_s:.0f}x), "
        f"check_torch fd only {fd_only:.4f} s ({fd_only / anchor_s:.0f}x), "
        f"torch.autograd.gradcheck {anchor_s:.4f} s (1x)"
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the summary tables here"
    )
    args = parser.parse_args()
    np.seterr(all="ignore")
    table(args.markdown)
    timing()
