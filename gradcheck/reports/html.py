"""report.html: one self-contained file rendered with Jinja2 (autoescaped).

Everything the page needs is inside it: CSS, the small sorting/filtering script, and the
heatmaps as PNG data URIs. A Content-Security-Policy forbids any network access and allows
only our own script (by its hash), so even text that slipped past escaping could not run.
"""

from __future__ import annotations

import base64
import hashlib
import math
from typing import NamedTuple

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from ..harness.compare import EXPECT
from ..harness.rows import PRODUCTS, VJP, error_key
from ..harness.verdict import Verdict
from .heatmap import describe_layout, heatmap_png
from .taylor_plot import remainder_svg

ENGINE_ORDER = ["numpy", "fd", "torch", "jax", EXPECT]  # custom engines follow in run order
BAD_PAIR = (Verdict.FAIL, Verdict.NONFINITE)
TAYLOR_MAX_PLOTS = 60  # curves for the worst runs first; rates for every run
HEATMAP_MAX_ELEMENTS = 1_000_000  # beyond: the table is enough

_LOADER = PackageLoader("gradcheck.reports", "templates")
_ENV = Environment(loader=_LOADER, autoescape=select_autoescape(["html", "j2"]))


def _template_source(name: str) -> str:
    """A file of the templates folder, as text."""
    return _LOADER.get_source(_ENV, name)[0]


# Our own code, not case text: the only thing on the page that is not escaped.
_SCRIPT = _template_source("report.js")
_SCRIPT_HASH = base64.b64encode(hashlib.sha256(_SCRIPT.encode()).digest()).decode()


def render_html(result) -> str:
    """`result`: a `RunResult` (rendering asks it for its tables and queries)."""
    cases = result.sorted_cases()
    worst = result.comparisons.groupby(["case", "dtype"])["tol_ratio"].max().to_dict()
    return _ENV.get_template("report.html.j2").render(
        meta=result.metadata,
        command=_command(result.metadata),
        versions=_versions(result.metadata),
        ok=result.ok,
        counts=result.ordered_counts(),
        blamed=result.blame_counts(),
        rows=[_row(c, worst) for c in _records(cases)],
        filters=_filters(result, cases),
        sections=_sections(result, cases),
        script=Markup(_SCRIPT),
        script_hash=_SCRIPT_HASH,
    )


def _command(meta: dict) -> str:
    """The command as the user typed it: sys.argv starts with a path to __main__.py
    (`python -m gradcheck`) or to the console script."""
    words = str(meta.get("command") or "").split(" ")
    if words[0].endswith(("gradcheck/__main__.py", "gradcheck\\__main__.py")):
        words[0] = "python -m gradcheck"
    elif words[0].replace("\\", "/").rsplit("/", 1)[-1] in ("gradcheck", "gradcheck.exe"):
        words[0] = "gradcheck"
    return " ".join(words)


def _versions(meta: dict) -> list[tuple[str, str]]:
    """Installed versions, the engines' libraries first; a fixed order, since run.json
    stores its keys sorted and a re-render must give the same page."""
    versions = {k: v for k, v in (meta.get("versions") or {}).items() if v}
    first = [k for k in ("numpy", "torch", "jax") if k in versions]
    return [(k, versions[k]) for k in first + sorted(set(versions) - set(first))]


def _records(frame: pd.DataFrame) -> list[dict]:
    """Rows as dicts with '' for missing text, so templates never print 'nan', and indices
    as lists, which print as [1, 2]. Built column by column: a Python pass over each of a
    catalog's ~300,000 comparison cells took a third of the page's rendering time."""
    names = frame.columns.to_list()
    columns = [_column_values(frame[name]) for name in names]
    return [dict(zip(names, row)) for row in zip(*columns)]


def _column_values(column: pd.Series) -> list:
    """A column as Python values, as `to_dict` gives them; only an object column can hold
    None or an index tuple."""
    values = column.to_list()
    if column.dtype == object:
        values = [_cell_value(v) for v in values]
    return values


def _cell_value(value):
    if isinstance(value, tuple):
        return list(value)
    return "" if value is None else value


def anchor(case: str, dtype: str) -> str:
    return f"run-{case}--{dtype}"


def _row(c: dict, worst: dict) -> dict:
    ratio = worst.get((c["case"], c["dtype"]), float("nan"))
    return {
        **c,
        "anchor": anchor(c["case"], c["dtype"]),
        "rank": Verdict.rank_of(c["verdict"]),
        "failing": _failing(c["verdict"]),
        "ratio": ratio,
        "ratio_text": fmt(ratio),
        "seconds_text": f"{c['seconds']:.3f}",
    }


def _failing(verdict: str) -> bool:
    return verdict in Verdict._value2member_map_ and Verdict(verdict).failing


def _filters(result, cases: pd.DataFrame) -> dict:
    def words(column: str) -> list[str]:
        return sorted({w for text in cases[column] for w in str(text).split()})

    return {
        "verdict": [v for v, _ in result.ordered_counts()],
        "family": sorted({str(f) for f in cases["family"] if str(f)}),
        "tag": words("tags"),
        "blame": engine_order(words("blame")),
    }


def engine_order(names) -> list[str]:
    names = list(dict.fromkeys(names))
    known = [e for e in ENGINE_ORDER if e in names]
    return known + [e for e in names if e not in ENGINE_ORDER]


def fmt(x) -> str:
    """A tolerance ratio or error, short: 0, 3.2e-05, 1.98e+06, ∞, NaN; '' when absent."""
    return _number(x, "{:.3g}")


def fmt_value(x) -> str:
    """A gradient element, with enough digits to see where two engines part."""
    return _number(x, "{:.10g}")


def _number(x, pattern: str) -> str:
    """Any number a run can produce (NaN, ±inf, -0.0, 1e308), or '' for an absent one
    (an empty cell read back from a CSV)."""
    if x is None or isinstance(x, str):
        return str(x or "")
    x = float(x)
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return "0" if x == 0 else pattern.format(x)


# --- per-case sections ------------------------------------------------------------------


def _sections(result, cases: pd.DataFrame) -> list[dict]:
    comps, engines = _by_run(result.comparisons), _by_run(result.engines)
    taylor, plotted = _by_run(result.taylor), 0
    runs: dict[str, list[dict]] = {}
    for c in _records(cases):  # worst first, so a case's section sits where it ranks
        key = (c["case"], c["dtype"])
        run = _run(result, c, comps.get(key, []), engines.get(key, []))
        run["taylor"] = _taylor(result, taylor.get(key, []), plotted < TAYLOR_MAX_PLOTS)
        plotted += bool(run["taylor"] and run["taylor"]["plot"])
        runs.setdefault(c["case"], []).append(run)
    return [
        {
            "name": name,
            "details": _details(result, name),
            "runs": items,
            "failing": any(r["failing"] for r in items),
        }
        for name, items in runs.items()
    ]


def _details(result, name: str) -> dict:
    d = dict(result.details.get(name) or {})
    d["steps"] = [tuple(step) for step in d.get("steps") or []]
    d.setdefault("tags", [])
    d.setdefault("wrt", [])
    return d


def _run(result, c: dict, comps: list[dict], engines: list[dict]) -> dict:
    return {
        **c,
        "anchor": anchor(c["case"], c["dtype"]),
        "failing": _failing(c["verdict"]),
        "engines": [{**e, "seconds_text": f"{e['seconds']:.4f}"} for e in engines],
        "matrices": _matrices(comps),
        "pairs": _bad_pairs(comps),
        "heatmaps": _heatmaps(result, c, comps),
    }


def _taylor(result, rows: list[dict], plot: bool) -> dict | None:
    """Every engine's Taylor rate and verdict in one run, and (`plot`) their curves."""
    if not rows:
        return None
    labels = {id(r): error_key(r.get("product") or VJP, r["engine"]) for r in rows}
    curves = {
        labels[id(r)]: result.curves[(r["case"], r["dtype"], labels[id(r)])]
        for r in rows
        if (r["case"], r["dtype"], labels[id(r)]) in result.curves
    }
    rates = {labels[id(r)]: r["rate"] for r in rows}
    return {
        "plot": remainder_svg(curves, rates) if plot and curves else "",
        "rows": [{**r, "rate_text": fmt(r["rate"])} for r in rows],
    }


def _by_run(frame: pd.DataFrame) -> dict[tuple[str, str], list[dict]]:
    """Rows per (case, dtype), in one pass: filtering per run would be quadratic."""
    grouped: dict[tuple[str, str], list[dict]] = {}
    for row in _records(frame):
        grouped.setdefault((row["case"], row["dtype"]), []).append(row)
    return grouped


def _label(r: dict) -> str:
    """A row's input, named with its product where that is not the VJP (`jvp:x`)."""
    return error_key(r.get("product") or VJP, r["param"])


def _matrices(comps: list[dict]) -> list[dict]:
    """Per product and input, the engine x engine grid of tolerance ratios (symmetric), the
    products in the order of PRODUCTS; an engine's dot-product test sits on the diagonal."""
    engines = engine_order([r["engine_a"] for r in comps] + [r["engine_b"] for r in comps])
    ordered = sorted(comps, key=lambda r: PRODUCTS.index(r.get("product") or VJP))
    labels = list(dict.fromkeys(_label(r) for r in ordered))
    # one cell per pair, shown twice (a vs b, b vs a): a catalog run has ~40,000 cells
    cells = {(_label(r), r["engine_a"], r["engine_b"]): _cell(r) for r in comps}
    cells.update({(p, b, a): cell for (p, a, b), cell in list(cells.items())})
    return [
        {
            "param": p,
            "engines": engines,
            "grid": [[cells.get((p, a, b), _empty_cell(a == b)) for b in engines] for a in engines],
        }
        for p in labels
    ]


class Cell(NamedTuple):
    """One square of a matrix. Not a dict: the template reads its fields as attributes,
    which Jinja tries before items, and the grid is the page's hottest loop."""

    text: str
    cls: str
    title: str


DIAGONAL_CELL = Cell(text="", cls="diag", title="")
NOT_COMPARED_CELL = Cell(text="", cls="none", title="not compared")


def _empty_cell(diagonal: bool) -> Cell:
    return DIAGONAL_CELL if diagonal else NOT_COMPARED_CELL


def _cell(r: dict) -> Cell:
    level = "bad" if r["verdict"] in BAD_PAIR else r["verdict"]
    if r["verdict"] == "PASS":
        level = "pass-near" if r["tol_ratio"] > 0.1 else "pass"
    title = (
        f"{r['engine_a']} vs {r['engine_b']}: {r['verdict']}, tol ratio {fmt(r['tol_ratio'])}"
        f", max |a-b| {fmt(r['max_abs_err'])} at {r['worst_index'] or '[]'}"
        + (f" ({r['message']})" if r["message"] else "")
    )
    return Cell(text=fmt(r["tol_ratio"]), cls=level, title=title)


def _bad_pairs(comps: list[dict]) -> list[dict]:
    return [
        {
            **r,
            "ratio_text": fmt(r["tol_ratio"]),
            "err_text": fmt(r["max_abs_err"]),
            "a_text": fmt_value(r["value_a"]),
            "b_text": fmt_value(r["value_b"]),
        }
        for r in comps
        if r["verdict"] in BAD_PAIR
    ]


def _heatmaps(result, c: dict, comps: list[dict]) -> list[dict]:
    """One heatmap per failing tensor input, of the pair that best shows the blamed
    engine's error: blamed vs the most trusted engine that is not blamed."""
    blamed = set(str(c["blame"]).split())
    maps = []
    for param in dict.fromkeys(_label(r) for r in comps if r["verdict"] in BAD_PAIR):
        r = _heatmap_pair(
            [r for r in comps if _label(r) == param and r["verdict"] in BAD_PAIR], blamed
        )
        err = result.errors.get((c["case"], c["dtype"], param, r["engine_a"], r["engine_b"]))
        if err is not None and 1 < err.size <= HEATMAP_MAX_ELEMENTS:
            maps.append(
                {
                    **r,
                    "shape": " × ".join(map(str, err.shape)),
                    "unchecked": int(np.isnan(err).sum()),
                    "layout": describe_layout(err.shape),
                    "png": heatmap_png(err, tuple(r["worst_index"] or ())),
                }
            )
    return maps


def _heatmap_pair(rows: list[dict], blamed: set[str]) -> dict:
    def key(r):
        a, b = r["engine_a"], r["engine_b"]
        one_blamed = (a in blamed) != (b in blamed)
        other = b if a in blamed else a
        # estimates last: they may check only a sample, and their own error blurs the picture
        return (not one_blamed, _estimated(r), _trust(other), -r["tol_ratio"])

    return min(rows, key=key)


def _trust(engine: str) -> int:
    return ENGINE_ORDER.index(engine) if engine in ENGINE_ORDER else len(ENGINE_ORDER)


def _estimated(r: dict) -> bool:
    """The pair has a numerical estimate on one side: it carries an error or a sample."""
    return r["fd_err"] > 0 or r["checked"] < r["elements"]
