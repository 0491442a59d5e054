"""Fixtures shared by several test modules."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from helpers import COLAH_E, TANH_LAYER, write_case

# Beside a case that passes (helpers.COLAH_E): one whose hand-written `expect` is wrong in
# one element of a 3 x 4 tensor (so `expect` is blamed), and one whose text is full of HTML.
WRONG_EXPECT = """\
    name: wx-wrong-expect
    description: sum(W @ x), one entry of the hand-derived dW is wrong
    tags: [l2-wx]
    inputs:
      W: [[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0], [9.0, 10.0, 11.0, 12.0]]
      x: [1.0, -1.0, 2.0, 0.5]
    expr: sum(W @ x)
    wrt: [W]
    expect:
      grad:
        W: [[1.0, -1.0, 2.0, 0.5], [1.0, -1.0, 2.5, 0.5], [1.0, -1.0, 2.0, 0.5]]
"""
HTML_TEXT = """\
    name: html-text
    description: "<script>alert(1)</script> & <b>bold</b>"
    source: "<img src=x onerror=alert(2)>"
    tags: [scalar]
    inputs: {a: 3.0}
    expr: tanh(a) * a
"""


@pytest.fixture
def mixed_catalog(tmp_path) -> Path:
    """A folder of three cases: one passes, one FAILs blaming `expect`, one has HTML text."""
    root = tmp_path / "cases"
    for folder, name, text in [
        ("scalar", "colah-e", COLAH_E),
        ("l2-wx", "wx-wrong-expect", WRONG_EXPECT),
        ("scalar", "html-text", HTML_TEXT),
    ]:
        (root / folder).mkdir(parents=True, exist_ok=True)
        (root / folder / f"{name}.yaml").write_text(textwrap.dedent(text))
    return root


@pytest.fixture
def catalog(tmp_path) -> Path:
    """A folder of two cases that pass (colah-e, tanh-layer), for the command-line tests."""
    root = tmp_path / "cases"
    write_case(root / "scalar", "colah-e.yaml", COLAH_E)
    write_case(root / "l2-wx", "tanh-layer.yaml", TANH_LAYER)
    return root
