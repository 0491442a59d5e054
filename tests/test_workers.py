"""Worker processes: `timeout=0` means this process; workers start from any script (no
`__main__` guard, `python -`, a REPL); N workers give the rows of a serial run, in its
order; a framework that aborts costs one case in a worker, and in this process ends the run
saying where."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest

import fault_engines
import gradcheck
from gradcheck import FiniteDifferences, NumpyEngine, RunOptions, cli
from gradcheck.cli import build_parser, main
from gradcheck.harness import isolation
from gradcheck.harness.rows import TIMING_COLUMNS
from gradcheck.loading import load_text

QUICK = "name: quick\ninputs: {a: 2.0, b: 3.0}\nexpr: tanh(a) * b\n"
OTHER = "name: other\ninputs: {x: 0.5}\nexpr: exp(x) * x\n"
ROOT = Path(__file__).resolve().parents[1]
TESTS = Path(__file__).resolve().parent


def cases(*texts):
    return [case for text in texts for case in load_text(text)]


def reference_engines():
    return [NumpyEngine(), FiniteDifferences()]


def python(args, **kwargs) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)])}
    return subprocess.run(
        [sys.executable, *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=kwargs.pop("cwd", ROOT),
        timeout=300,
        **kwargs,
    )


# --- timeout=0 means this process --------------------------------------------------------------


@pytest.mark.parametrize("timeout", [0, None])
def test_timeout_zero_or_none_runs_in_this_process(monkeypatch, timeout):
    def no_workers(*args, **kwargs):
        raise AssertionError("no worker process may start without a time limit")

    monkeypatch.setattr(isolation.CaseWorker, "_started", no_workers)
    result = gradcheck.run(
        cases(QUICK), engines=reference_engines(), options=RunOptions(timeout=timeout)
    )
    assert list(result.cases["verdict"]) == ["PASS"]
    grads = result.comparisons.set_index("param")
    assert grads.loc["b", "value_a"] == pytest.approx(0.9640275800758169)  # tanh(2)


# --- workers start from any script ------------------------------------------------------------

SCRIPT = textwrap.dedent("""\
    import gradcheck
    from gradcheck import FiniteDifferences, NumpyEngine, RunOptions
    from gradcheck.loading import load_text
    cases = load_text("name: quick\\ninputs: {a: 2.0, b: 3.0}\\nexpr: tanh(a) * b\\n")
    cases += load_text("name: other\\ninputs: {x: 0.5}\\nexpr: exp(x) * x\\n")
    result = gradcheck.run(cases, engines=[NumpyEngine(), FiniteDifferences()],
                           options=RunOptions(timeout=60), workers=2)
    print("VERDICTS", " ".join(result.cases["verdict"]))
    print("GRAD", result.comparisons.set_index("param").loc["x", "value_a"])
    """)


def _ran_in_workers(proc) -> None:
    assert proc.returncode == 0, proc.stderr
    assert "VERDICTS PASS PASS" in proc.stdout
    assert "GRAD 2.473081906" in proc.stdout  # exp(0.5) * 1.5
    assert "RuntimeWarning" not in proc.stderr  # no fallback to this process


def test_workers_start_from_a_script_without_a_main_guard(tmp_path):
    script = tmp_path / "check.py"
    script.write_text(SCRIPT)
    _ran_in_workers(python([str(script)]))


def test_workers_start_from_python_stdin():
    _ran_in_workers(python(["-"], input=SCRIPT))


def test_workers_start_from_an_interactive_session():
    _ran_in_workers(python(["-i", "-q"], input=SCRIPT))


def test_an_engine_defined_in_the_script_runs_here_with_a_note(tmp_path):
    """A worker does not import the caller's script, so it cannot rebuild its classes."""
    script = tmp_path / "mine.py"
    script.write_text(
        SCRIPT.replace(
            "engines=[NumpyEngine(), FiniteDifferences()]", "engines=[Mine(), FiniteDifferences()]"
        ).replace("cases = load_text", "class Mine(NumpyEngine):\n    pass\ncases = load_text", 1)
    )
    proc = python([str(script)])
    assert proc.returncode == 0, proc.stderr
    assert "VERDICTS PASS PASS" in proc.stdout
    assert "running in this process without a time limit" in proc.stderr


def test_workers_that_cannot_start_leave_the_run_in_this_process(monkeypatch):
    monkeypatch.setattr(isolation, "WORKER_MAIN", "import sys; sys.exit(7)")
    with pytest.warns(RuntimeWarning, match=r"did not start \(exit code 7\)"):
        result = gradcheck.run(
            cases(QUICK, OTHER),
            engines=reference_engines(),
            options=RunOptions(timeout=60),
            workers=2,
        )
    assert list(result.cases["verdict"]) == ["PASS", "PASS"]


# --- N workers give the serial run's reports -------------------------------------------------


def _tables(folder: Path) -> dict[str, pd.DataFrame]:
    return {
        name: pd.read_csv(folder / name, keep_default_na=False).drop(
            columns=list(TIMING_COLUMNS), errors="ignore"
        )
        for name in ("cases.csv", "comparisons.csv", "engines.csv")
    }


def test_two_workers_write_the_same_reports_as_one(tmp_path):
    selection = [
        str(ROOT / "cases" / "scalar"),
        str(ROOT / "cases" / "softmax"),
        str(ROOT / "cases" / "l2-wx"),
    ]
    outs = {}
    for workers in (1, 2):
        outs[workers] = tmp_path / f"w{workers}"
        code = main(
            [
                "run",
                *selection,
                "--out",
                str(outs[workers]),
                "--workers",
                str(workers),
                "--engines",
                "numpy,fd,torch",
                "-q",
            ]
        )
        assert code == 0
    one, two = _tables(outs[1]), _tables(outs[2])
    assert len(one["cases.csv"]) > 20
    for name in one:
        pd.testing.assert_frame_equal(one[name], two[name], check_exact=True)


def test_results_come_back_in_job_order_whatever_finishes_first():
    slow_first = cases(OTHER, QUICK) + cases(
        "name: big\ninputs: {x: {shape: [40, 30], init: normal}}\nexpr: sum(tanh(x))\n"
    )
    heard, labels = [], []
    result = gradcheck.run(
        slow_first,
        engines=reference_engines(),
        options=RunOptions(timeout=60),
        workers=2,
        on_result=heard.append,
        progress=labels.append,
    )
    assert list(result.cases["case"]) == ["other", "quick", "big"]
    assert sorted(r.case.case for r in heard) == ["big", "other", "quick"]  # as each ended
    assert sorted(labels) == ["big [float64]", "other [float64]", "quick [float64]"]


def test_a_case_goes_to_one_worker_in_all_its_dtypes_the_biggest_case_first():
    """One worker runs a case's dtypes one after the other: each dtype's jax programs are
    the other dtype's Hessian-vector probes, loaded there once (656 loads in the catalog
    with its dtypes on different workers, 556 on one)."""
    small, big = cases(
        QUICK, "name: big\ninputs: {x: {shape: [40, 30], init: normal}}\nexpr: sum(tanh(x))\n"
    )
    jobs = [(small, "float64"), (big, "float64"), (small, "float32"), (big, "float32")]
    assert isolation._biggest_first(jobs, workers=2) == [[1, 3], [0, 2]]
    # fewer cases than workers: each run alone, so that no worker waits
    assert isolation._biggest_first(jobs[1::2], workers=2) == [[0], [1]]


def test_a_started_pool_prepares_its_workers_before_the_first_case(tmp_path):
    marker = tmp_path / "prepared"
    pool = isolation.WorkerPool(1, 60).prepare(
        [NumpyEngine(), fault_engines.Preparing(str(marker))]
    )
    try:
        for _ in range(600):  # no case has been sent yet
            if marker.exists() and marker.read_text():
                break
            time.sleep(0.1)
        worker_pid = int(marker.read_text())
        assert worker_pid == pool.workers[0].process.pid != os.getpid()
        result = gradcheck.run(
            cases(QUICK),
            engines=[NumpyEngine(), fault_engines.Preparing(str(marker))],
            options=RunOptions(timeout=60),
            workers=pool,
        )
    finally:
        pool.stop()
    assert list(result.cases["verdict"]) == ["PASS"]
    assert pool.workers[0].process is None  # the run stopped the pool


def test_an_engine_that_fails_to_prepare_still_runs_its_cases():
    engines = [NumpyEngine(), fault_engines.Preparing("")]  # prepare() raises
    pool = isolation.WorkerPool(2, 60).prepare(engines)
    result = gradcheck.run(
        cases(QUICK, OTHER), engines=engines, options=RunOptions(timeout=60), workers=pool
    )
    assert list(result.cases["verdict"]) == ["PASS", "PASS"]
    assert set(result.engines["status"]) == {"ok"}


def test_cli_starts_workers_before_loading_only_when_every_case_runs(monkeypatch):
    monkeypatch.setattr(isolation.WorkerPool, "prepare", lambda self, engines: self)
    parse = build_parser().parse_args

    def early(*argv):
        return cli._early_workers(parse(["run", *argv]), [NumpyEngine()])

    assert len(early(str(ROOT / "cases"), "--workers", "3").workers) == 3
    assert len(early(str(ROOT / "cases"), "--workers", "500").workers) == len(
        list((ROOT / "cases").rglob("*.yaml"))
    )  # one per file at most
    assert early(str(ROOT / "cases/l2-wx")) is None  # a few files load at once
    for filtered in (["-k", "wx"], ["--tags", "rnn"], ["--timeout", "0"]):
        assert early(str(ROOT / "cases"), *filtered) is None


def test_a_few_runs_start_one_worker_and_many_one_per_core(monkeypatch):
    monkeypatch.setattr(isolation, "available_cores", lambda: 8)
    counts = [isolation.default_workers(runs) for runs in (1, 4, 5, 9, 31, 500)]
    assert counts == [1, 1, 2, 3, 8, 8]


def test_cli_workers_option():
    parse = build_parser().parse_args
    assert parse(["run"]).workers is None  # the number of cores
    assert parse(["run", "--workers", "3"]).workers == 3
    for bad in ["0", "-2", "two"]:
        with pytest.raises(SystemExit):
            parse(["run", "--workers", bad])


def test_workers_run_one_blas_thread_each():
    env = isolation._worker_env()
    assert env["OMP_NUM_THREADS"] == env["MKL_NUM_THREADS"] == env["OPENBLAS_NUM_THREADS"] == "1"
    assert "intra_op_parallelism_threads=1" in env["XLA_FLAGS"]


# --- a framework that aborts -----------------------------------------------------------------


def test_an_abort_in_a_worker_costs_one_case():
    result = gradcheck.run(
        cases(QUICK, OTHER),
        engines=reference_engines() + [fault_engines.Aborting()],
        options=RunOptions(timeout=60),
        workers=1,
    )
    rows = result.cases.set_index("case")
    for name in ("quick", "other"):
        assert rows.loc[name, "verdict"] == "ERROR" and rows.loc[name, "blame"] == "aborting"
        assert "worker process died (killed by SIGABRT)" in rows.loc[name, "message"]
    status = result.engines.set_index(["case", "engine"])["status"]
    assert status[("quick", "numpy")] == "ok" and status[("quick", "aborting")] == "ERROR"


ABORT_HERE = textwrap.dedent("""\
    import fault_engines, gradcheck
    from gradcheck import NumpyEngine, RunOptions
    from gradcheck.loading import load_text
    cases = load_text("name: quick\\ninputs: {a: 2.0, b: 3.0}\\nexpr: tanh(a) * b\\n")
    gradcheck.run(cases, engines=[NumpyEngine(), fault_engines.Aborting()],
                  options=RunOptions(timeout=0))
    print("not reached")
    """)


def test_an_abort_with_timeout_zero_ends_the_run_and_says_where():
    """`timeout=0` gives up the protection of a worker (as the README says): the process
    dies, and the Python stack printed on the way names the engine that was running."""
    proc = python(["-"], input=ABORT_HERE)
    assert proc.returncode == -signal.SIGABRT
    assert "not reached" not in proc.stdout
    assert "Fatal Python error: Aborted" in proc.stderr
    assert "fault_engines.py" in proc.stderr and "in vjp" in proc.stderr


# --- the pytest plugin under pytest-xdist ----------------------------------------------------

WRONG = "name: wrong\ninputs: {x: 0.5}\nexpr: exp(x) * x\nexpect: {grad: {x: 2.0}}\n"


def test_the_plugin_runs_under_pytest_xdist(tmp_path):
    pytest.importorskip("xdist")
    files = []
    for name, text in [("quick", QUICK), ("other", OTHER), ("wrong", WRONG)]:
        files.append(tmp_path / f"{name}.yaml")
        files[-1].write_text(text)
    proc = python(
        [
            "-m",
            "pytest",
            "-n",
            "2",
            "-p",
            "no:cacheprovider",
            "-q",
            "--gradcheck-engines",
            "numpy,fd",
            *map(str, files),
        ],
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "2 passed" in proc.stdout and "1 failed" in proc.stdout
    assert "FAIL: case wrong [float64] blame: expect" in proc.stdout  # the discrepancy table


# --- freed memory is reused, not faulted in again ------------------------------------------------

PAGE_FAULTS = """\
import resource, sys
import numpy as np
from gradcheck.harness.isolation import keep_freed_memory

def faults_per_round():
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(50):
        x = np.ones(1 << 18)         # 2 MiB, and another 2 MiB: freed, glibc trims them
        y = x + 1
        del x, y
    return (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 50

default = faults_per_round()
print(keep_freed_memory(), default, faults_per_round())
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="a glibc setting")
def test_after_keep_freed_memory_a_freed_array_is_reused_without_page_faults():
    done = python(["-c", PAGE_FAULTS])
    applied, default, kept = done.stdout.split()
    assert applied == "True", done.stderr
    assert float(default) >= 500  # 1,024 pages faulted in again, every time
    assert float(kept) < 0.1 * float(default)
