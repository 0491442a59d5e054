"""The package as it ships: `python -m build` makes an sdist and, from it, a wheel that holds
the catalog, the report templates and the accuracy table; installed into a fresh virtual
environment outside the repository, the wheel runs the catalog it carries
(`gradcheck run --catalog`) from a folder with no `cases/`, and its pytest plugin (the
`pytest11` entry point) collects a YAML case there.

The default run installs the wheel alone (`--no-deps`) into a venv without pip that sees
this environment's packages through a `.pth` file: a path a `.pth` file adds does not run
that folder's own `.pth` files, so the repository's editable install stays out, and the
test checks that `gradcheck` comes from the wheel; it lists the whole packaged catalog and
runs a part of it (the whole catalog runs from `cases/` in the same test run).
`pytest -m slow` installs the wheel with its dependencies from the package index, as a user
does (`pip install -c constraints.txt 'gradcheck-*.whl[torch,jax]' pytest`), and runs the
whole packaged catalog.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import numpy as np
import pytest

from gradcheck import load_cases
from helpers import COLAH_E, write_case

ROOT = Path(__file__).resolve().parent.parent
CATALOG = ROOT / "cases"  # gradcheck/catalog links here
TEMPLATES = ROOT / "gradcheck" / "reports" / "templates"
SUFFIXES = (".yaml", ".yml")
# not copied for the build: this environment, run outputs and the tools' caches
TOP_LEVEL_LEFT_OUT = {".git", ".venv", "build", "dist", "reports"}
LEFT_OUT = {"__pycache__", ".hypothesis", ".mypy_cache", ".ruff_cache", ".pytest_cache"}
# the cases the default run runs from the packaged catalog; `pytest -m slow` runs them all
QUICK_TAGS = "scalar,l2-wx"
# what a test process sets that would change how an inner interpreter or pytest behaves
INHERITED_NOT = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "VIRTUAL_ENV", "PYTEST_ADDOPTS")


def _ignored(folder: str, names: list[str]) -> set[str]:
    left_out = {n for n in names if n in LEFT_OUT or n.endswith(".egg-info")}
    if Path(folder) == ROOT:
        left_out |= TOP_LEVEL_LEFT_OUT.intersection(names)
    return left_out


def _env() -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in INHERITED_NOT and not k.startswith(("PYTEST_", "PYTHONBREAKPOINT"))
    }
    return {**env, "NO_COLOR": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


def _run(argv: list, cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(a) for a in argv],
        cwd=cwd,
        env=_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _ok(done: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert done.returncode == 0, (
        f"{done.args} exited {done.returncode}:\n{done.stdout}{done.stderr}"
    )
    return done


@pytest.fixture(scope="module")
def dists(tmp_path_factory) -> dict[str, Path]:
    """The sdist and the wheel `python -m build --no-isolation` makes (the wheel from the
    sdist), built from a copy of the working tree, so that the build's own files
    (`*.egg-info`, `build/`) land there and not in the repository."""
    base = tmp_path_factory.mktemp("dists")
    source, out = base / "source", base / "dist"
    shutil.copytree(ROOT, source, symlinks=True, ignore=_ignored)  # keeps gradcheck/catalog a link
    _ok(_run([sys.executable, "-m", "build", "--no-isolation", "--outdir", out, source], base))
    (wheel,), (sdist,) = out.glob("*.whl"), out.glob("*.tar.gz")
    return {"wheel": wheel, "sdist": sdist}


def _modules() -> set[str]:
    """Every module of the two packages (a folder without `__init__.py` would be left out)."""
    return {
        p.relative_to(ROOT).as_posix()
        for package in ("gradcheck", "reference_impls")
        for p in (ROOT / package).rglob("*.py")
    }


def _shipped_data() -> set[str]:
    """The data files the package must carry, as paths inside it."""
    catalog = {
        "gradcheck/catalog/" + p.relative_to(CATALOG).as_posix()
        for p in CATALOG.rglob("*")
        if p.suffix in SUFFIXES
    }
    assert len(catalog) > 50, "the catalog has gone missing from the repository"
    templates = {f"gradcheck/reports/templates/{p.name}" for p in TEMPLATES.iterdir()}
    return catalog | templates | {"gradcheck/harness/accuracy.json"}


def test_the_wheel_and_the_sdist_carry_the_catalog_templates_and_accuracy_table(dists):
    names = set(zipfile.ZipFile(dists["wheel"]).namelist())
    assert _shipped_data() - names == set()
    assert _modules() - names == set()
    # only the two packages and their metadata: no tests/ or cases/ at the top of site-packages
    tops = {n.split("/")[0] for n in names}
    assert {t for t in tops if not t.endswith(".dist-info")} == {"gradcheck", "reference_impls"}
    (entry_points,) = (n for n in names if n.endswith(".dist-info/entry_points.txt"))
    text = zipfile.ZipFile(dists["wheel"]).read(entry_points).decode()
    assert re.search(r"\[pytest11\]\s+gradcheck = gradcheck\.plugin", text), text
    assert re.search(r"\[console_scripts\]\s+gradcheck = gradcheck\.cli:main", text), text

    with tarfile.open(dists["sdist"]) as sdist:
        members = {m.name.split("/", 1)[1] for m in sdist.getmembers() if m.isfile()}
    assert (_shipped_data() | _modules()) - members == set()


def _venv_paths(python: Path) -> tuple[Path, Path]:
    """The new environment's site-packages and scripts folders, as its interpreter sees them."""
    done = _ok(
        _run(
            [
                python,
                "-c",
                "import sysconfig; p = sysconfig.get_paths(); "
                "print(p['purelib']); print(p['scripts'])",
            ],
            python.parent,
        )
    )
    purelib, scripts = done.stdout.splitlines()
    return Path(purelib), Path(scripts)


def _python_of(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _check_installed(venv: Path, work: Path, tags: str | None = None) -> None:
    """From `work` (outside the repository): gradcheck is the wheel's copy, each case of the
    packaged catalog loads, `gradcheck run --catalog` passes it (the cases with one of
    `tags`, or all), and the pytest plugin collects and runs a YAML case."""
    assert not work.resolve().is_relative_to(ROOT)
    python = _python_of(venv)
    purelib, scripts = _venv_paths(python)
    inside = purelib.resolve()

    where = _ok(_run([python, "-c", "import gradcheck; print(gradcheck.__file__)"], work))
    assert Path(where.stdout.strip()).resolve().is_relative_to(inside), where.stdout

    gradcheck = shutil.which("gradcheck", path=str(scripts))
    assert gradcheck, f"no gradcheck script in {scripts}"
    listed = _ok(_run([gradcheck, "list", "--catalog", "--format", "json"], work))
    records = json.loads(listed.stdout)
    assert {r["name"] for r in records} == {case.name for case in load_cases([CATALOG])}
    assert all(Path(r["file"]).resolve().is_relative_to(inside) for r in records)

    out = work / "catalog-run"
    selection = ["--tags", tags] if tags else []
    run = _run([gradcheck, "run", "--catalog", *selection, "--out", out, "-q"], work)
    assert run.returncode == 0, run.stdout + run.stderr
    with open(out / "cases.csv", newline="") as f:
        ran = {row["case"] for row in csv.DictReader(f)}
    wanted = set(tags.split(",")) if tags else None
    assert ran == {r["name"] for r in records if wanted is None or wanted & set(r["tags"])}
    assert (out / "report.html").stat().st_size > 0  # rendered from the packaged templates

    project = work / "project"
    write_case(project / "cases" / "scalar", "colah-e.yaml", COLAH_E)
    tests = _run(
        [python, "-m", "pytest", "-p", "no:cacheprovider", "--trace-config", "-v"], project
    )
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert "cases/scalar/colah-e.yaml::colah-e[float64] PASSED" in tests.stdout, tests.stdout
    plugin = re.search(r"<module 'gradcheck\.plugin' from '([^']+)'>", tests.stdout)
    assert plugin and Path(plugin[1]).resolve().is_relative_to(inside), tests.stdout


def test_the_wheel_works_in_a_fresh_environment_outside_the_repository(dists, tmp_path):
    """The wheel alone, its dependencies borrowed from this environment through a `.pth`."""
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", "--without-pip", venv], tmp_path))
    purelib, _ = _venv_paths(_python_of(venv))
    ours = Path(np.__file__).resolve().parent.parent  # this environment's site-packages
    (purelib / "borrowed-dependencies.pth").write_text(f"{ours}\n")
    _ok(
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "--python",
                _python_of(venv),
                "install",
                "--quiet",
                "--no-deps",
                "--no-index",
                dists["wheel"],
            ],
            tmp_path,
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    _check_installed(venv, work, tags=QUICK_TAGS)


@pytest.mark.slow
def test_the_wheel_installs_with_its_dependencies_from_the_index(dists, tmp_path):
    """What a user does: a fresh venv, the wheel with its extras, pinned by constraints.txt."""
    venv = tmp_path / "venv"
    _ok(_run([sys.executable, "-m", "venv", venv], tmp_path))
    _ok(
        _run(
            [
                _python_of(venv),
                "-m",
                "pip",
                "install",
                "--quiet",
                "-c",
                ROOT / "constraints.txt",
                f"{dists['wheel']}[torch,jax]",
                "pytest",
            ],
            tmp_path,
            timeout=3600,
        )
    )
    work = tmp_path / "work"
    work.mkdir()
    _check_installed(venv, work)
