"""Report files of a run: CSV tables, run.json, summary.md and report.html.

A run folder is written whole or not at all: everything goes to a temporary folder
beside it, which then replaces the old one, so an interrupted run never leaves a
half-written report that looks complete.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np

from ..harness.result import RunResult
from .html import render_html
from .markdown import render_markdown
from .tables import CSV_FILES, read_table, write_table

__all__ = ["write_reports", "rerender", "read_run", "read_table", "CSV_FILES"]


def write_reports(result: RunResult, out_dir: Path) -> Path:
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


def _write_all(result: RunResult, folder: Path) -> None:
    for attr, filename in CSV_FILES.items():
        write_table(getattr(result, attr), folder / filename)
    (folder / "run.json").write_text(json.dumps(
        {**result.metadata, "counts": result.counts(), "details": result.details},
        indent=2, sort_keys=True, default=str), encoding="utf-8")
    np.savez_compressed(folder / "errors.npz",
                        **{"|".join(map(str, k)): v for k, v in result.errors.items()})
    rerender(result, folder)


def rerender(result: RunResult, folder: Path) -> None:
    """The human-facing files, made from the tables alone (used by `gradcheck report`)."""
    folder = Path(folder)
    _write_atomic(folder / "summary.md", render_markdown(result))
    _write_atomic(folder / "report.html", render_html(result))


def _write_atomic(path: Path, text: str) -> None:
    """Write beside `path`, then rename over it: a reader (a browser, a CI step) sees the
    old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
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


def read_run(folder: str | Path) -> RunResult:
    """Load a run folder back into a `RunResult`, without recomputing anything."""
    folder = Path(folder)
    frames = {attr: read_table(folder / f) for attr, f in CSV_FILES.items()}
    meta = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    details = meta.pop("details", {})
    meta.pop("counts", None)
    errors = {}
    if (folder / "errors.npz").exists():
        with np.load(folder / "errors.npz") as z:
            errors = {tuple(k.split("|")): z[k] for k in z.files}
    return RunResult(**frames, metadata=meta, errors=errors, details=details)
