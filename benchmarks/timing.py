"""The one timing helper of the benchmarks (scripts run as `python benchmarks/NAME.py`, so
this folder is on sys.path).

Importing it gives the benchmark's process the memory setting that gradcheck's own
processes run under (the CLI, its workers, a pytest session that runs cases: freed memory
is reused rather than faulted in again), so that every side of a ratio, ours and the
frameworks', runs as it would inside gradcheck."""

from __future__ import annotations

import time

from gradcheck.harness.isolation import keep_freed_memory

keep_freed_memory()


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


def best_of_each(fns: dict, repeat: int = 3, clock=time.perf_counter) -> dict:
    """`best_of` for several functions compared with each other, their calls taken in turn
    (one of each, then again), so that a disturbance of the shared machine falls on all of
    them alike rather than on one alone; every other round in reverse order, as a call
    measurably runs slower right after another's (caches, allocator), whichever comes
    first. `clock`: wall time, or `time.process_time`."""
    for fn in fns.values():
        fn()
    times = {name: [] for name in fns}
    for round_ in range(repeat):
        for name, fn in list(fns.items())[:: 1 if round_ % 2 == 0 else -1]:
            start = clock()
            fn()
            times[name].append(clock() - start)
    return {name: min(t) for name, t in times.items()}
