"""MkDocs hooks of the documentation (mkdocs.yml: `hooks: [docs/hooks.py]`).

Two things are read from the installed version at build time, so that the pages cannot
drift from it:

- a page's `<!-- gradcheck:ops -->` line becomes the op vocabulary, read from the op
  registry by the same function as `gradcheck ops --markdown`;
- a `<!-- gradcheck:help -->` or `<!-- gradcheck:help COMMAND -->` line becomes the
  `--help` text of `gradcheck` or of that command, from the command line's own parser.
"""

from __future__ import annotations

import os
import re

OPS_MARKER = "<!-- gradcheck:ops -->"
HELP_MARKER = re.compile(r"^<!-- gradcheck:help(?: ([a-z]+))? -->$", re.M)
HELP_WIDTH = "96"


def ops_table() -> str:
    """`gradcheck ops --markdown`, with a `|` inside a meaning escaped (`abs(x)`: |x|), so
    that it stays in its cell."""
    from gradcheck.ir.ops import ops_markdown

    lines = []
    for line in ops_markdown().splitlines():
        if line.startswith("| `"):
            end = line.index("` | ") + len("` | ")
            meaning = line[end : -len(" |")]
            line = line[:end] + meaning.replace("\\|", "|").replace("|", "\\|") + " |"
        lines.append(line)
    return "\n".join(lines) + "\n"


def inject_ops(markdown: str) -> str:
    """The page with its op marker replaced by the registry's op table."""
    if OPS_MARKER not in markdown:
        return markdown
    return markdown.replace(OPS_MARKER, ops_table().rstrip("\n"))


def help_text(command: str | None = None) -> str:
    """`gradcheck --help`, or `gradcheck COMMAND --help`, as the terminal shows it."""
    import argparse

    from gradcheck.cli import build_parser

    columns = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = HELP_WIDTH  # argparse wraps to the terminal's width
    try:
        parser = build_parser()
        if command is not None:
            sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
            parser = sub.choices[command]
        return parser.format_help()
    finally:
        if columns is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = columns


def inject_help(markdown: str) -> str:
    """The page with each help marker replaced by that help text, as a code block."""
    return HELP_MARKER.sub(lambda m: f"```text\n{help_text(m.group(1)).rstrip()}\n```", markdown)


def on_page_markdown(markdown: str, page, config, files) -> str:
    return inject_help(inject_ops(markdown))
