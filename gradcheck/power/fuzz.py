"""Fuzzing one case: hypothesis draws its inputs (shapes and values) until the engines
disagree, shrinks the failure, and writes it out as a ready YAML case.

Shapes are drawn by giving every distinct axis size of the case a new size (1 up to the
original, or up to `max_dim`), so that axes that must agree keep agreeing; a draw the case
cannot accept (a window that no longer fits) is discarded by the loader. Values stay inside
each op's domain where an input feeds that op directly (a log's argument is positive).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from random import Random

import numpy as np
import yaml
from hypothesis import HealthCheck, find, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample, Unsatisfiable
from hypothesis.extra.numpy import arrays

from ..errors import CaseError
from ..harness.runner import run_case
from ..harness.verdict import FAILING
from ..loading import load_cases, load_text
from ..loading.case import make_array

VALUES = (-3.0, 3.0)  # where no op asks for less
POSITIVE = (0.1, 3.0)
# op -> argument -> the interval its values are drawn from, for an input fed straight in
DOMAINS = {
    "log": {0: POSITIVE},
    "sqrt": {0: POSITIVE},
    "pow": {0: POSITIVE},
    "div": {1: (0.5, 3.0)},
    "log1p": {0: (-0.9, 3.0)},
}


@dataclass
class FuzzFailure:
    verdict: str
    message: str
    path: Path
    document: dict


class FuzzError(ValueError):
    """The case cannot be fuzzed (not found, or no drawn input was a valid case)."""


def resolve_case(spec: str, catalog: str = "cases"):
    """A case file (its only case), or a case's name in `catalog`."""
    path = Path(spec)
    cases = (
        load_cases([path])
        if path.exists()
        else [c for c in load_cases([catalog]) if c.name == spec]
    )
    if len(cases) != 1:
        raise FuzzError(f"{spec}: expected one case, found {len(cases)}")
    return cases[0]


def fuzz_case(
    case,
    engines,
    examples: int = 100,
    max_dim: int | None = None,
    seed: int = 0,
    out_dir: str | Path = "reports/fuzz",
    dtypes=None,
) -> FuzzFailure | None:
    """Draw up to `examples` variants of `case` (in its dtypes, or `dtypes`); None when the
    engines agree on all of them, else the shrunk failure, written to `out_dir/<name>.yaml`."""
    strategy = variants(case, max_dim, dtypes)
    config = settings(
        max_examples=examples, database=None, deadline=None, suppress_health_check=list(HealthCheck)
    )
    try:
        document = find(
            strategy, lambda doc: bool(failures(doc, engines)), settings=config, random=Random(seed)
        )
    except (NoSuchExample, Unsatisfiable):
        return None
    failed = failures(document, engines)
    document = {**document, "dtypes": list(failed)}
    verdict, message = next(iter(failed.values()))
    document["description"] = (
        f"Found by gradcheck fuzz from case {case.name!r}: {verdict}, {message}"
    )
    return FuzzFailure(verdict, message, write_case(document, out_dir), document)


def failures(document: dict, engines) -> dict[str, tuple[str, str]]:
    """dtype -> (verdict, message) of each dtype in which the engines disagree."""
    case = compile_document(document)
    found = {}
    for dtype in case.dtypes:
        row = run_case(case, dtype, engines).case
        if row.verdict in FAILING:
            found[dtype] = (str(row.verdict), row.message)
    return found


def compile_document(document: dict):
    return load_text(yaml.safe_dump(document, sort_keys=False), "<fuzz>")[0]


def write_case(document: dict, out_dir: str | Path) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / f"{document['name']}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False, width=100), encoding="utf-8")
    return path


# --- the strategy ---------------------------------------------------------------------------


def variants(case, max_dim: int | None = None, dtypes=None) -> st.SearchStrategy[dict]:
    """Documents of cases like `case`, with drawn shapes and values; only valid ones."""
    originals = {
        name: make_array(case.name, name, spec) for name, spec in case.model.inputs.items()
    }
    sizes = sorted({d for a in originals.values() for d in a.shape if d > 1})
    new_sizes = st.fixed_dictionaries({d: st.integers(1, max_dim or d) for d in sizes})
    documents = new_sizes.flatmap(lambda m: _documents(case, originals, m))
    if dtypes:
        documents = documents.map(lambda doc: {**doc, "dtypes": list(dtypes)})
    return documents.filter(_compiles)


def _documents(case, originals: dict, resize: dict) -> st.SearchStrategy[dict]:
    domains = input_domains(case)
    labels = min(resize.values(), default=1)  # integer data stays in range of any axis
    inputs = {
        name: _array(a, resize, domains.get(name, VALUES), labels) for name, a in originals.items()
    }
    return st.fixed_dictionaries(inputs).map(lambda values: _document(case, values))


def _array(original: np.ndarray, resize: dict[int, int], domain, labels: int):
    shape = tuple(resize.get(d, d) for d in map(int, original.shape))
    if original.dtype == np.int64:
        high = max(0, min(int(original.max(initial=0)), labels - 1))
        return arrays(np.int64, shape, elements=st.integers(0, high))
    low, high = domain
    return arrays(
        np.float64, shape, elements=st.floats(low, high, allow_nan=False, allow_infinity=False)
    )


def input_domains(case) -> dict[str, tuple[float, float]]:
    """The narrowest domain each input meets as a direct argument of an op."""
    found: dict[str, tuple[float, float]] = {}
    for node in case.graph.nodes:
        for index, arg in enumerate(node.args):
            domain = DOMAINS.get(node.op, {}).get(index)
            if domain and arg in case.graph.inputs:
                low, high = found.get(arg, VALUES)
                found[arg] = (max(low, domain[0]), min(high, domain[1]))
    return found


def _document(case, values: dict) -> dict:
    model = case.model
    document = {
        "name": f"{model.name}-fuzz",
        "description": "",
        "tags": list(model.tags),
        "inputs": {name: _literal(v) for name, v in values.items()},
    }
    document.update(
        model.model_dump(
            include={"expr", "graph", "wrt", "dtypes", "tolerance", "jacobian", "fd_max_elements"},
            exclude_none=True,
            exclude_defaults=True,
        )
    )
    document.setdefault("dtypes", list(model.dtypes))
    return document


def _literal(array: np.ndarray) -> dict:
    if array.dtype == np.int64:
        return {"value": array.tolist(), "dtype": "int64"}
    return {"value": array.tolist()}


def _compiles(document: dict) -> bool:
    try:
        compile_document(document)
    except CaseError:
        return False
    return True
