"""report.html: one self-contained file rendered with Jinja2 (autoescaped)."""
from __future__ import annotations

from jinja2 import Environment, PackageLoader, select_autoescape

from ..harness.result import RunResult
from .markdown import sorted_cases

_ENV = Environment(loader=PackageLoader("gradcheck.reports", "templates"),
                   autoescape=select_autoescape(["html", "j2"]))


def render_html(result: RunResult) -> str:
    return _ENV.get_template("report.html.j2").render(
        meta=result.metadata, counts=result.counts(), ok=result.ok,
        cases=sorted_cases(result).to_dict("records"),
        comparisons=result.comparisons.to_dict("records"))
