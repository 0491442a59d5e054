"""The documentation site builds with `mkdocs build --strict` (no broken link, no missing
table, no docstring it cannot render), its op vocabulary lists every op of the registry as
the registry has them, and the README stays a short front page that links into the docs."""

from __future__ import annotations

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from gradcheck.ir.ops import OPS, describe_ops

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MAX_README_LINES = 200


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    for module in ("mkdocs", "material", "mkdocstrings"):
        pytest.importorskip(module, reason="the docs extra: pip install -e '.[docs]'")
    out = tmp_path_factory.mktemp("site")
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def table_rows(page: str) -> list[tuple[str, str]]:
    """(first cell, second cell) of every two-column table row whose first cell is code."""
    rows = re.findall(r"<tr>\s*<td><code>(.*?)</code></td>\s*<td>(.*?)</td>\s*</tr>", page, re.S)
    return [(html.unescape(a), html.unescape(re.sub(r"<[^>]+>", "", b))) for a, b in rows]


def test_site_builds_strictly(site):
    assert (site / "index.html").is_file()
    assert (site / "report.png").is_file()
    assert not (site / "hooks.py").exists() and not (site / "tables").exists()


def test_op_page_lists_every_op_of_the_registry(site):
    rows = table_rows((site / "ops" / "index.html").read_text())
    assert len(rows) == len(OPS)
    assert rows == [(signature, meaning) for _, signature, meaning in describe_ops()]


def test_cli_page_holds_every_commands_help(site):
    page = html.unescape((site / "cli" / "index.html").read_text())
    for command in ("run", "validate", "list", "schema", "report", "ops", "mutate", "fuzz"):
        assert f"usage: gradcheck {command}" in page, command
    assert "--workers N" in page and "--fd-coverage" in page


def test_measured_tables_are_included(site):
    speed = (site / "speed" / "index.html").read_text()
    assert "two-layer-relu-softmax" in speed and "conv2d" in speed  # harness-cases, layers
    assert "--8&lt;--" not in speed and "--8<--" not in speed
    power = (site / "power" / "index.html").read_text()
    assert "deep-tanh" in power and "0 (0.00%)" in power


def test_api_page_is_generated_from_docstrings(site):
    page = html.unescape((site / "api" / "index.html").read_text())
    for name in ("check_torch", "check_jax", "run", "load_cases", "RunResult", "register_op"):
        assert f'id="gradcheck.{name}"' in page or f'id="gradcheck.harness.own.{name}"' in page, (
            name
        )
    assert "Check torch code's gradients as it runs" in page


def nav_pages(nav) -> list[str]:
    pages = []
    for entry in nav:
        value = next(iter(entry.values())) if isinstance(entry, dict) else entry
        pages += nav_pages(value) if isinstance(value, list) else [value]
    return pages


def test_readme_is_short_and_links_into_the_docs():
    text = README.read_text()
    assert len(text.splitlines()) <= MAX_README_LINES
    links = re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", text)
    local = [link for link in links if not re.match(r"[a-z]+:", link)]
    for link in local:
        assert (ROOT / link).exists(), f"README links to {link}, which does not exist"
    nav = yaml.safe_load((ROOT / "mkdocs.yml").read_text())["nav"]
    for page in nav_pages(nav):
        assert f"docs/{page}" in local, f"README does not link to docs/{page}"
    assert "docs/report.png" in local
