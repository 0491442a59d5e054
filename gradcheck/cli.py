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
from rich.text import Text

from .errors import CaseErrors
from .harness.api import run as run_cases
from .harness.runner import RunOptions
from .harness.verdict import FAILING, Verdict
from .loading.load import MAX_ELEMENTS

EXIT_OK, EXIT_FAILED, EXIT_INVALID, EXIT_INTERNAL = 0, 1, 2, 3
DEFAULT_TIMEOUT = 600.0     # seconds per case and dtype: far above any catalog case


class UsageError(Exception):
    pass


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except CaseErrors as e:
        _debug_trace(args)
        for error in e.errors:
            _complain("error", error)
        return EXIT_INVALID
    except UsageError as e:
        _debug_trace(args)
        _complain("usage error", e)
        return EXIT_INVALID
    except Exception as e:
        _debug_trace(args)
        _complain("internal error", f"{type(e).__name__}: {e}")
        return EXIT_INTERNAL


def _complain(label: str, message) -> None:
    # the message quotes the user's file: never let its brackets be read as rich markup
    text = Text(f"{label}: ", style="red")
    text.append(str(message))
    Console(stderr=True, soft_wrap=True).print(text, highlight=False)


def _debug_trace(args) -> None:
    if args.debug:
        traceback.print_exc()


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gradcheck",
        description="Check gradients: YAML cases through numpy backprop, finite "
                    "differences, PyTorch and JAX, compared element by element.",
        epilog="exit codes: 0 all passed, 1 a case failed, 2 invalid cases or usage, "
               "3 internal error")
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
    run.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                     help="time limit per case and dtype; each case runs in a worker process "
                     f"(default {DEFAULT_TIMEOUT:g}; 0 runs in this process, with no limit)")
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
    _power_commands(sub)
    return parser


def _selection(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", default=["cases"], help="case files or folders")
    p.add_argument("-k", dest="keyword", help="only cases whose name contains this")
    p.add_argument("--tags", help="only cases with one of these comma-separated tags")
    p.add_argument("--max-elements", type=_positive_int, default=MAX_ELEMENTS, metavar="N",
                   help="refuse cases with an input or step of more than N elements "
                   f"(default {MAX_ELEMENTS})")


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


def _select(args) -> list:
    from .loading import load_cases
    cases = load_cases(args.paths, max_elements=args.max_elements)
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
    options = RunOptions(fd_max_elements=args.fd_max_elements, timeout=args.timeout or None)
    console = Console(stderr=True)
    # A bar redrawn in place is noise in a CI log: only on a terminal, and not with --quiet.
    if args.quiet or not console.is_terminal:
        return run_cases(cases, engines, dtypes or None, options)
    columns = [TextColumn("{task.description}", markup=False), BarColumn(),
               MofNCompleteColumn(), TimeElapsedColumn()]
    with Progress(*columns, console=console, transient=True) as progress:
        task = progress.add_task("checking", total=total)
        return run_cases(cases, engines, dtypes or None, options,
                         progress=lambda label: progress.update(task, advance=1, description=label))


def _print_result(result, quiet: bool) -> None:
    """A compact table (failures first; with --quiet, failures only), each non-passing
    run's message in full below it, then the counts. Rich drops colors by itself when
    stdout is not a terminal or NO_COLOR is set."""
    console = Console()
    rows = result.sorted_cases()
    if quiet:
        rows = rows[rows["verdict"].isin(FAILING)]
    if len(rows):
        console.print(_result_table(rows))
    for r in rows[rows["verdict"] != "PASS"].itertuples():
        # Whole, not cut to a column: in a CI log this line is the diagnosis.
        console.print(Text.assemble((f"{r.case} [{r.dtype}]: ", "bold"), r.message or ""),
                      soft_wrap=True)
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
        table.add_row(Text(r.case), r.dtype, Text(r.verdict, style=_style(r.verdict)),
                      Text(r.blame or ""), f"{r.seconds:.2f}")
    return table


def _style(verdict: str) -> str:
    return Verdict(verdict).style if verdict in Verdict._value2member_map_ else ""


def cmd_validate(args) -> int:
    cases = _select(args)
    Console().print(f"{len(cases)} case(s) valid", highlight=False)
    return EXIT_OK


def cmd_list(args) -> int:
    # plain tab-separated lines for scripts (`cut -f1`): rich would expand the tabs and
    # wrap long paths at the console width
    for case in _select(args):
        print(f"{case.name}\t{','.join(case.dtypes)}\t{' '.join(case.tags)}\t{case.file}")
    return EXIT_OK


def cmd_schema(args) -> int:
    from .loading import CaseModel
    print(json.dumps(CaseModel.model_json_schema(), indent=2))
    return EXIT_OK


def cmd_report(args) -> int:
    from pathlib import Path
    from .harness.result import read_run
    from .reports import rerender
    folder = Path(args.run_dir)
    missing = [f for f in ("cases.csv", "comparisons.csv", "engines.csv", "run.json")
               if not (folder / f).exists()]
    if missing:
        raise UsageError(f"{folder} is not a run folder (no {', '.join(missing)})")
    rerender(read_run(folder), folder)
    Console().print(f"re-rendered {folder}/report.html and summary.md", highlight=False)
    return EXIT_OK


# --- mutate and fuzz: the harness measuring its own power --------------------------------------

def _power_commands(sub) -> None:
    mutate = sub.add_parser("mutate", help="run the corpus of deliberately broken numpy "
                            "gradients against the cases: which bugs does the catalog catch?")
    _selection(mutate)
    mutate.add_argument("--out", default="reports/mutants", help="output folder")
    mutate.add_argument("--dtypes", help="comma-separated dtypes, overriding each case's own")
    mutate.add_argument("--mutant", action="append", default=[], metavar="NAME",
                        help="only mutants whose name starts with NAME (repeatable)")
    mutate.add_argument("-q", "--quiet", action="store_true", help="only survivors and the rate")
    mutate.set_defaults(func=cmd_mutate)
    fuzz = sub.add_parser("fuzz", help="draw inputs for one case with hypothesis until the "
                          "engines disagree; write the shrunk failure as a YAML case")
    fuzz.add_argument("case", help="a case file, or a case name (found under cases/)")
    fuzz.add_argument("--examples", type=_positive_int, default=100, help="inputs to try")
    fuzz.add_argument("--engines", default="numpy,fd,torch,jax", help="built-in engines")
    fuzz.add_argument("--engine", action="append", default=[], metavar="MODULE:ATTR",
                      help="add a custom engine (repeatable)")
    fuzz.add_argument("--out", default="reports/fuzz", help="folder for the failing case")
    fuzz.add_argument("--max-dim", type=_positive_int, default=None, metavar="N",
                      help="largest size of any axis drawn (default: each axis's own size)")
    fuzz.add_argument("--dtypes", help="comma-separated dtypes, overriding the case's own")
    fuzz.add_argument("--seed", type=int, default=0, help="hypothesis seed")
    fuzz.set_defaults(func=cmd_fuzz)


def cmd_mutate(args) -> int:
    from .power.mutate import mutate, select
    from .reports.mutants import write_mutation_reports
    cases, mutants, dtypes = _select(args), select(args.mutant), _split(args.dtypes)
    if not mutants:
        raise UsageError(f"no mutant name starts with {', '.join(args.mutant)}")
    if set(dtypes) - {"float64", "float32"}:
        raise UsageError(f"unknown dtype in {args.dtypes!r}")
    announce = None if args.quiet else lambda name: print(f"mutant {name}", file=sys.stderr)
    result = mutate(cases, mutants, dtypes or None, progress=announce)
    out = write_mutation_reports(result, args.out)
    for r in result.mutants.itertuples():
        if r.status not in ("killed", "not applicable"):
            print(f"{r.status:>12}  {r.mutant}: {r.description}")
    counted = result.counted
    print(f"{(counted['status'] == 'killed').sum()} of {len(counted)} mutants killed and blamed "
          f"on numpy alone ({100 * result.kill_rate:.1f}%) in {result.metadata['seconds']} s "
          f"({result.metadata['reference_seconds']} s for the unmutated engines); "
          f"report: {out}/mutants.html")
    return EXIT_OK if result.ok else EXIT_FAILED


def cmd_fuzz(args) -> int:
    from .engines import make_engines
    try:
        from .power.fuzz import FuzzError, fuzz_case, resolve_case
    except ImportError as e:
        raise UsageError(f"gradcheck fuzz needs hypothesis (pip install 'gradcheck[fuzz]'): {e}")
    try:
        case = resolve_case(args.case)
    except FuzzError as e:
        raise UsageError(str(e)) from None
    try:
        engines = make_engines(_split(args.engines), args.engine)
    except (ImportError, AttributeError, ValueError, KeyError) as e:
        raise UsageError(f"cannot load engine: {e}") from None
    found = fuzz_case(case, engines, examples=args.examples, max_dim=args.max_dim,
                      seed=args.seed, out_dir=args.out, dtypes=_split(args.dtypes) or None)
    if found is None:
        print(f"{case.name}: the engines agreed on {args.examples} drawn inputs")
        return EXIT_OK
    print(f"{case.name}: {found.verdict} ({found.message}); shrunk case written to {found.path}")
    return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
