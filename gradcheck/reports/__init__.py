"""Report files of a run: CSV tables, run.json, summary.md and report.html.

A run folder is written whole or not at all: everything goes to a temporary folder
beside it, which then replaces the old one, so an interrupted run never leaves a
half-written report that looks complete. Only a folder that gradcheck wrote (it holds
the `.gradcheck-run` marker) is ever replaced; anything else is refused, before a run
when the caller asks `check_out_dir` first.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import tempfile
import uuid
from pathlib import Path

from ..errors import ReportDirError, ReportRenderError
from .html import render_html
from .markdown import render_markdown

__all__ = [
    "write_reports",
    "rerender",
    "check_out_dir",
    "MARKER",
    "ReportDirError",
    "ReportRenderError",
]

MARKER = ".gradcheck-run"
LEGACY_KEYS = {"seed", "versions", "counts"}  # run.json of a folder written before the marker
LEGACY_RUN_JSON_BYTES = 64_000_000


def check_out_dir(out_dir: str | Path) -> Path:
    """`out_dir` if reports can go there: a new folder under a writable one, an empty folder,
    or a folder that gradcheck wrote. Anything else raises `ReportDirError` saying why."""
    out_dir = Path(out_dir)
    _check_replaceable(out_dir)
    _check_writable(_nearest_existing(out_dir.parent))
    return out_dir


def _check_replaceable(out_dir: Path) -> None:
    """Looked at once (lstat, then its entries): another writer may be swapping the folder
    in this very moment, and a folder that is gone has nothing to protect."""
    try:
        mode = out_dir.lstat().st_mode
    except (FileNotFoundError, NotADirectoryError):  # the parent is checked next
        return
    if stat.S_ISLNK(mode):
        raise ReportDirError(f"{out_dir} is a symbolic link; name a real folder")
    if not stat.S_ISDIR(mode):
        raise ReportDirError(f"{out_dir} is a file, not a report folder; it is left as it is")
    try:
        entries = set(os.listdir(out_dir))
    except FileNotFoundError:  # swapped away by another writer since the lstat
        return
    if entries and MARKER not in entries and not _legacy_run_folder(out_dir, entries):
        raise ReportDirError(
            f"{out_dir} holds files that gradcheck did not write (no {MARKER} marker); "
            "its files are left as they are: name a new or empty folder"
        )


def _legacy_run_folder(out_dir: Path, entries: set[str]) -> bool:
    run_json = out_dir / "run.json"
    if (
        "run.json" not in entries
        or not run_json.is_file()
        or run_json.stat().st_size > LEGACY_RUN_JSON_BYTES
    ):
        return False
    try:
        meta = json.loads(run_json.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.keys() >= LEGACY_KEYS


def _nearest_existing(folder: Path) -> Path:
    folder = folder.absolute()
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder


def _check_writable(folder: Path) -> None:
    """Try it: permission bits do not tell (root, read-only mounts, ACLs)."""
    if not folder.is_dir():
        raise ReportDirError(f"cannot write reports under {folder}: it is not a folder")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".gradcheck-probe.", dir=folder))
    except OSError as e:
        raise ReportDirError(f"cannot write reports under {folder}: {e.strerror or e}") from None


def write_reports(result, out_dir: Path) -> Path:
    """Write the run folder. The data files come first: if report.html or summary.md
    cannot be rendered, the folder is still put in place and `ReportRenderError` says so."""
    out_dir = check_out_dir(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(_default_mode(0o777))  # mkdtemp's 0700 would hide the reports from others
        _write_data(result, tmp)
        problem = _try_render(result, tmp)
        with _turn_at(out_dir.parent):
            check_out_dir(out_dir)  # again: the folder may have appeared meanwhile
            _swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if problem:
        raise ReportRenderError(f"{problem}; the CSV files and run.json are in {out_dir}")
    return out_dir


def _write_data(result, folder: Path) -> None:
    (folder / MARKER).write_text(
        "written by gradcheck run; gradcheck may replace this folder\n", encoding="utf-8"
    )
    result.save_data(folder)


def _try_render(result, folder: Path) -> str:
    try:
        rerender(result, folder)
    except Exception as e:  # noqa: BLE001 -- whatever breaks a renderer, the data is kept
        return f"report.html / summary.md could not be rendered ({type(e).__name__}: {e})"
    return ""


def rerender(result, folder: Path) -> None:
    """The human-facing files, made from the tables alone (used by `gradcheck report`)."""
    folder = Path(folder)
    _write_atomic(folder / "summary.md", render_markdown(result))
    _write_atomic(folder / "report.html", render_html(result))


def _write_atomic(path: Path, text: str) -> None:
    """Write beside `path`, then rename over it: a reader (a browser, a CI step) sees the
    old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        # a lone surrogate in case text is shown escaped rather than costing the report
        with os.fdopen(fd, "w", encoding="utf-8", errors="backslashreplace") as f:
            f.write(text)
        os.chmod(tmp, _default_mode(0o666))  # mkstemp's 0600, as a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _default_mode(mode: int) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def _turn_at(folder: Path):
    """Writers into one parent folder take turns at the swap: renaming a folder over one
    that another writer has just put in place fails ("Directory not empty"). The lock is
    on the folder itself, so no lock file is left behind."""
    try:
        import fcntl
    except ImportError:  # no flock (Windows): the swap is unguarded
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def _swap(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{uuid.uuid4().hex[:12]}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
