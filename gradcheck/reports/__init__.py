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
import pandas as pd

from ..harness.result import RunResult
from .html import render_html
from .markdown import render_markdown

CSV_FILES = {"cases": "cases.csv", "comparisons": "comparisons.csv", "engines": "engines.csv"}


def write_reports(result: RunResult, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", dir=out_dir.parent))
    try:
        _write_all(result, tmp)
        _swap(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_all(result: RunResult, folder: Path) -> None:
    for attr, filename in CSV_FILES.items():
        getattr(result, attr).to_csv(folder / filename, index=False)
    (folder / "run.json").write_text(json.dumps(
        {**result.metadata, "counts": result.counts(), "details": result.details},
        indent=2, sort_keys=True, default=str))
    np.savez_compressed(folder / "errors.npz",
                        **{"|".join(map(str, k)): v for k, v in result.errors.items()})
    rerender(result, folder)


def rerender(result: RunResult, folder: Path) -> None:
    """The human-facing files, made from the tables alone (used by `gradcheck report`)."""
    (folder / "summary.md").write_text(render_markdown(result))
    (folder / "report.html").write_text(render_html(result))


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
    frames = {attr: pd.read_csv(folder / f, keep_default_na=False, na_values=[""])
              for attr, f in CSV_FILES.items()}
    meta = json.loads((folder / "run.json").read_text())
    details = meta.pop("details", {})
    meta.pop("counts", None)
    errors = {}
    if (folder / "errors.npz").exists():
        with np.load(folder / "errors.npz") as z:
            errors = {tuple(k.split("|")): z[k] for k in z.files}
    return RunResult(**frames, metadata=meta, errors=errors, details=details)
