"""Time each engine on the catalog, as a ratio to the numpy engine in the same process.

    .venv/bin/python benchmarks/bench_engines.py [cases/] [--repeat 5]

Machines here are shared and noisy: read the ratios, not the seconds, and compare runs
made on the same machine. Each engine is warmed up once per case before timing.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gradcheck
from gradcheck.engines import make_engines


def time_engine(engine, case, dtype, repeat: int) -> float:
    arrays, cotangent = case.arrays(dtype), case.cotangent(dtype)
    engine.vjp(case.graph, arrays, case.wrt, cotangent)  # warm-up: imports, jit caches
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        engine.vjp(case.graph, arrays, case.wrt, cotangent)
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("paths", nargs="*", default=["cases"])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--dtype", default="float64")
    args = parser.parse_args()
    engines = make_engines()
    print(f"{'case':<32}" + "".join(f"{e.name:>12}" for e in engines) + "   (x numpy; numpy in ms)")
    totals = {e.name: 0.0 for e in engines}
    for case in gradcheck.load_cases(args.paths):
        times = {e.name: time_engine(e, case, args.dtype, args.repeat) for e in engines}
        base = times["numpy"]
        cells = [f"{base * 1e3:>10.2f}ms"] + [
            f"{times[e.name] / base:>11.1f}x" for e in engines[1:]
        ]
        print(f"{case.name:<32}" + "".join(cells))
        for name, t in times.items():
            totals[name] += t
    base = totals["numpy"]
    print(
        f"{'TOTAL':<32}"
        + f"{base * 1e3:>10.2f}ms"
        + "".join(f"{totals[e.name] / base:>11.1f}x" for e in engines[1:])
    )


if __name__ == "__main__":
    main()
