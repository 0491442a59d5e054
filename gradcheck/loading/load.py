"""Load case files: YAML -> validated model -> compiled graph, or one clear error per case."""

from __future__ import annotations

import math
import os
import stat
from collections.abc import Iterable
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from ..errors import CaseError, CaseErrors, did_you_mean
from ..ir.graph import FLOAT, INT, GraphError, Leaf, build_graph
from .case import Case
from .models import CaseModel, Expect, RandomInput, Tolerance, ValueInput
from .uses import check_uses
from .yaml_lines import YamlError, documents

MAX_ELEMENTS = 10_000_000  # per input or step; refused before anything is allocated
MAX_FILE_BYTES = 4_000_000  # far above any real case; bounds what the YAML parser reads
MAX_INPUTS = 1000  # per case: fd differentiates each one; a real case has a few
MAX_JACOBIAN_ROWS = 4096  # output elements of a `jacobian: true` case, one VJP each
SUFFIXES = (".yaml", ".yml")


def load_cases(
    paths: Iterable[str | Path] = ("cases",), max_elements: int = MAX_ELEMENTS
) -> list[Case]:
    """Every case under `paths` (files or folders), or `CaseErrors` listing each bad one."""
    cases: list[Case] = []
    errors: list[CaseError] = []
    for file in discover(paths, errors):
        try:
            cases.extend(load_file(file, max_elements))
        except CaseError as e:
            errors.extend(e.problems)
    errors.extend(_duplicates(cases))
    if errors:
        raise CaseErrors(errors)
    return cases


def discover(paths: Iterable[str | Path], errors: list[CaseError]) -> list[Path]:
    files = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix in SUFFIXES))
        elif path.exists():
            files.append(path)  # read_case_file refuses what is not a regular file
        else:
            errors.append(CaseError("no such file or folder", path))
    return files


def load_file(file: Path, max_elements: int = MAX_ELEMENTS) -> list[Case]:
    file = Path(file)
    try:
        text = read_case_file(file).decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise CaseError(f"cannot read: {e}", file) from None
    return load_text(text, file, max_elements)


def read_case_file(file: Path) -> bytes:
    """The bytes of a regular file, at most MAX_FILE_BYTES of them. A named pipe, a device
    or a link to one is refused before it is opened (opening a pipe would wait for a
    writer), and the limit holds on the bytes read, whatever `stat` claimed."""
    # O_NONBLOCK: should the file be swapped for a pipe after the check, open still returns
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0)
    if not stat.S_ISREG(os.stat(file).st_mode):
        raise CaseError("not a regular file (a pipe, a device or a folder)", file)
    fd = os.open(file, flags)
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
            raise CaseError("not a regular file (a pipe, a device or a folder)", file)
        data = f.read(MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        raise CaseError(f"the file is larger than {MAX_FILE_BYTES} bytes", file)
    return data


def load_text(
    text: str, file: str | Path = "<text>", max_elements: int = MAX_ELEMENTS
) -> list[Case]:
    """The cases in one file's text; `file` only names it in messages."""
    try:
        docs = [d for d in documents(text) if d[0] is not None]
    except YamlError as e:
        raise CaseError(e.message, file, e.case, e.line) from None
    if not docs:
        raise CaseError("the file holds no case (it is empty or only comments)", file)
    cases, errors = [], []
    for data, lines, first in docs:  # every case's problems, not only the first's
        try:
            cases.append(compile_case(data, lines, Path(file), first, max_elements))
        except CaseError as e:
            errors.extend(e.problems)
    if errors:
        raise CaseErrors.of(errors)
    return cases


def compile_case(
    data, lines: dict, file: Path, first_line: int, max_elements: int = MAX_ELEMENTS
) -> Case:
    name = data.get("name") if isinstance(data, dict) else None
    name = name if isinstance(name, str) else None

    def fail(message: str, path: tuple = ()) -> CaseError:
        return CaseError(message, file, name, _line(lines, path) or first_line)

    if not isinstance(data, dict):
        raise fail(f"a case is a YAML mapping, got {type(data).__name__}")
    try:
        model = CaseModel.model_validate(data)
    except ValidationError as e:
        raise CaseErrors.of([fail(*problem) for problem in _problems(e)]) from None
    if len(model.inputs) > MAX_INPUTS:
        raise fail(
            f"the case has {len(model.inputs)} inputs; the limit is {MAX_INPUTS} "
            "(stack scalars into one tensor input)",
            ("inputs",),
        )
    leaves = {k: _leaf(k, spec, max_elements, fail) for k, spec in model.inputs.items()}
    try:
        graph = build_graph(model.steps(), leaves)
    except GraphError as e:
        raise fail(str(e), _step_path(model, e.step)) from None
    _check_sizes(model, graph, max_elements, fail)
    _check_jacobian(model, graph, fail)
    wrt = _wrt(model, leaves, fail)
    check_uses(
        model,
        graph,
        wrt,
        lambda message, step: fail(f"step {step!r}: {message}", _step_path(model, step)),
    )
    _check_expect(model, graph, wrt, fail)
    return Case(model, graph, wrt, str(file), _line(lines, ()) or first_line)


def _leaf(name: str, spec, max_elements: int, fail) -> Leaf:
    if isinstance(spec, RandomInput):
        shape, kind = tuple(spec.shape), INT if spec.dtype == "int64" else FLOAT
    else:
        value = spec.value if isinstance(spec, ValueInput) else spec
        shape, kind = _literal_shape(value, fail, name), FLOAT
        if isinstance(spec, ValueInput) and spec.dtype == "int64":
            kind = INT
            _check_integers(name, value, fail)
    size = math.prod(shape)  # exact: shapes may hold huge integers
    if size > max_elements:
        raise fail(
            f"input {name!r} has {_count(size)} elements; the limit is {max_elements}",
            ("inputs", name),
        )
    return Leaf(name, shape, kind)


def _check_integers(name: str, value, fail) -> None:
    values = np.asarray(value, dtype=np.float64)
    with np.errstate(invalid="ignore"):  # inf and nan are refused below, quietly
        whole = np.equal(np.mod(values, 1), 0)
    if not np.all(whole) or np.any(np.abs(values) >= 2.0**63):
        raise fail(
            f"input {name!r}: int64 values must be whole numbers that fit in 64 bits",
            ("inputs", name),
        )


def _check_sizes(model: CaseModel, graph, max_elements: int, fail) -> None:
    """Intermediate results count too: x * y of two small inputs can be huge."""
    for node in graph.nodes:
        size = math.prod(node.shape)
        if size > max_elements:
            raise fail(
                f"step {node.step!r}: {node.op} makes an array of shape "
                f"{_dims(node.shape)} ({_count(size)} elements); the limit is {max_elements}",
                _step_path(model, node.step),
            )


def _check_jacobian(model: CaseModel, graph, fail) -> None:
    rows = math.prod(graph.output_shape)
    if model.jacobian and rows > MAX_JACOBIAN_ROWS:
        raise fail(
            f"jacobian: true asks for {_count(rows)} rows (one per output element); the "
            f"limit is {MAX_JACOBIAN_ROWS}: check a VJP instead (drop `jacobian`)",
            ("jacobian",),
        )


def _count(size: int) -> str:
    # str() of an int with thousands of digits raises; such a count needs no precision
    return str(size) if size < 10**18 else "more than 10^18"


def _dims(shape) -> str:
    return str(list(shape)) if all(d < 10**18 for d in shape) else "[...]"


def _step_path(model: CaseModel, step: str) -> tuple:
    return ("graph", step) if model.graph else ("expr",)


def _literal_shape(value, fail, name) -> tuple[int, ...]:
    try:
        return np.asarray(value, dtype=np.float64).shape
    except (ValueError, OverflowError):
        raise fail(
            f"input {name!r} is not a rectangular array of numbers", ("inputs", name)
        ) from None


def _wrt(model: CaseModel, leaves: dict[str, Leaf], fail) -> list[str]:
    if model.wrt is None:
        return [k for k, leaf in leaves.items() if leaf.kind == FLOAT]
    for i, name in enumerate(model.wrt):
        if name not in leaves:
            raise fail(f"wrt names {name!r}, which is not an input", ("wrt", i))
        if leaves[name].kind == INT:
            raise fail(
                f"wrt names {name!r}, an integer input: integer data is never differentiated",
                ("wrt", i),
            )
    if len(set(model.wrt)) != len(model.wrt) or not model.wrt:
        raise fail("wrt must name each input at most once, and at least one", ("wrt",))
    return list(model.wrt)


def _check_expect(model: CaseModel, graph, wrt: list[str], fail) -> None:
    expect = model.expect
    if expect is None:
        return
    out_shape = graph.output_shape
    if model.jacobian and expect.grad:
        raise fail(
            "expect.grad is for VJP checks; a jacobian case can expect only value",
            ("expect", "grad"),
        )
    if expect.value is not None:
        _check_shape(expect.value, out_shape, "expect.value", ("expect", "value"), fail)
    for name, grad in expect.grad.items():
        if name not in wrt:
            raise fail(
                f"expect.grad names {name!r}, which is not differentiated (wrt: {', '.join(wrt)})",
                ("expect", "grad", name),
            )
        _check_shape(
            grad, graph.inputs[name].shape, f"expect.grad.{name}", ("expect", "grad", name), fail
        )


def _check_shape(value, shape, what: str, path: tuple, fail) -> None:
    got = _literal_shape(value, fail, what)
    if got != tuple(shape):
        raise fail(f"{what} has shape {list(got)}, expected {list(shape)}", path)


def _duplicates(cases: list[Case]) -> list[CaseError]:
    seen: dict[str, Case] = {}
    errors = []
    for case in cases:
        if case.name in seen:
            errors.append(
                CaseError(
                    f"duplicate case name, also defined in "
                    f"{seen[case.name].file}:{seen[case.name].line}",
                    case.file,
                    case.name,
                    case.line,
                )
            )
        seen.setdefault(case.name, case)
    return errors


def _line(lines: dict, path: tuple) -> int | None:
    while path not in lines and path:
        path = path[:-1]
    return lines.get(path)


def _problems(error: ValidationError) -> list[tuple[str, tuple]]:
    """A readable message for each key pydantic refused, and the YAML path it points at."""
    groups: dict[tuple, list[ErrorDetails]] = {}
    for problem in error.errors():
        groups.setdefault(_clean_loc(tuple(problem["loc"]))[:2], []).append(problem)
    return [_message(_deepest(group)) for group in groups.values()]


def _message(problem: ErrorDetails) -> tuple[str, tuple]:
    path = _clean_loc(tuple(problem["loc"]))
    where = ".".join(map(str, path)) or "case"
    if problem["type"] == "extra_forbidden":
        return f"unknown key {where!r}{_suggestion(path, problem)}", path
    if problem["type"] == "missing":
        return f"missing key {where!r}", path
    if path == ("expr",) or (len(path) == 2 and path[0] == "graph"):  # one step's text
        return f"{where}: expected an expression (text), got {_got(problem['input'])}", path
    if _nested_number(problem["loc"]):
        return (
            f"{where}: expected a number or a list of numbers, got {_got(problem['input'])}",
            path,
        )
    return f"{where}: {problem['msg'].removeprefix('Value error, ')}", path


def _deepest(problems: list[ErrorDetails]) -> ErrorDetails:
    """A number in a list fails every branch of the union; the longest location among the
    siblings names the element itself ([1.0, '1e-3'] -> index 1)."""
    return max(problems, key=lambda p: len(p["loc"]))


def _nested_number(loc: tuple) -> bool:
    return any(isinstance(part, str) and part.startswith("list[") for part in loc) or loc[-1:] in (
        ("int",),
        ("float",),
    )


def _got(value) -> str:
    text = repr(value) if len(repr(value)) <= 40 else repr(value)[:37] + "..."
    if isinstance(value, str) and _is_float(value):
        # YAML 1.1 needs a dot and a signed exponent: 1e-3 and 1.0e308 are text, 1.0e-3 a number
        return f"the text {text} (YAML wants a dot and a signed exponent, as in 1.0e-3 or 1.0e+308)"
    return "null" if value is None else f"{type(value).__name__} {text}"


def _is_float(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def _suggestion(path: tuple, problem) -> str:
    return did_you_mean(str(path[-1]), _fields_at(path[:-1]))


def _fields_at(path: tuple) -> list[str]:
    if len(path) == 2 and path[0] == "inputs":
        return list(RandomInput.model_fields) + ["value"]
    models: dict[tuple, type[BaseModel]] = {
        (): CaseModel,
        ("tolerance",): Tolerance,
        ("expect",): Expect,
    }
    model = models.get(path)
    return list(model.model_fields) if model else []


def _clean_loc(loc: tuple) -> tuple:
    """Drop pydantic's union labels ('random', 'int', 'list[...]') from an error location,
    past the keys that may be user names (an input named 'int')."""
    if len(loc) > 2 and loc[0] == "inputs":
        tagged = loc[2] in ("literal", "value", "random")
        return loc[:2] + _unlabelled(loc[3:] if tagged else loc[2:])
    if len(loc) > 1 and loc[0] == "expect":
        keep = 2 if loc[1] == "value" else 3
        return loc[:keep] + _unlabelled(loc[keep:])
    if loc[:1] in (("expr",), ("graph",)):  # a step is text or a number: drop 'str'
        return loc[: 1 if loc[0] == "expr" else 2]
    return loc


def _unlabelled(parts: tuple) -> tuple:
    return tuple(
        p
        for p in parts
        if not (p in ("int", "float") or (isinstance(p, str) and p.startswith("list[")))
    )
