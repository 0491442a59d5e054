"""`gradcheck run|validate|list|schema|report`: a thin front end over the Python API.

Exit codes: 0 everything passed, 1 a case failed (FAIL, ERROR or NONFINITE), 2 invalid
cases or usage, 3 an internal error of gradcheck itself.
"""
from __future__ import annotations

import argparse
import json
import sys
import traceback

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from .errors import CaseErrors
from .harness.api import run as run_cases
from .harness.runner import RunOptions

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
VERDICT_STYLE = {"PASS": "green", "FAIL": "bold red", "ERROR": "bold red",
                 "NONFINITE": "bold red", "NONDIFF": "yellow", "SKIP": "yellow"}


class UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    err = Console(stderr=True)
    try:
        return args.func(args)
    except CaseErrors as e:
        for error in e.errors:
            err.print(f"[red]error:[/red] {error}", highlight=False, markup=True, soft_wrap=True)
        return EXIT_INVALID
    except UsageError as e:
        err.print(f"[red]usage error:[/red] {e}", highlight=False, soft_wrap=True)
        return EXIT_INVALID
    except Exception as e:
        if args.debug:
            traceback.print_exc()
        err.print(f"[red]internal error:[/red] {type(e).__name__}: {e}", highlight=False)
        return EXIT_INTERNAL


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="gradcheck", description=__doc__.splitlines()[0])
    parser.add_argument("--debug", action="store_true", help="show tracebacks")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run cases and write reports")
    _selection(run)
    run.add_argument("--engines", default="numpy,fd,torch,jax",
                     help="comma-separated built-in engines (default: all four)")
    run.add_argument("--engine", action="append", default=[], metavar="MODULE:ATTR",
                     help="add a custom engine (repeatable)")
    run.add_argument("--dtypes", help="comma-separated dtypes, overriding each case's own")
    run.add_argument("--out", default="reports/latest", help="report folder")
    run.add_argument("--fd-max-elements", type=int, help="fd checks at most this many "
                     "elements per input (a seeded sample beyond)")
    run.add_argument("-q", "--quiet", action="store_true", help="only failures and the summary")
    run.set_defaults(func=cmd_run)
    for name, func, text in [("validate", cmd_validate, "check case files without running"),
                             ("list", cmd_list, "list cases")]:
        p = sub.add_parser(name, help=text)
        _selection(p)
        p.set_defaults(func=func)
    schema = sub.add_parser("schema", help="print the JSON Schema of the case format")
    schema.set_defaults(func=cmd_schema)
    report = sub.add_parser("report", help="re-render HTML and Markdown from a run folder")
    report.add_argument("run_dir")
    report.set_defaults(func=cmd_report)
    return parser


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=["cases"], help="case files or folders")
    p.add_argument("-k", dest="keyword", help="only cases whose name contains this")
    p.add_argument("--tags", help="only cases with one of these comma-separated tags")


def _select(args) -> list:
    from .loading import load_cases
    cases = load_cases(args.paths)
    if args.keyword:
        cases = [c for c in cases if args.keyword in c.name]
    if args.tags:
        wanted = set(_split(args.tags))
        cases = [c for c in cases if wanted & set(c.tags)]
    return cases


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def cmd_run(args) -> int:
    from .engines import BUILTIN, make_engines
    cases = _select(args)
    names, dtypes = _split(args.engines), _split(args.dtypes)
    unknown = [n for n in names if n not in BUILTIN] + [d for d in dtypes if d not in ("float64", "float32")]
    if unknown:
        raise UsageError(f"unknown engine or dtype: {', '.join(unknown)}")
    try:
        engines = make_engines(names, args.engine)
    except (ImportError, AttributeError, ValueError) as e:
        raise UsageError(f"cannot load engine: {e}") from None
    result = _run_with_progress(cases, engines, dtypes, args)
    out = result.write_reports(args.out)
    _print_result(result, args.quiet)
    Console().print(f"reports: {out}/report.html", highlight=False)
    return result.exit_code


def _run_with_progress(cases, engines, dtypes, args):
    total = sum(len(dtypes or c.dtypes) for c in cases)
    options = RunOptions(fd_max_elements=args.fd_max_elements)
    console = Console(stderr=True)
    if args.quiet or not console.is_terminal:
        return run_cases(cases, engines, dtypes or None, options)
    columns = [TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("checking", total=total)
        return run_cases(cases, engines, dtypes or None, options,
                         progress=lambda label: progress.update(task, advance=1, description=label))


def _print_result(result, quiet: bool) -> None:
    from .reports.markdown import sorted_cases
    console = Console()
    rows = sorted_cases(result)
    if quiet:
        rows = rows[rows["verdict"] != "PASS"]
    table = Table("case", "dtype", "verdict", "blame", "seconds", "message", box=None)
    for r in rows.itertuples():
        style = VERDICT_STYLE.get(r.verdict, "")
        table.add_row(r.case, r.dtype, f"[{style}]{r.verdict}[/]", r.blame or "",
                      f"{r.seconds:.2f}", (r.message or "")[:100])
    if len(rows):
        console.print(table)
    counts = result.counts()
    console.print(", ".join(f"{n} {v}" for v, n in sorted(counts.items())), highlight=False)


def cmd_validate(args) -> int:
    cases = _select(args)
    Console().print(f"{len(cases)} case(s) valid", highlight=False)
    return EXIT_OK


def cmd_list(args) -> int:
    console = Console()
    for case in _select(args):
        console.print(f"{case.name}\t{','.join(case.dtypes)}\t{' '.join(case.tags)}\t{case.file}",
                      highlight=False, markup=False)
    return EXIT_OK


def cmd_schema(args) -> int:
    from .loading import CaseModel
    print(json.dumps(CaseModel.model_json_schema(), indent=2))
    return EXIT_OK


def cmd_report(args) -> int:
    from pathlib import Path
    from .reports import read_run, rerender
    folder = Path(args.run_dir)
    if not (folder / "cases.csv").exists():
        raise UsageError(f"{folder} is not a run folder (no cases.csv)")
    rerender(read_run(folder), folder)
    Console().print(f"re-rendered {folder}/report.html and summary.md", highlight=False)
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
