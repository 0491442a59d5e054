"""Cases in worker processes, so that a hung or crashing engine costs one case, not the run,
and so that cases run side by side on several cores.

`run_jobs` runs case x dtype jobs in this process (no time limit) or over `workers`
reusable worker processes, each fed by a thread of this process, and returns the results
in the jobs' order whatever order they finished in. A worker runs one case at a time with
`run_case`, telling the parent as each engine starts. When a case's time limit passes, the
parent kills that worker, blames the engine that was running, and starts a fresh one.

A worker is a fresh interpreter started with `python -c` on a socket: it imports gradcheck
and nothing of the caller's script, so a script without an `if __name__ == "__main__":`
guard, `python -`, a notebook or a REPL can all use workers. It runs one BLAS thread (and
one XLA thread), so that workers do not compete for cores and every worker computes the
same numbers as any other.

Requests travel pickled: cases, options and the built-in engines are plain data, and op
tables are named functions. An engine that does not pickle (a lambda in a user's table), or
that a worker cannot import (a class defined in the caller's script), runs in this process
instead, with a warning and no time limit; so does everything when workers cannot start.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import functools
import io
import json
import os
import pickle
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection

import numpy as np

from .runner import CaseResult, RunOptions, error_result, run_case

STARTUP_SECONDS = 120  # importing gradcheck in a fresh process; not a case's time
# measured on 2 cores: 14 small runs (l2-wx) take as long in one worker as in two, at 60% of
# the CPU; 9 heavier ones (two-layer) take 17% less time in two. At 4 runs a worker, both
# get two, and the 2-3 runs of one case get one.
JOBS_PER_WORKER = 4
ONE_THREAD = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
XLA_ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
WORKER_MAIN = (
    "import json, sys; sys.path[:] = json.loads(sys.argv[2]); "
    "from gradcheck.harness.isolation import serve_socket; serve_socket(int(sys.argv[1]))"
)


_HERE = threading.Lock()  # cases that fall back to this process run one at a time

# glibc gives large freed blocks back to the system (those it mapped apart, and the heap's top
# beyond a threshold), and the next array of that size faults its pages in again (~4 us per
# 4 KiB page on a virtual machine): a conv2d's temporaries cost more in page faults than in
# arithmetic. Blocks up to 32 MiB (glibc's largest setting) come from the heap instead, which
# keeps up to 256 MiB of freed memory.
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameter numbers
KEEP_FREED = {M_MMAP_THRESHOLD: 32 << 20, M_TRIM_THRESHOLD: 256 << 20}


@functools.cache
def keep_freed_memory() -> bool:
    """Let this process reuse freed memory instead of faulting it in afresh (glibc only;
    elsewhere nothing happens). Numbers are unchanged: only where arrays live. Once per
    process: later calls return the first one's answer."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):
        return False
    answers = [mallopt(param, value) for param, value in KEEP_FREED.items()]  # every one runs
    return all(answer == 1 for answer in answers)


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def run_jobs(
    jobs: list,
    engines: list,
    options: RunOptions | None = None,
    workers: int | WorkerPool | None = None,
    report: Callable[[CaseResult, str], None] | None = None,
) -> list:
    """Run `(case, dtype)` jobs; `workers` processes (default: `default_workers`) when
    `options.timeout` is set, else one after another in this process. `workers` may also
    be a pool already started (`WorkerPool.prepare`): this run uses it, then stops it.
    `report(result, label)` hears of each run as it ends."""
    report = report or (lambda result, label: None)
    timeout = options.timeout if options else None
    if not timeout or not _travels(engines):
        if isinstance(workers, WorkerPool):
            workers.stop()
        with crash_traces():
            return [
                _reported(run_case(case, dtype, engines, options), case, dtype, report)
                for case, dtype in jobs
            ]
    if not isinstance(workers, WorkerPool):
        workers = WorkerPool(min(workers or default_workers(len(jobs)), len(jobs)) or 1, timeout)
    return workers.run(jobs, engines, options, report)


def default_workers(jobs: int) -> int:
    """A worker per JOBS_PER_WORKER jobs, at most one per core: each worker's start
    (importing torch and jax) costs seconds of CPU, more than a few small cases take."""
    return max(1, min(available_cores(), -(-jobs // JOBS_PER_WORKER)))


@contextlib.contextmanager
def crash_traces() -> Iterator[None]:
    """In this process a framework that aborts (XLA on a failed check) ends the run, with
    no reports: at least print the Python stack on the way, which names the engine."""
    if faulthandler.is_enabled():
        yield
        return
    try:
        faulthandler.enable()
    except (AttributeError, ValueError, io.UnsupportedOperation):  # stderr without a file
        yield
        return
    try:
        yield
    finally:
        faulthandler.disable()


def _reported(result: CaseResult, case, dtype: str, report) -> CaseResult:
    report(result, f"{case.name} [{dtype}]")
    return result


def _travels(engines) -> bool:
    try:
        pickle.dumps(engines)
        return True
    except Exception as e:  # noqa: BLE001 -- any object may refuse to pickle, any way
        warnings.warn(
            f"engines cannot be sent to a worker process ({e}); running in this "
            "process without a time limit",
            RuntimeWarning,
            stacklevel=4,
        )
        return False


class WorkerPool:
    """`count` workers, each driven by a thread that takes the next job when it is free."""

    def __init__(self, count: int, timeout: float):
        self.workers = [CaseWorker(timeout) for _ in range(count)]

    def prepare(self, engines: list) -> WorkerPool:
        """Start the workers now, each importing what `engines` need (torch, jax), so that
        they are ready when the caller has loaded its cases (`gradcheck run` does this)."""
        for worker in self.workers:
            threading.Thread(
                target=worker.prepare, args=(engines,), daemon=True, name="gradcheck-prepare"
            ).start()
        return self

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()

    def run(self, jobs, engines, options, report) -> list:
        todo: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        done: queue.SimpleQueue[tuple[int, CaseResult]] = queue.SimpleQueue()
        for runs in _biggest_first(jobs, len(self.workers)):  # long cases do not start last
            todo.put(runs)
        threads = [
            threading.Thread(
                target=self._drive,
                daemon=True,
                name="gradcheck-feeder",
                args=(worker, jobs, todo, done, engines, options),
            )
            for worker in self.workers
        ]
        results: list[CaseResult | None] = [None] * len(jobs)
        try:
            for thread in threads:
                thread.start()
            for _ in jobs:
                i, result = done.get()
                case, dtype = jobs[i]
                results[i] = _reported(result, case, dtype, report)
        finally:
            self.stop()
        return results

    @staticmethod
    def _drive(worker, jobs, todo, done, engines, options) -> None:
        while True:
            try:
                runs = todo.get_nowait()
            except queue.Empty:
                return
            for i in runs:
                try:
                    done.put((i, _run_job(worker, jobs[i], engines, options)))
                except Stopped:
                    return


def _run_job(worker: CaseWorker, job, engines, options) -> CaseResult:
    """One (case, dtype) on `worker`; a fault of the harness itself is that run's ERROR."""
    case, dtype = job
    try:
        return worker.run(case, dtype, engines, options)
    except Stopped:
        raise
    except Exception as e:  # noqa: BLE001 -- the harness's own fault, in this run only
        return error_result(case, dtype, engines, f"{type(e).__name__}: {e}", None)


def _biggest_first(jobs, workers: int) -> list[list[int]]:
    """The jobs of each case together (one worker runs a case in all its dtypes: a dtype's
    jax programs are the other dtype's Hessian-vector probes, loaded once), the cases with
    the most input elements first; each job alone where there are fewer cases than
    `workers`, so that none of them waits."""
    by_case: dict[int, list[int]] = {}
    for i, (case, _) in enumerate(jobs):
        by_case.setdefault(id(case), []).append(i)
    if len(by_case) < workers:
        by_case = {i: [i] for i in range(len(jobs))}

    def size(runs):
        return sum(int(np.prod(leaf.shape)) for leaf in jobs[runs[0]][0].graph.inputs.values())

    return sorted(by_case.values(), key=lambda runs: -size(runs))


class Stopped(Exception):
    """The pool was stopped (Ctrl-C, or the run is over) while this worker was starting."""


class CaseWorker:
    """One worker process, started when first needed and again after it was stopped."""

    def __init__(self, timeout: float):
        self.timeout = timeout
        self.process: subprocess.Popen | None = None
        self.conn: Connection | None = None
        self.in_process: str | None = None  # why cases run here instead, once they must
        self._warned = False
        self.stopped = False
        self._starting = threading.Lock()  # `prepare` and the feeder both start the process

    def __enter__(self) -> CaseWorker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def prepare(self, engines: list) -> None:
        """Start the process and have it import what `engines` need before its first case.
        Silent: a failure here recurs, and is reported, when that case is sent."""
        try:
            request = _request("prepare", engines)
            with self._starting:
                if self.in_process is None and not self.stopped:
                    self._started().send_bytes(request)
        except Exception:  # noqa: BLE001 -- e.g. unpicklable engines: the case says so
            pass

    def run(self, case, dtype: str, engines: list, options: RunOptions | None = None) -> CaseResult:
        try:
            request = _request("case", (case, dtype, engines, options))
            with self._starting:
                conn = self._started() if self.in_process is None else None
        except Exception as e:  # noqa: BLE001 -- unpicklable engines, a worker that will not start
            if self.stopped:  # killed by `stop` while starting: no fallback, no warning
                raise Stopped() from None
            self.in_process = self.in_process or str(e)
        if self.in_process is not None or conn is None:  # conn is None only in the first case
            return self._here(case, dtype, engines, options)
        conn.send_bytes(request)
        return self._await(conn, case, dtype, engines, options)

    def stop(self) -> None:
        """For good: a feeder thread still starting this worker gives up quietly."""
        self.stopped = True
        self.close()

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        if self.process is not None:
            self.process.kill()
            self.process.wait()
        self.process = self.conn = None

    def _here(self, case, dtype, engines, options) -> CaseResult:
        if not self._warned:
            warnings.warn(
                f"cases cannot run in a worker process ({self.in_process}); running "
                "in this process without a time limit",
                RuntimeWarning,
                stacklevel=4,
            )
            self._warned = True
        with _HERE:  # one case at a time, as a serial run would
            return run_case(case, dtype, engines, options)

    def _started(self) -> Connection:
        if self.conn is not None and self.process is not None and self.process.poll() is None:
            return self.conn
        self.close()  # a first start, or the process ended: a fresh one
        ours, theirs = socket.socketpair()
        with theirs:
            self.process = subprocess.Popen(
                [sys.executable, "-c", WORKER_MAIN, str(theirs.fileno()), json.dumps(sys.path)],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=_worker_env(),
                start_new_session=True,
            )  # Ctrl-C reaches the parent alone: it kills us
        conn = self.conn = Connection(ours.detach())
        self._handshake(conn)
        return conn

    def _handshake(self, conn: Connection) -> None:
        try:
            ready = conn.poll(STARTUP_SECONDS) and conn.recv() == ("ready", None)
        except (EOFError, OSError):
            ready = False
        if not ready:
            code = self._exit_code()
            self.close()
            raise RuntimeError(f"the worker process did not start ({_ended(code)})")

    def _await(self, conn, case, dtype, engines, options) -> CaseResult:
        deadline = time.monotonic() + self.timeout
        started: list[str] = []  # the engines the worker began, in order
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not conn.poll(left):
                return self._stopped(
                    case, dtype, engines, started, f"timeout: no result within {self.timeout:g} s"
                )
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                return self._stopped(
                    case,
                    dtype,
                    engines,
                    started,
                    f"worker process died ({_ended(self._exit_code())})",
                )
            if kind == "engine":
                started.append(payload)
            elif kind == "unloadable":  # the worker cannot import what was sent
                self.in_process = payload
                return self._here(case, dtype, engines, options)
            else:
                return (
                    payload
                    if kind == "result"
                    else self._failed(case, dtype, engines, started, payload)
                )

    def _stopped(self, case, dtype, engines, started, why: str) -> CaseResult:
        self.close()  # the next case gets a fresh worker
        culprit = started[-1] if started else None
        message = why + (f" while engine {culprit!r} was running" if culprit else "")
        return error_result(case, dtype, engines, message, culprit, tuple(started[:-1]))

    @staticmethod
    def _failed(case, dtype, engines, started, message: str) -> CaseResult:
        # run_case catches engines' exceptions itself, so this is the harness's: blame none
        return error_result(case, dtype, engines, message, None, tuple(started))

    def _exit_code(self) -> int | None:
        if self.process is None:
            return None
        try:
            return self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            return None


def _ended(code) -> str:
    if code is None:
        return "still running"
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"


def _worker_env() -> dict:
    env = {**os.environ, **ONE_THREAD}
    env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {XLA_ONE_THREAD}".strip()
    return env


def serve_socket(fd: int) -> None:
    """The worker's loop: one pickled request in, engine announcements and a result out.
    A parent that went away (Ctrl-C while this worker was still starting) ends it quietly."""
    keep_freed_memory()
    conn = Connection(fd)
    try:
        _serve(conn)
    except (EOFError, BrokenPipeError, ConnectionResetError):
        return


def _request(kind: str, payload) -> bytes:
    """A request to a worker: its kind, and its payload pickled apart, so that a worker that
    cannot load the payload still knows what was asked."""
    return pickle.dumps((kind, pickle.dumps(payload)))


def _serve(conn: Connection) -> None:
    conn.send(("ready", None))
    while True:
        kind, payload = pickle.loads(conn.recv_bytes())
        try:
            request = pickle.loads(payload)
        except Exception as e:  # noqa: BLE001 -- e.g. a class only the caller's script defines
            if kind == "case":
                conn.send(("unloadable", f"{type(e).__name__}: {e}"))
            continue
        if kind == "prepare":
            _prepare(request)
        else:
            conn.send(_answer(conn, *request))


def _prepare(engines: list) -> None:
    """What a worker does before its first case: each engine's optional `prepare()` (import
    its framework). No answer: a failure here recurs, and is reported, in that case."""
    for engine in engines:
        with contextlib.suppress(Exception):  # any engine, any failure
            getattr(engine, "prepare", lambda: None)()


def _answer(conn, case, dtype, engines, options) -> tuple[str, object]:
    try:
        result = run_case(
            case, dtype, engines, options, announce=lambda name: conn.send(("engine", name))
        )
        pickle.dumps(result)  # a result that cannot travel is this case's error
        return "result", result
    except Exception as e:  # noqa: BLE001 -- the fault stays in this case
        return "failed", f"{type(e).__name__}: {e}"
