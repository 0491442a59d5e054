"""The code is lint-clean, formatted and type-checked: `ruff check`, `ruff format --check`
and `mypy`, each with its settings from pyproject.toml, run from the repository root."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CHECKS = {
    "ruff check": ["ruff", "check", "--output-format", "concise", "."],
    "ruff format": ["ruff", "format", "--check", "."],
    "mypy": ["mypy"],  # its files and options are in [tool.mypy]
}


def _command(argv: list[str]) -> list[str]:
    """The tool installed beside this interpreter (the virtual environment's), else the
    module run by this interpreter."""
    tool = Path(sys.executable).parent / argv[0]
    return [str(tool), *argv[1:]] if tool.exists() else [sys.executable, "-m", *argv]


@pytest.mark.parametrize("name", list(CHECKS))
def test_the_code_passes(name):
    argv = _command(CHECKS[name])
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        findings = f"{done.stdout}{done.stderr}"
        pytest.fail(f"`{' '.join(CHECKS[name])}` exited {done.returncode}:\n{findings}", False)
