"""`gradcheck run|validate|list|schema|report`: a thin front end over the Python API.

Exit codes: 0 everything was checked and passed, 1 a case failed (FAIL, ERROR or
NONFINITE) or could not be checked (SKIP, unless --allow-skips), 2 invalid cases or usage,
3 an internal error of gradcheck itself, 130 interrupted (Ctrl-C).

A subcommand is one function registered with `@command(name, help, *arguments)`, where
each of `arguments` adds options to its parser; `--debug` and the exit-code handling come
with every command.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from .dtypes import DTYPES
from .errors import CaseErrors, ReportDirError, ReportRenderError, did_you_mean
from .harness.api import run as run_cases
from .harness.isolation import keep_freed_memory
from .harness.runner import RunOptions
from .harness.verdict import Verdict
from .loading.load import MAX_ELEMENTS

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_TIMEOUT = 600.0  # seconds per case and dtype: far above any catalog case
QUIET_VERDICTS = (Verdict.PASS, Verdict.NONDIFF)  # rows the final table leaves out without -v
EARLY_START_FILES = 16  # loading fewer case files (~5 ms each) hides none of a worker's imports


class UsageError(Exception):
    pass


@dataclass(frozen=True)
class Command:
    run: Callable[[argparse.Namespace], int]
    help: str
    arguments: tuple[Callable[[argparse.ArgumentParser], None], ...]


COMMANDS: dict[str, Command] = {}


def command(name: str, help: str, *arguments: Callable[[argparse.ArgumentParser], None]):
    """Register `gradcheck NAME`; each of `arguments` adds options to its parser."""

    def register(func):
        COMMANDS[name] = Command(func, help, arguments)
        return func

    return register


def main(argv: list[str] | None = None) -> int:
    args = argparse.Namespace(debug=False)
    keep_freed_memory()  # every command computes gradients in this process or workers
    try:
        args = build_parser().parse_args(argv)
        return args.func(args)
    except (KeyboardInterrupt, Exception) as error:  # noqa: BLE001 -- not SystemExit: argparse's exit 2
        if args.debug:
            traceback.print_exception(error)
        return _failure(error)


def _failure(error: BaseException) -> int:
    """One line per problem on stderr, and the exit code that says what kind it was."""
    if isinstance(error, KeyboardInterrupt):
        _complain("interrupted", "stopped by Ctrl-C")
        return EXIT_INTERRUPTED
    if isinstance(error, CaseErrors):
        for problem in error.errors:
            _complain("error", problem)
        return EXIT_INVALID
    if isinstance(error, (UsageError, ReportDirError)):
        _complain("usage error", error)
        return EXIT_INVALID
    _complain("internal error", f"{type(error).__name__}: {error}")
    return EXIT_INTERNAL


def _complain(label: str, message) -> None:
    # the message quotes the user's file: never let its brackets be read as rich markup
    text = Text(f"{label}: ", style="red")
    text.append(str(message))
    Console(stderr=True, soft_wrap=True).print(text, highlight=False)


# --- the parser ---------------------------------------------------------------------------------


class _HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows an option's default where it has one worth showing (not None, False or [])."""

    def _get_help_string(self, action):
        if action.default in (None, False, []) or not action.help:
            return action.help
        return super()._get_help_string(action)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcheck",
        formatter_class=_HelpFormatter,
        description="Check gradients: YAML cases through numpy backprop, finite "
        "differences, PyTorch and JAX, compared element by element.",
        epilog="exit codes: 0 all checked and passed, 1 a case failed or was not checked, "
        "2 invalid cases or usage, 3 internal error, 130 interrupted",
    )
    parser.add_argument("--version", action="version", version=f"gradcheck {_installed_version()}")
    _debug_option(parser, default=False)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(
            name, help=cmd.help, description=cmd.help, formatter_class=_HelpFormatter
        )
        # SUPPRESS: a subcommand without --debug keeps what the main parser read
        _debug_option(p, default=argparse.SUPPRESS)
        for add_arguments in cmd.arguments:
            add_arguments(p)
        p.set_defaults(func=cmd.run)
    return parser


def _installed_version() -> str:
    # from the installed metadata: the package's __init__ imports this module, not back
    from importlib import metadata

    try:
        return metadata.version("gradcheck")
    except metadata.PackageNotFoundError:
        return "(not installed)"


def _debug_option(p: argparse.ArgumentParser, default) -> None:
    """--debug before or after the command."""
    p.add_argument(
        "--debug", action="store_true", default=default, help="show tracebacks of errors"
    )


def selection(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="case files or folders (default: cases, unless --catalog)",
    )
    p.add_argument(
        "--catalog", action="store_true", help="the catalog of cases that ships with gradcheck"
    )
    p.add_argument("-k", dest="keyword", metavar="TEXT", help="only cases whose name contains TEXT")
    p.add_argument("--tags", help="only cases with one of these comma-separated tags")
    p.add_argument(
        "--plugin",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first, for the ops it registers (repeatable; "
        "the current folder is searched)",
    )
    p.add_argument(
        "--max-elements",
        type=_positive_int,
        default=MAX_ELEMENTS,
        metavar="N",
        help="refuse cases with an input or step of more than N elements",
    )


def run_options(p: argparse.ArgumentParser) -> None:
    from .engines import DEFAULT_ENGINES

    p.add_argument(
        "--engines", default=",".join(DEFAULT_ENGINES), help="comma-separated built-in engines"
    )
    p.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="add a custom engine (repeatable)",
    )
    p.add_argument(
        "--dtypes", help=f"comma-separated dtypes ({', '.join(DTYPES)}), overriding each case's own"
    )
    p.add_argument(
        "--out",
        default="reports/latest",
        metavar="DIR",
        help="report folder: a new folder, an empty one, or one that gradcheck "
        "wrote before (it is replaced)",
    )
    p.add_argument(
        "--fd-max-elements",
        type=_positive_int,
        metavar="N",
        help="fd checks every element of an input up to this size (default: by "
        "cost, at least 10000); directional checks and a seeded sample beyond",
    )
    p.add_argument(
        "--modes",
        type=_modes,
        metavar="MODES",
        help="comma-separated products for every case: rev (VJPs), fwd (JVPs and the "
        "dot-product test); default: each case's own `modes`",
    )
    p.add_argument(
        "--order",
        type=int,
        choices=[1, 2],
        help="2: Hessian-vector products too, for every case; default: each case's own `order`",
    )
    p.add_argument(
        "--fd-coverage",
        choices=["auto", "full", "directional"],
        help="how fd covers every input: each element, random directions plus a "
        "sample, or by size (auto, the default); a case's fd_coverage wins",
    )
    p.add_argument(
        "--timeout",
        type=_seconds,
        default=DEFAULT_TIMEOUT,
        metavar="SECONDS",
        help="time limit per case and dtype; each case runs in a worker process "
        "(0 runs in this process, with no limit and no protection: a framework "
        "that crashes ends the run)",
    )
    p.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="worker processes running cases side by side, one BLAS thread each "
        "(default: one per 4 runs, at most the number of cores; ignored with --timeout 0)",
    )
    p.add_argument(
        "--allow-skips",
        action="store_true",
        help="exit 0 even if some case could not be checked (SKIP)",
    )
    p.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="no progress bar and no table: only failures and the counts",
    )
    p.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        help="every case run in the final table, not only the ones that did not pass",
    )


def _modes(text: str) -> list[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    if not modes or set(modes) - {"rev", "fwd"} or len(set(modes)) != len(modes):
        raise argparse.ArgumentTypeError(f"{text!r}: give rev and/or fwd, each once")
    return modes


def _seconds(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds >= 0, got {text!r}")
    return value


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


# --- shared steps -------------------------------------------------------------------------------


def _select(args) -> list:
    """The cases the selection options name; selecting nothing is a usage error, since a
    run that checks nothing must not look green."""
    from .loading import load_cases

    _load_plugins(args.plugin)
    paths = _paths(args)
    cases = load_cases(paths, max_elements=args.max_elements)
    if args.keyword:
        cases = [c for c in cases if args.keyword in c.name]
    if args.tags:
        wanted = set(_split(args.tags))
        cases = [c for c in cases if wanted & set(c.tags)]
    if not cases:
        raise UsageError(f"no case selected{_filters_text(args)} in {', '.join(map(str, paths))}")
    return cases


def _load_plugins(modules: list[str]) -> None:
    from .engines import load_plugins

    try:
        load_plugins(modules)
    except Exception as e:  # noqa: BLE001 -- an import error, or the plugin's own register_op refusing
        raise UsageError(f"cannot load plugin: {type(e).__name__}: {e}") from None


def _paths(args) -> list:
    """The paths named, plus the packaged catalog with --catalog; else `cases`."""
    from .loading.catalog import CATALOG

    if args.paths or args.catalog:
        return list(args.paths) + ([CATALOG] if args.catalog else [])
    if not Path("cases").exists():
        raise UsageError(
            "no cases/ folder here: name case files or folders, or use --catalog "
            "for the catalog that ships with gradcheck"
        )
    return ["cases"]


def _filters_text(args) -> str:
    parts = [
        f"-k {args.keyword!r}" if args.keyword else "",
        f"--tags {args.tags!r}" if args.tags else "",
    ]
    return "".join(f" by {p}" for p in parts if p)


def _split(text: str | None) -> list[str]:
    return [t.strip() for t in (text or "").split(",") if t.strip()]


def _choices(kind: str, given: list[str], allowed) -> list[str]:
    for word in given:
        if word not in allowed:
            hint = did_you_mean(word, allowed)
            raise UsageError(f"unknown {kind} {word!r}{hint}; valid: {', '.join(allowed)}")
    return given


# --- gradcheck run ------------------------------------------------------------------------------


@command("run", "run cases and write reports", selection, run_options)
def cmd_run(args) -> int:
    from .engines import BUILTIN, make_engines
    from .reports import check_out_dir

    names = _choices("engine", _split(args.engines), BUILTIN)
    dtypes = _choices("dtype", _split(args.dtypes), DTYPES)
    _load_plugins(args.plugin)  # workers learn of them from the environment
    workers = _early_workers(args, make_engines(names)) or args.workers
    try:
        cases = _select(args)
        try:
            engines = make_engines(names, args.engine)
        except (ImportError, AttributeError, ValueError) as e:
            raise UsageError(f"cannot load engine: {e}") from None
        check_out_dir(args.out)  # before the run, not after it
        result = _run_with_progress(cases, engines, dtypes, args, workers)
    finally:
        if hasattr(workers, "stop"):  # a pool the run never took over (bad input, Ctrl-C)
            workers.stop()
    try:
        out = result.write_reports(args.out)
    except ReportRenderError as e:  # the CSV files are written: say where they are
        _print_result(result, args)
        _complain("report error", e)
        return EXIT_INTERNAL
    _print_result(result, args)
    Console(soft_wrap=True).print(f"reports: {out}/report.html", highlight=False)
    return EXIT_OK if result.passed(args.allow_skips) else EXIT_FAILED


def _early_workers(args, engines: list):
    """Worker processes started before the cases load, importing torch and jax meanwhile:
    as many as the run will use, or None where cases run in this process (--timeout 0), a
    filter may leave fewer cases than workers, or the files are too few for their loading
    to hide anything. The run takes them over."""
    from .harness.isolation import WorkerPool, available_cores
    from .loading.load import discover

    if not args.timeout or args.keyword or args.tags:
        return None
    files = len(discover(_paths(args), []))
    if files < EARLY_START_FILES:
        return None
    return WorkerPool(min(args.workers or available_cores(), files), args.timeout).prepare(engines)


def _run_with_progress(cases, engines, dtypes, args, workers):
    total = sum(len(dtypes or c.dtypes) for c in cases)
    options = RunOptions(
        fd_max_elements=args.fd_max_elements,
        timeout=args.timeout or None,
        fd_coverage=args.fd_coverage,
        modes=args.modes,
        order=args.order,
    )
    console = Console(stderr=True)
    # A bar redrawn in place is noise in a CI log: only on a terminal, and not with --quiet.
    if args.quiet or not console.is_terminal:
        return run_cases(cases, engines, dtypes or None, options, workers=workers)
    columns = [
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[failed]}", markup=False),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
    ]
    failed = 0
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("checking", total=total, failed="")

        def advance(result) -> None:
            nonlocal failed
            failed += result.case.verdict not in QUIET_VERDICTS
            progress.update(
                task,
                advance=1,
                failed=f"{failed} not passed" if failed else "",
                description=f"{result.case.case} [{result.case.dtype}]",
            )

        return run_cases(
            cases, engines, dtypes or None, options, on_result=advance, workers=workers
        )


def _print_result(result, args) -> None:
    """The runs that did not pass in a compact table (every run with -v; none with -q),
    each such run's message in full, then the counts. Rich drops colors by itself when
    stdout is not a terminal or NO_COLOR is set."""
    console = Console()
    rows = result.sorted_cases()
    shown = rows if args.verbose else rows[~rows["verdict"].isin(QUIET_VERDICTS)]
    if len(shown) and not args.quiet:
        console.print(_result_table(shown))
    for r in rows[rows["verdict"] != "PASS"].itertuples():
        # Whole, not cut to a column: in a CI log this line is the diagnosis.
        console.print(
            Text.assemble((f"{r.case} [{r.dtype}]: ", "bold"), r.message or ""), soft_wrap=True
        )
    counts = Text(", ").join(Text(f"{n} {v}", style=_style(v)) for v, n in result.ordered_counts())
    blamed = ", ".join(f"{e} ({n})" for e, n in result.blame_counts())
    console.print(counts + Text(f"; blamed: {blamed}" if blamed else ""))


def _result_table(rows) -> Table:
    table = Table(box=None, pad_edge=False, header_style="bold")
    for name in ("case", "dtype", "verdict", "blame"):
        table.add_column(name, no_wrap=True)
    table.add_column("seconds", justify="right", no_wrap=True)
    for r in rows.itertuples():
        # Text, not markup: case text such as "[b]" must print as itself.
        table.add_row(
            Text(r.case),
            r.dtype,
            Text(r.verdict, style=_style(r.verdict)),
            Text(r.blame or ""),
            f"{r.seconds:.2f}",
        )
    return table


def _style(verdict: str) -> str:
    return Verdict(verdict).style if verdict in Verdict._value2member_map_ else ""


# --- validate, list, schema, report -------------------------------------------------------------


@command("validate", "check case files without running", selection)
def cmd_validate(args) -> int:
    cases = _select(args)
    Console().print(f"{len(cases)} case(s) valid", highlight=False)
    return EXIT_OK


def list_format(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--format",
        choices=list(LIST_FORMATS),
        default="table",
        help="table for people, csv or json for scripts",
    )


def _case_record(case) -> dict:
    return {
        "name": case.name,
        "dtypes": case.dtypes,
        "tags": case.tags,
        "file": case.file,
        "line": case.line,
        "description": case.model.description,
    }


def _list_table(records: list[dict]) -> str:
    # plain text, not rich: rich would wrap long paths at the console width
    rows = [["name", "dtypes", "tags", "file"]] + [
        [r["name"], ",".join(r["dtypes"]), " ".join(r["tags"]), f"{r['file']}:{r['line']}"]
        for r in records
    ]
    widths = [max(len(row[i]) for row in rows) for i in range(3)]
    return "\n".join(
        "  ".join([c.ljust(w) for c, w in zip(row, widths)] + [row[3]]) for row in rows
    )


def _list_csv(records: list[dict]) -> str:
    import io

    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["name", "dtypes", "tags", "file", "line", "description"])
    writer.writerows(
        [
            r["name"],
            " ".join(r["dtypes"]),
            " ".join(r["tags"]),
            r["file"],
            r["line"],
            r["description"],
        ]
        for r in records
    )
    return buffer.getvalue().rstrip("\n")


LIST_FORMATS = {
    "table": _list_table,
    "csv": _list_csv,
    "json": lambda records: json.dumps(records, indent=2),
}


@command("list", "list cases", selection, list_format)
def cmd_list(args) -> int:
    print(LIST_FORMATS[args.format]([_case_record(c) for c in _select(args)]))
    return EXIT_OK


@command("schema", "print the JSON Schema of the case format (for editors)")
def cmd_schema(args) -> int:
    from .loading.models import case_json_schema

    print(json.dumps(case_json_schema(), indent=2))
    return EXIT_OK


def run_dir(p: argparse.ArgumentParser) -> None:
    p.add_argument("run_dir", help="a folder that `gradcheck run` wrote")


@command("report", "re-render HTML and Markdown from a run folder", run_dir)
def cmd_report(args) -> int:
    from .harness.result import read_run
    from .reports import rerender

    folder = Path(args.run_dir)
    missing = [
        f
        for f in ("cases.csv", "comparisons.csv", "engines.csv", "run.json")
        if not (folder / f).exists()
    ]
    if missing:
        raise UsageError(f"{folder} is not a run folder (no {', '.join(missing)})")
    rerender(read_run(folder), folder)
    Console().print(f"re-rendered {folder}/report.html and summary.md", highlight=False)
    return EXIT_OK


def ops_markdown_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--markdown", action="store_true", help="as a Markdown table (the README's)")


@command("ops", "list the ops an expression may use", ops_markdown_flag)
def cmd_ops(args) -> int:
    """The vocabulary of the expression language, from the op registry."""
    from .ir.ops import describe_ops, ops_markdown

    if args.markdown:
        print(ops_markdown(), end="")
        return EXIT_OK
    rows = describe_ops()
    width = max(len(sig) for _, sig, _ in rows)
    for _, sig, doc in rows:
        print(f"{sig:<{width}}  {doc}")
    return EXIT_OK


# --- gradcheck mutate and fuzz: the harness measuring its own power ----------------------------


def mutate_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="reports/mutants", metavar="DIR", help="output folder")
    p.add_argument(
        "--dtypes", help=f"comma-separated dtypes ({', '.join(DTYPES)}), overriding each case's own"
    )
    p.add_argument(
        "--mutant",
        action="append",
        default=[],
        metavar="NAME",
        help="only mutants whose name starts with NAME (repeatable)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="only survivors and the rate")


@command(
    "mutate",
    "run a corpus of deliberately broken numpy gradients against the cases: "
    "which bugs does the catalog catch?",
    selection,
    mutate_options,
)
def cmd_mutate(args) -> int:
    from .power.mutate import mutate, select, write_mutation_reports

    dtypes = _choices("dtype", _split(args.dtypes), DTYPES)
    mutants = select(args.mutant)
    if not mutants:
        raise UsageError(f"no mutant name starts with {', '.join(args.mutant)}")
    announce = None if args.quiet else lambda name: print(f"mutant {name}", file=sys.stderr)
    result = mutate(_select(args), mutants, dtypes or None, progress=announce)
    out = write_mutation_reports(result, args.out)
    for r in result.mutants.itertuples():
        if r.status not in ("killed", "not applicable"):
            print(f"{r.status:>12}  {r.mutant}: {r.description}")
    counted = result.counted
    print(
        f"{(counted['status'] == 'killed').sum()} of {len(counted)} mutants killed and blamed "
        f"on numpy alone ({100 * result.kill_rate:.1f}%) in {result.metadata['seconds']} s "
        f"({result.metadata['reference_seconds']} s for the unmutated engines); "
        f"report: {out}/mutants.html"
    )
    return EXIT_OK if result.ok else EXIT_FAILED


def fuzz_options(p: argparse.ArgumentParser) -> None:
    from .engines import DEFAULT_ENGINES

    p.add_argument("case", help="a case file, or a case name (found under cases/)")
    p.add_argument("--examples", type=_positive_int, default=100, help="inputs to try")
    p.add_argument(
        "--engines", default=",".join(DEFAULT_ENGINES), help="comma-separated built-in engines"
    )
    p.add_argument(
        "--engine",
        action="append",
        default=[],
        metavar="MODULE:ATTR",
        help="add a custom engine (repeatable)",
    )
    p.add_argument("--dtypes", help="comma-separated dtypes, overriding the case's own")
    p.add_argument(
        "--out", default="reports/fuzz", metavar="DIR", help="folder for the failing case"
    )
    p.add_argument(
        "--max-dim",
        type=_positive_int,
        default=None,
        metavar="N",
        help="largest size of any axis drawn (default: each axis's own size)",
    )
    p.add_argument("--seed", type=int, default=0, help="hypothesis seed")


@command(
    "fuzz",
    "draw inputs for one case with hypothesis until the engines disagree; "
    "write the shrunk failure as a YAML case",
    fuzz_options,
)
def cmd_fuzz(args) -> int:
    from .engines import BUILTIN, make_engines

    names = _choices("engine", _split(args.engines), BUILTIN)
    dtypes = _choices("dtype", _split(args.dtypes), DTYPES)
    try:
        from .power.fuzz import FuzzError, fuzz_case, resolve_case
    except ImportError as e:
        raise UsageError(
            f"gradcheck fuzz needs hypothesis (pip install 'gradcheck[fuzz]'): {e}"
        ) from None
    try:
        case = resolve_case(args.case)
        engines = make_engines(names, args.engine)
    except FuzzError as e:
        raise UsageError(str(e)) from None
    except (ImportError, AttributeError, ValueError) as e:
        raise UsageError(f"cannot load engine: {e}") from None
    found = fuzz_case(
        case,
        engines,
        examples=args.examples,
        max_dim=args.max_dim,
        seed=args.seed,
        out_dir=args.out,
        dtypes=dtypes or None,
    )
    if found is None:
        print(f"{case.name}: the engines agreed on {args.examples} drawn inputs")
        return EXIT_OK
    print(f"{case.name}: {found.verdict} ({found.message}); shrunk case written to {found.path}")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
