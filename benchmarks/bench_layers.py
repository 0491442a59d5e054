"""The numpy reference's layers against torch CPU, forward + backward, one thread each.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/bench_layers.py [--dtype float32]
        [--markdown docs/tables/layers-float64.md]

Both sides run the same one-op graph the way their engines do: numpy through
`reference_impls.backprop` (every input differentiated, joint backward passes included),
torch through autograd over the torch engine's op table. Each side runs on one thread, so
its cost is measured as the CPU time of this process (`time.process_time`), which other
programs on a busy machine disturb far less than wall time; runs alternate between the two
and the best of each is kept. The ratio numpy / torch is what to read. `--markdown PATH`
also writes the table as Markdown, for the documentation.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

# one BLAS thread for numpy: read when numpy loads its BLAS, so set before the import
for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

import reference_impls  # noqa: E402
from gradcheck.engines import torch_ops  # noqa: E402
from gradcheck.ir.graph import FLOAT, Leaf, build_graph  # noqa: E402
from timing import best_of_each  # noqa: E402

# name: (expression, input shapes); conv2d and the pool at N=16, C=32, 32 x 32, 64 filters 3x3
SIZES = {
    "conv2d": (
        "conv2d(x, w, b, stride=1, pad=1)",
        {"x": (16, 32, 32, 32), "w": (64, 32, 3, 3), "b": (64,)},
    ),
    "maxpool2d": ("maxpool2d(x, size=2, stride=2)", {"x": (16, 32, 32, 32)}),
    "rnn": (
        "rnn(x, h0, wx, wh, b)",
        {"x": (16, 32, 64), "h0": (16, 128), "wx": (64, 128), "wh": (128, 128), "b": (128,)},
    ),
    "lstm": (
        "lstm(x, h0, c0, wx, wh, b)",
        {
            "x": (16, 32, 64),
            "h0": (16, 128),
            "c0": (16, 128),
            "wx": (64, 512),
            "wh": (128, 512),
            "b": (512,),
        },
    ),
}


def make_inputs(shapes: dict, dtype) -> dict:
    rng = np.random.default_rng(0)
    return {k: (0.3 * rng.standard_normal(s)).astype(dtype) for k, s in shapes.items()}


def numpy_step(expr: str, inputs: dict):
    graph = build_graph([("out", expr)], {k: Leaf(k, v.shape, FLOAT) for k, v in inputs.items()})
    node = graph.nodes[-1]
    shape = reference_impls.OPS[node.op].forward(*inputs.values(), **node.attrs).shape
    cotangent = np.ones(shape, next(iter(inputs.values())).dtype)
    return lambda: reference_impls.backprop(
        graph, reference_impls.OPS, dict(inputs), list(inputs), cotangent
    )


def torch_step(expr: str, inputs: dict):
    graph = build_graph([("out", expr)], {k: Leaf(k, v.shape, FLOAT) for k, v in inputs.items()})
    node = graph.nodes[-1]
    tensors = [torch.tensor(v, requires_grad=True) for v in inputs.values()]

    def step():
        out = torch_ops.OPS[node.op](*tensors, **node.attrs)
        return torch.autograd.grad(out, tensors, torch.ones_like(out))

    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dtype", default="float64", choices=["float64", "float32"])
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("ops", nargs="*", default=list(SIZES))
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the table here, as Markdown"
    )
    args = parser.parse_args()
    rows = ["| op | numpy ms | torch ms | numpy / torch |", "|----|---:|---:|---:|"]
    torch.set_num_threads(1)
    print(f"{'op':<10} {'numpy ms':>9} {'torch ms':>9} {'ratio':>6}   ({args.dtype}, 1 thread)")
    for op in args.ops:
        expr, shapes = SIZES[op]
        inputs = make_inputs(shapes, np.dtype(args.dtype))
        times = best_of_each(
            {"numpy": numpy_step(expr, inputs), "torch": torch_step(expr, inputs)},
            args.repeat,
            clock=time.process_time,
        )
        mine, theirs = times["numpy"], times["torch"]
        print(f"{op:<10} {mine * 1e3:9.1f} {theirs * 1e3:9.1f} {mine / theirs:6.2f}")
        rows.append(f"| {op} | {_ms(mine)} | {_ms(theirs)} | {mine / theirs:.2f} |")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(rows) + "\n")
        print(f"wrote {args.markdown}")


def _ms(seconds: float) -> str:
    """Milliseconds to two significant digits (three from 100)."""
    ms = seconds * 1e3
    return f"{ms:.0f}" if ms >= 100 else f"{ms:.2g}"


if __name__ == "__main__":
    main()
