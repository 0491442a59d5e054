"""Report files of a run: CSV tables, run.json, summary.md and report.html.

A run folder is written whole or not at all: everything goes to a temporary folder
beside it, which then replaces the old one, so an interrupted run never leaves a
half-written report that looks complete.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

from .html import render_html
from .markdown import render_markdown

__all__ = ["write_reports", "rerender"]


def write_reports(result, out_dir: Path) -> Path:
    """Write a `RunResult`'s data files and rendered reports into `out_dir`."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        tmp.chmod(_default_mode(0o777))    # mkdtemp's 0700 would hide the reports from others
        _write_all(result, tmp)
        _swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_all(result, folder: Path) -> None:
    result.save_data(folder)
    rerender(result, folder)


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
        os.chmod(tmp, _default_mode(0o666))    # mkstemp's 0600, as a plain open() would not
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _default_mode(mode: int) -> int:
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


def _swap(new: Path, target: Path) -> None:
    old = None
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
    os.replace(new, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
