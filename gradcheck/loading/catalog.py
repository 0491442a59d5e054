"""The catalog that ships inside the package.

`gradcheck/catalog` is a link to the repository's `cases/` folder (the one place where
cases are edited); building the package copies the files it points at as package data.
"""

from __future__ import annotations

from pathlib import Path

CATALOG = Path(__file__).parent.parent / "catalog"
