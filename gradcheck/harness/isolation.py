"""Cases in a worker process, so that a hung or crashing engine costs one case, not the run.

One reusable worker (multiprocessing 'spawn': no inherited locks or framework threads)
runs cases one at a time with `run_case`, telling the parent as each engine starts. When
a case's time limit passes, the parent kills the worker, blames the engine that was
running, and starts a fresh worker for the next case.

Requests travel pickled: cases, options and the built-in engines are plain data, and op
tables are named functions. An engine that does not pickle (a lambda in a user's table)
runs in this process instead, with a warning and no time limit.
"""
from __future__ import annotations

import contextlib
import multiprocessing
import pickle
import signal
import time
import warnings
from typing import Callable, Iterator

from .runner import CaseResult, RunOptions, error_result, run_case

STARTUP_SECONDS = 120       # importing gradcheck in a fresh process; not a case's time


@contextlib.contextmanager
def case_runner(options: RunOptions | None) -> Iterator[Callable[..., CaseResult]]:
    """`run_case` itself when there is no time limit, else a worker's `run`."""
    if options is None or options.timeout is None:
        yield run_case
        return
    with CaseWorker(options.timeout) as worker:
        yield worker.run


class CaseWorker:
    def __init__(self, timeout: float):
        self.timeout = timeout
        self.process = self.conn = None
        self._warned = False

    def __enter__(self) -> "CaseWorker":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def run(self, case, dtype: str, engines: list, options: RunOptions | None = None) -> CaseResult:
        try:
            request = pickle.dumps((case, dtype, engines, options))
        except Exception as e:  # noqa: BLE001 -- any object may refuse to pickle, any way
            return self._in_process(e, case, dtype, engines, options)
        conn = self._started()
        conn.send_bytes(request)
        return self._await(conn, case, dtype, engines)

    def close(self) -> None:
        if self.process is not None:
            self.conn.close()
            self.process.kill()
            self.process.join()
        self.process = self.conn = None

    def _in_process(self, error, case, dtype, engines, options) -> CaseResult:
        # a user's engine with lambdas in it cannot reach a worker: run it here, unguarded
        if not self._warned:
            warnings.warn(f"engines cannot be sent to a worker process ({error}); running "
                          "in this process without a time limit", RuntimeWarning, stacklevel=3)
            self._warned = True
        return run_case(case, dtype, engines, options)

    def _started(self):
        if self.process is None or not self.process.is_alive():
            self.close()
            context = multiprocessing.get_context("spawn")
            conn, child = context.Pipe()
            process = context.Process(target=serve, args=(child,), daemon=True,
                                      name="gradcheck-worker")
            with _sigint_ignored():      # inherited: the worker starts deaf to Ctrl-C
                process.start()
            child.close()
            self.process, self.conn = process, conn
            self._handshake()
        return self.conn

    def _handshake(self) -> None:
        try:
            ready = self.conn.poll(STARTUP_SECONDS) and self.conn.recv() == ("ready", None)
        except (EOFError, OSError):
            ready = False
        if not ready:
            self.close()
            raise RuntimeError(
                "the worker process did not start (a script that runs cases with a time "
                "limit needs the `if __name__ == '__main__':` guard of multiprocessing)")

    def _await(self, conn, case, dtype, engines) -> CaseResult:
        deadline, started = time.monotonic() + self.timeout, []
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not conn.poll(left):
                return self._stopped(case, dtype, engines, started,
                                     f"timeout: no result within {self.timeout:g} s")
            try:
                kind, payload = conn.recv()
            except (EOFError, OSError):
                return self._stopped(case, dtype, engines, started,
                                     f"worker process died (exit code {self._exit_code()})")
            if kind == "engine":
                started.append(payload)
            else:
                return payload if kind == "result" else self._failed(case, dtype, engines,
                                                                      started, payload)

    def _stopped(self, case, dtype, engines, started, why: str) -> CaseResult:
        self.close()                     # the next case gets a fresh worker
        culprit = started[-1] if started else None
        message = why + (f" while engine {culprit!r} was running" if culprit else "")
        return error_result(case, dtype, engines, message, culprit, tuple(started[:-1]))

    @staticmethod
    def _failed(case, dtype, engines, started, message: str) -> CaseResult:
        # run_case catches engines' exceptions itself, so this is the harness's: blame none
        return error_result(case, dtype, engines, message, None, tuple(started))

    def _exit_code(self):
        self.process.join(timeout=5)
        return self.process.exitcode


@contextlib.contextmanager
def _sigint_ignored():
    """Ctrl-C reaches the whole process group; the parent handles it and kills the worker.
    A worker still importing its modules would print a traceback of its own, so it is
    started with SIGINT ignored (a disposition that survives exec, unlike a handler)."""
    try:
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:           # not the main thread: signals are not ours to change
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def serve(conn) -> None:
    """The worker's loop: one pickled request in, engine announcements and a result out."""
    # Ctrl-C reaches the whole process group: the parent handles it and kills this worker
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    conn.send(("ready", None))
    while True:
        try:
            case, dtype, engines, options = pickle.loads(conn.recv_bytes())
        except EOFError:
            return
        conn.send(_answer(conn, case, dtype, engines, options))


def _answer(conn, case, dtype, engines, options) -> tuple[str, object]:
    try:
        result = run_case(case, dtype, engines, options,
                          announce=lambda name: conn.send(("engine", name)))
        pickle.dumps(result)             # a result that cannot travel is this case's error
        return "result", result
    except Exception as e:  # noqa: BLE001 -- the fault stays in this case
        return "failed", f"{type(e).__name__}: {e}"
