"""The one timing helper of the benchmarks (scripts run as `python benchmarks/NAME.py`, so
this folder is on sys.path)."""
from __future__ import annotations

import time


def best_of(fn, repeat: int = 3) -> float:
    """The fastest of `repeat` timed calls, after one untimed call that warms imports and
    compiled programs: on a shared machine the minimum is the least disturbed figure."""
    fn()
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)
