"""Output-folder safety, concurrent writers, Ctrl-C, and "green means checked": exit codes,
messages, and every pre-existing file byte for byte."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

import gradcheck
import gradcheck.cli
import gradcheck.reports
from gradcheck.reports import MARKER
from helpers import CATALOG, RUN_FILES, write_case
from test_cli import console_script, read_cases, run_cli


def snapshot(folder: Path) -> dict[str, bytes]:
    """Every file under `folder` (hidden ones too) and its bytes."""
    return {
        str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()
    }


@pytest.fixture
def no_run(monkeypatch):
    """A run that must not start: the refusal has to come before it."""

    def refuse(*args, **kwargs):
        raise AssertionError("the run started")

    monkeypatch.setattr(gradcheck.cli, "run_cases", refuse)


# --- --out only replaces what gradcheck wrote, and is checked before the run ---------------------


def test_a_folder_with_the_users_files_is_refused_before_the_run(catalog, tmp_path, capsys, no_run):
    mine = tmp_path / "mine"
    write_case(mine, "notes.txt", "my notes\n")
    write_case(mine / "deep", "data.csv", "a,b\n1,2\n")
    before = snapshot(tmp_path)
    assert run_cli("run", catalog, "--out", mine) == 2
    err = capsys.readouterr().err
    assert f"usage error: {mine} holds files that gradcheck did not write" in err
    assert MARKER in err
    assert snapshot(tmp_path) == before


def test_the_case_folder_itself_is_refused(catalog, tmp_path, capsys, no_run):
    before = snapshot(tmp_path)
    assert run_cli("run", catalog, "--out", catalog) == 2
    assert "did not write" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_an_existing_file_is_refused(catalog, tmp_path, capsys, no_run):
    target = write_case(tmp_path, "report.html", "<p>keep me</p>\n")
    before = snapshot(tmp_path)
    assert run_cli("run", catalog, "--out", target) == 2
    assert f"{target} is a file, not a report folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


def test_a_folder_under_a_file_is_refused_before_the_run(catalog, tmp_path, capsys, no_run):
    blocker = write_case(tmp_path, "blocker", "a file where a folder would go\n")
    before = snapshot(tmp_path)
    assert run_cli("run", catalog, "--out", blocker / "sub" / "out") == 2
    assert f"cannot write reports under {blocker}: it is not a folder" in capsys.readouterr().err
    assert snapshot(tmp_path) == before


@pytest.mark.skipif(not Path("/proc/self").is_dir(), reason="needs a read-only /proc")
def test_an_unwritable_parent_is_refused_before_the_run(catalog, capsys, no_run):
    # /proc refuses new entries even to root, where permission bits would not
    assert run_cli("run", catalog, "--out", "/proc/gradcheck-reports/latest") == 2
    assert "cannot write reports under /proc:" in capsys.readouterr().err


def test_an_empty_folder_and_a_folder_of_an_earlier_version_are_used(catalog, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    assert run_cli("run", catalog, "--out", empty, "-k", "colah", "--engines", "numpy,fd") == 0
    assert (empty / MARKER).is_file() and (empty / "cases.csv").is_file()
    (empty / MARKER).unlink()  # as written before the marker existed
    assert run_cli("run", catalog, "--out", empty, "-k", "tanh", "--engines", "numpy,fd") == 0
    assert set(read_cases(empty)["case"]) == {"tanh-layer"}


def test_a_rendering_failure_keeps_the_csv_files(catalog, tmp_path, capsys, monkeypatch):
    def broken(result):
        raise ValueError("Unknown format code 'g' for object of type 'str'")

    monkeypatch.setattr(gradcheck.reports, "render_html", broken)
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, "--engines", "numpy,fd") == 3
    err = capsys.readouterr().err
    assert "report.html / summary.md could not be rendered (ValueError: Unknown format code" in err
    assert f"the CSV files and run.json are in {out}" in err
    assert len(read_cases(out)) == 3 and set(read_cases(out)["verdict"]) == {"PASS"}
    assert (out / "run.json").is_file() and (out / "comparisons.csv").is_file()
    assert not (out / "report.html").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cases", "out"]  # no temp left


# --- concurrent writers -------------------------------------------------------------------------


def test_concurrent_writers_in_threads_each_leave_a_complete_folder(catalog, tmp_path):
    result = gradcheck.run(
        gradcheck.load_cases([catalog]), engines=gradcheck.engines.make_engines(["numpy", "fd"])
    )
    out, errors = tmp_path / "reports" / "latest", []

    def write(rounds: int = 4) -> None:
        try:
            for _ in range(rounds):
                result.write_reports(out)
        except Exception as e:  # noqa: BLE001 -- collected and asserted below
            errors.append(e)

    threads = [threading.Thread(target=write) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert [p.name for p in out.parent.iterdir()] == ["latest"]  # nothing hidden left
    assert sorted(p.name for p in out.iterdir()) == RUN_FILES
    assert len(read_cases(out)) == 3


def test_concurrent_runs_on_one_folder(catalog, tmp_path):
    out = tmp_path / "reports" / "latest"
    argv = [
        str(console_script()),
        "run",
        str(catalog),
        "--out",
        str(out),
        "--timeout",
        "0",
        "--engines",
        "numpy,fd",
        "-q",
    ]
    runs = [
        subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    finished = [(p.wait(timeout=600), p.stderr.read()) for p in runs]
    assert finished == [(0, "")] * 3
    assert [p.name for p in out.parent.iterdir()] == ["latest"]
    assert set(read_cases(out)["verdict"]) == {"PASS"} and (out / "report.html").is_file()


# --- Ctrl-C -------------------------------------------------------------------------------------


def _children(pid: int) -> list[str]:
    """Children of every thread of `pid`: a worker is the child of the feeder thread that
    started it, not of the main thread."""
    children = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        with contextlib.suppress(OSError):  # the thread ended meanwhile
            children += (task / "children").read_text().split()
    return children


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="finds the worker in /proc")
def test_ctrl_c_while_a_worker_runs_prints_one_line_and_exits_130(catalog, tmp_path):
    previous = tmp_path / "out"
    assert run_cli("run", catalog, "--out", previous, "--engines", "numpy,fd", "-k", "colah") == 0
    before = snapshot(tmp_path)
    # the terminal sends SIGINT to the whole process group: a session of its own here
    # the whole repository catalog: still running a second after its workers started
    # and Ctrl-C's default action, as at a terminal: a shell without job control starts a
    # background job (this test suite, say) with SIGINT ignored, and children inherit that
    run = subprocess.Popen(
        [str(console_script()), "run", str(CATALOG), "--out", str(previous)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.monotonic() + 300
    while not _children(run.pid) and run.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _children(run.pid), "no worker process started"
    time.sleep(1.0)
    os.killpg(run.pid, signal.SIGINT)
    out, err = run.communicate(timeout=120)
    assert run.returncode == 130
    assert err == "interrupted: stopped by Ctrl-C\n" and "Traceback" not in out
    assert snapshot(tmp_path) == before  # the earlier reports, untouched


# --- green means checked ------------------------------------------------------------------------


@pytest.mark.parametrize("selection", [["-k", "nothing"], ["--tags", "nothing,none"]])
def test_selecting_nothing_is_a_usage_error(catalog, tmp_path, capsys, selection):
    for command in ("run", "list", "validate"):
        assert run_cli(command, catalog, *selection) == 2
        err = capsys.readouterr().err
        assert (
            f"usage error: no case selected by {selection[0]} {selection[1]!r} in {catalog}" in err
        )
    assert not (tmp_path / "reports").exists()


def test_an_empty_folder_selects_nothing(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert run_cli("run", tmp_path / "empty", "--out", tmp_path / "out") == 2
    assert "no case selected in" in capsys.readouterr().err


def test_a_case_that_could_not_be_checked_fails_the_run_unless_allowed(catalog, tmp_path, capsys):
    out = tmp_path / "out"
    args = ["run", catalog, "--out", out, "--engines", "numpy", "-k", "tanh"]  # one source
    assert run_cli(*args) == 1
    cases = read_cases(out)
    assert set(cases["verdict"]) == {"SKIP"} and len(cases) == 2
    assert set(cases["message"]) == {"fewer than two engines produced results"}
    assert "2 SKIP" in capsys.readouterr().out
    assert (
        (out / "summary.md")
        .read_text()
        .startswith("## gradcheck: 2 case runs, not all of them checked")
    )
    assert run_cli(*args, "--allow-skips") == 0


def test_a_single_engine_with_hand_values_is_a_check(catalog, tmp_path):
    out = tmp_path / "out"
    assert run_cli("run", catalog, "--out", out, "--engines", "numpy", "-k", "colah") == 0
    assert set(read_cases(out)["verdict"]) == {"PASS"}  # numpy and expect agree
    result = gradcheck.run(
        gradcheck.load_cases([catalog / "l2-wx"]), engines=gradcheck.engines.make_engines(["numpy"])
    )
    assert not result.ok and result.passed(allow_skips=True)
