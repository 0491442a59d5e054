"""Faults stay in their case: an engine that raises, hangs, crashes its process or lacks its
framework costs that case alone; reports are written whole or not at all."""

from __future__ import annotations

import pickle
import sys
import time

import numpy as np
import pandas as pd
import pytest

import fault_engines
import gradcheck
import reference_impls
from gradcheck import FiniteDifferences, NumpyEngine, RunOptions
from gradcheck.cli import DEFAULT_TIMEOUT, build_parser, main
from gradcheck.engines import make_engines
from gradcheck.harness import isolation
from gradcheck.loading import load_text
from reference_impls import Primitive

QUICK = "name: quick\ninputs: {a: 2.0, b: 3.0}\nexpr: tanh(a) * b\n"
SLOW = "name: slow-one\ninputs: {slow: 1.5, x: 2.0}\nexpr: slow * exp(x)\n"
WORKER = RunOptions(timeout=60)  # worker mode, a limit no healthy case comes near


def cases(*texts):
    return [case for text in texts for case in load_text(text)]


def verdicts(result) -> dict[str, str]:
    return dict(zip(result.cases["case"], result.cases["verdict"]))


def row(result, name: str):
    return result.cases.set_index("case").loc[name]


def reference_engines():
    return [NumpyEngine(), FiniteDifferences()]


# --- an engine that raises ------------------------------------------------------------------


@pytest.mark.parametrize("options", [None, WORKER], ids=["in-process", "worker"])
def test_a_raising_engine_gives_error_and_the_run_goes_on(options):
    result = gradcheck.run(
        cases(SLOW, QUICK), engines=reference_engines() + [fault_engines.Raising()], options=options
    )
    assert verdicts(result) == {"slow-one": "ERROR", "quick": "ERROR"}
    bad = row(result, "quick")
    assert bad["blame"] == "raising"
    assert "boom: a deliberate failure" in bad["message"]
    engines = result.engines.set_index(["case", "engine"])
    assert engines.loc[("quick", "numpy"), "status"] == "ok"
    assert engines.loc[("quick", "raising"), "status"] == "ERROR"


# --- an engine that hangs -------------------------------------------------------------------


def test_a_hanging_engine_is_stopped_by_the_time_limit_and_blamed():
    start = time.monotonic()
    result = gradcheck.run(
        cases(SLOW, QUICK),
        engines=reference_engines() + [fault_engines.Hanging()],
        options=RunOptions(timeout=3),
    )
    assert time.monotonic() - start < 60
    assert verdicts(result) == {"slow-one": "ERROR", "quick": "PASS"}  # a fresh worker ran it
    stopped = row(result, "slow-one")
    assert "timeout" in stopped["message"] and "hanging" in stopped["message"]
    assert stopped["blame"] == "hanging"
    status = result.engines.set_index(["case", "engine"])["status"]
    assert status[("slow-one", "numpy")] == "ok" and status[("slow-one", "hanging")] == "ERROR"


def test_a_crashing_worker_costs_one_case():
    engines = reference_engines() + [fault_engines.Crashing()]
    with isolation.CaseWorker(timeout=60) as worker:
        first = worker.run(cases(QUICK)[0], "float64", engines)
        second = worker.run(cases(QUICK)[0], "float64", reference_engines())
    assert first.case.verdict == "ERROR" and first.case.blame == "crashing"
    assert "worker process died" in first.case.message
    assert second.case.verdict == "PASS"


def test_a_run_without_a_time_limit_stays_in_this_process(monkeypatch):
    def no_workers(*args, **kwargs):
        raise AssertionError("no worker process may start without a time limit")

    monkeypatch.setattr(isolation.CaseWorker, "_started", no_workers)
    assert gradcheck.run(cases(QUICK), engines=reference_engines()).ok


# --- a missing framework --------------------------------------------------------------------


def test_a_missing_framework_is_a_skip_not_an_error():
    result = gradcheck.run(
        cases(QUICK), engines=reference_engines() + [fault_engines.MissingFramework()]
    )
    assert verdicts(result) == {"quick": "PASS"}
    engine = result.engines.set_index("engine").loc["missing"]
    assert engine.status == "SKIP" and "gradcheck_no_such_framework" in engine.message
    assert row(result, "quick")["skipped"] == "missing"


@pytest.mark.parametrize(
    "framework, engine", [("torch", gradcheck.TorchEngine), ("jax", gradcheck.JaxEngine)]
)
def test_builtin_engines_skip_when_their_framework_is_missing(monkeypatch, framework, engine):
    monkeypatch.setitem(sys.modules, framework, None)  # `import torch` now fails
    result = gradcheck.run(cases(QUICK), engines=reference_engines() + [engine()])
    assert verdicts(result) == {"quick": "PASS"}
    status = result.engines.set_index("engine").loc[framework]
    assert status["status"] == "SKIP" and framework in status["message"]


# --- what travels to a worker ---------------------------------------------------------------


def test_builtin_engines_and_cases_travel_to_a_worker():
    engines = make_engines()
    back = pickle.loads(pickle.dumps((engines, cases(QUICK))))
    assert [e.name for e in back[0]] == [e.name for e in engines]
    assert back[0][0].ops.keys() == reference_impls.OPS.keys()
    assert back[0][0].ops["tanh"] == reference_impls.OPS["tanh"]  # rules travel by name
    assert back[1][0].graph == cases(QUICK)[0].graph


def test_a_users_op_table_travels_when_its_functions_are_importable():
    ops = dict(reference_impls.OPS)
    ops["tanh"] = Primitive(np.tanh, (reference_impls.OPS["sigmoid"].grads[0],))
    back = pickle.loads(pickle.dumps(NumpyEngine(ops, name="mine")))
    assert back.ops["tanh"].forward is np.tanh and back.ops["exp"] == reference_impls.OPS["exp"]


def test_a_patched_reference_table_is_not_swapped_for_the_workers_own(monkeypatch):
    """A worker has the table as imported: an entry patched since must not be resolved by
    name there, or the worker would silently check the unpatched op."""
    monkeypatch.setitem(reference_impls.OPS, "tanh", Primitive(np.sin, (np.cos,)))
    engine = NumpyEngine()
    back = pickle.loads(pickle.dumps(engine))
    assert back.ops["tanh"].forward is np.sin
    assert back.ops["exp"] == reference_impls.OPS["exp"]


def test_an_engine_that_cannot_travel_runs_here_with_a_warning():
    engines = reference_engines() + [fault_engines.Unpicklable()]
    with pytest.warns(RuntimeWarning, match="cannot be sent to a worker"):
        result = gradcheck.run(cases(QUICK), engines=engines, options=WORKER)
    assert verdicts(result) == {"quick": "PASS"}


def test_a_case_result_pickles():
    result = gradcheck.run_case(cases(QUICK)[0], "float64", reference_engines())
    assert pickle.loads(pickle.dumps(result)).case == result.case


# --- the CLI option -------------------------------------------------------------------------


def test_cli_timeout_option():
    parse = build_parser().parse_args
    assert parse(["run"]).timeout == DEFAULT_TIMEOUT
    assert parse(["run", "--timeout", "2.5"]).timeout == 2.5
    assert parse(["run", "--timeout", "0"]).timeout == 0  # 0: in this process
    for bad in ["-1", "nan", "inf", "soon"]:
        with pytest.raises(SystemExit):
            parse(["run", "--timeout", bad])


def test_the_cli_stops_a_hanging_case_and_goes_on(tmp_path, capsys):
    for name, text in [("slow.yaml", SLOW), ("quick.yaml", QUICK)]:
        (tmp_path / name).write_text(text)
    out = tmp_path / "out"
    code = main(
        [
            "run",
            str(tmp_path),
            "--out",
            str(out),
            "--engines",
            "numpy,fd",
            "--engine",
            "fault_engines:Hanging",
            "--timeout",
            "3",
        ]
    )
    assert code == 1
    rows = pd.read_csv(out / "cases.csv").set_index("case")
    assert rows.loc["slow-one", "verdict"] == "ERROR" and rows.loc["slow-one", "blame"] == "hanging"
    assert "timeout" in rows.loc["slow-one", "message"]
    assert rows.loc["quick", "verdict"] == "PASS"


def test_a_worker_gives_the_same_rows_as_this_process():
    here = gradcheck.run(cases(SLOW, QUICK), engines=make_engines())
    there = gradcheck.run(cases(SLOW, QUICK), engines=make_engines(), options=WORKER)
    pd.testing.assert_frame_equal(here.comparisons, there.comparisons)
    pd.testing.assert_frame_equal(
        here.cases.drop(columns="seconds"), there.cases.drop(columns="seconds")
    )


# --- reports are written atomically ---------------------------------------------------------


def test_a_failure_while_writing_data_leaves_the_previous_report_intact(tmp_path, monkeypatch):
    from gradcheck.harness.result import RunResult

    out = tmp_path / "latest"
    gradcheck.run(cases(QUICK), engines=reference_engines()).write_reports(out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def broken(self, folder):
        raise OSError("disk full while writing cases.csv")

    monkeypatch.setattr(RunResult, "save_data", broken)
    second = gradcheck.run(cases(SLOW), engines=reference_engines())
    with pytest.raises(OSError, match="disk full"):
        second.write_reports(out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # no temporary folder left


def test_a_failure_while_rendering_keeps_the_new_data_files(tmp_path, monkeypatch):
    from gradcheck import reports
    from gradcheck.errors import ReportRenderError

    out = tmp_path / "latest"
    gradcheck.run(cases(QUICK), engines=reference_engines()).write_reports(out)

    def broken(result):
        raise RuntimeError("disk full while rendering")

    monkeypatch.setattr(reports, "render_html", broken)
    second = gradcheck.run(cases(SLOW), engines=reference_engines())
    with pytest.raises(
        ReportRenderError, match=r"disk full while rendering.*CSV files and run\.json"
    ):
        second.write_reports(out)
    assert set(pd.read_csv(out / "cases.csv")["case"]) == set(second.cases["case"])
    assert not (out / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["latest"]  # no temporary folder left
