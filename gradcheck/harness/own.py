"""Check your own code in one call: `check` (a numpy layer's forward and backward),
`check_loss` (a numpy function returning a value and its gradients), `check_torch` (a torch
function, `Function` or module) and `check_jax` (a jax function with custom rules), with an
`assert_*` twin of each for tests.

Each front door makes your code a `Code` (engines/own: a way to call it and get its outputs
and VJP), and `check_code` does the rest, the same for all: your function becomes a case and
your code an engine. The case's graph is the `reference` (then numpy, fd, torch and jax run
it, and your forward values are compared with theirs), or, without one, a single node whose
op is your forward in float64, registered in a private copy of the numpy op table, so that
`fd` differentiates your own forward. Everything else (cotangents, tolerances, rounding,
blame, reports) is the harness's own. Whatever your code raises or returns is a verdict:
nothing but a wrong argument to these functions raises out of them.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Callable, Mapping

import numpy as np

import reference_impls
from reference_impls import Primitive

from .. import dtypes as dt
from ..engines import BUILTIN, FiniteDifferences, make_engines
from ..engines.base import EngineSkip, UserCodeError
from ..engines.own import ForwardModeLayerCode, LayerCode, OwnEngine, ValueAndGradCode, name_of
from ..engines.own.engine import joined, joined_shape
from ..ir.graph import FLOAT, INT, Graph, GraphError, Leaf, Node, build_graph
from ..loading.case import Case
from ..loading.models import CaseModel
from .api import run, run_metadata
from .compare import EXPECT
from .products import MODES
from .result import RunResult
from .runner import RunOptions, stopped_result
from .verdict import Verdict

JOINED = "joined_outputs"  # the step that joins a reference's several outputs


def check(
    forward: Callable,
    backward: Callable,
    inputs: Mapping,
    *,
    reference=None,
    wrt=None,
    dtypes=None,
    name: str | None = None,
    outputs: int = 1,
    params: Mapping | None = None,
    jvp: Callable | None = None,
    modes=("rev",),
    order: int = 1,
) -> RunResult:
    """Check a numpy layer's `backward` against its `forward` (by finite differences) and,
    given a `reference`, against numpy, torch and jax running that reference.

    inputs: name -> array or number, in the order `forward` takes them. Floating inputs are
        differentiated (or those named in `wrt`); integer arrays are data (labels, masks).
    forward(*arrays, **params): returns `out` or `(out, cache)`; with `outputs=k`,
        `(out_1, ..., out_k, cache)` or `(out_1, ..., out_k)`.
    backward: `backward(dout_1, ..., dout_k, cache)` when the forward returned a cache, else
        `backward(dout_1, ..., dout_k, *arrays, **params)`; returns one gradient per
        differentiated input (or per input, as CS231n's do), or a dict name -> gradient. Each
        gradient must have its input's shape exactly (a (1, D) gradient of a (D,) parameter
        FAILs: an optimizer step would broadcast the parameter).
    reference: the same function in the case language over the same input names: one
        expression, or a dict of named steps (the last is the output; with `outputs=k` the
        last k steps, in order).
    dtypes: any of float64 (the default), float32, bfloat16, float16.
    params: non-array arguments (CS231n's `bn_param`, `conv_param`), passed by keyword to
        `forward` (and to a cache-less `backward`); `functools.partial` does the same.
    name: your engine's name in the tables (default: the backward's name); the case is named
        after it.
    modes: the products checked, as a case's `modes`: "rev" (VJPs, your backward) and/or
        "fwd" (JVPs, your `jvp`, and the dot-product test of the two).
    jvp: your forward mode, which modes "fwd" needs: `jvp(tangents, *arrays, **params)`
        returns the output's tangent J u (with `outputs=k`, a tuple of k), `tangents` one
        array per floating input by name, zeros but for the one input moving. A wrong `jvp`
        FAILs blamed on your engine (`name`).
    order: 1; numpy code has no second derivatives (order=2 is a ValueError).

    Returns a `RunResult`: `.ok`, the tables, `str(result)` the discrepancy table, and
    `.write_reports(dir)`. Your functions are called on copies (writing into `dout` or a
    cache is fine). A forward or backward that raises or returns the wrong thing is an ERROR
    naming it; a forward that disagrees with the reference FAILs blamed on the forward."""
    arrays, floating = _inputs(inputs)
    name = name or _caller(backward)
    code = (
        LayerCode(forward, backward, floating, outputs, params, name)
        if jvp is None
        else ForwardModeLayerCode(forward, backward, jvp, floating, outputs, params, name)
    )
    return check_code(
        code,
        arrays,
        floating,
        reference=reference,
        wrt=wrt,
        dtypes=dtypes,
        outputs=outputs,
        modes=modes,
        order=order,
    )


def check_loss(
    fn: Callable,
    inputs: Mapping,
    *,
    reference=None,
    wrt=None,
    dtypes=None,
    name: str | None = None,
    params: Mapping | None = None,
    modes=("rev",),
    order: int = 1,
) -> RunResult:
    """Check a numpy function that returns a scalar value and its gradients together:
    `fn(*arrays, **params) -> (loss, dx)`, `(loss, dx, dw)`, `(loss, (dx, dw))` or
    `(loss, {name: gradient})` (CS231n's `softmax_loss`, `svm_loss`). Such a function has
    gradients only: `modes` is ("rev",) and `order` 1 (anything else is a ValueError). The
    other arguments are `check`'s."""
    arrays, floating = _inputs(inputs)
    code = ValueAndGradCode(fn, floating, params, name or _caller(fn))
    return check_code(
        code,
        arrays,
        floating,
        reference=reference,
        wrt=wrt,
        dtypes=dtypes,
        modes=modes,
        order=order,
    )


def check_torch(
    fn,
    inputs: Mapping,
    *,
    reference=None,
    wrt=None,
    dtypes=None,
    device: str | None = None,
    name: str | None = None,
    modes=("rev",),
    order: int = 1,
) -> RunResult:
    """Check torch code's gradients as it runs: `torch.autograd.grad` of `fn` in each dtype
    on `device`, so a `Function`'s `backward`, hooks and compiled code are what is checked.

    fn: a function of tensors, `MyFunction.apply`, an `nn.Module` (its parameters join the
        inputs under their `named_parameters()` names, `.` written `_`), a compiled function.
        It may return a tensor, a tuple or a dict of tensors (one cotangent per output).
    inputs: name -> tensor, numpy array or number, in `fn`'s argument order; integer ones
        are data.
    dtypes: any of float64, float32, bfloat16, float16; default: the floating tensors' own.
    device: default the tensors' device ("cuda" where they live there), else "cpu".
    modes: "rev" (VJPs) and/or "fwd": JVPs by torch's forward mode (dual tensors), which runs
        a `Function`'s `jvp` staticmethod; a Function without one is an ERROR saying so.
    order: 2 also checks Hessian-vector products, by double backward through your backward:
        a backward marked `once_differentiable`, or one that modifies a saved tensor in
        place, is an ERROR ("does not support double backward"); one that runs but detaches
        what it differentiates FAILs.
    Without a `reference`, fd differentiates `fn` itself in float64 (where `fn` cannot run
    in float64, fd is left out with that reason). The other arguments are `check`'s."""
    from ..engines.own.torch_code import TorchCode, torch_inputs

    given, own_dtypes, own_device = torch_inputs(inputs, fn)
    arrays, floating = _inputs(given)
    code = TorchCode(fn, list(inputs), device or own_device or "cpu", name or _caller(fn))
    return check_code(
        code,
        arrays,
        floating,
        reference=reference,
        wrt=wrt,
        dtypes=dtypes or own_dtypes or None,
        modes=modes,
        order=order,
    )


def check_jax(
    fn,
    inputs: Mapping,
    *,
    reference=None,
    wrt=None,
    dtypes=None,
    name: str | None = None,
    modes=("rev",),
    order: int = 1,
) -> RunResult:
    """Check jax code's gradients: `jax.vjp` of `fn` (jitted or not) in each dtype, so its
    `custom_vjp` / `custom_jvp` rules are what is checked. `fn` may return an array or a
    pytree of arrays (a dict's outputs come in jax's order: sorted keys).
    modes: "rev" (VJPs) and/or "fwd": JVPs by `jax.jvp`, which runs a `custom_jvp` rule
        directly; a `custom_vjp` function has no forward mode (an ERROR saying so).
    order: 2 also checks Hessian-vector products, forward over reverse (`jax.jvp` of the
        gradient), through your rules.
    The other arguments are `check_torch`'s; dtypes default to the inputs' own floating
    dtypes."""
    from ..engines.own.jax_code import JaxCode

    arrays, floating = _inputs(inputs)
    own = [np.asarray(v).dtype.name for v in inputs.values() if _floating(np.asarray(v))]
    code = JaxCode(fn, list(inputs), name or _caller(fn))
    return check_code(
        code,
        arrays,
        floating,
        reference=reference,
        wrt=wrt,
        dtypes=dtypes or list(dict.fromkeys(own)) or None,
        modes=modes,
        order=order,
    )


def assert_gradients(
    forward: Callable, backward: Callable, inputs: Mapping, **options
) -> RunResult:
    """`check`, raising AssertionError with the discrepancy table when it does not pass."""
    __tracebackhide__ = True  # pytest shows the table, not this frame's arguments
    return _asserted(check(forward, backward, inputs, **options))


def assert_loss_gradients(fn: Callable, inputs: Mapping, **options) -> RunResult:
    """`check_loss`, raising AssertionError with the discrepancy table when it does not pass."""
    __tracebackhide__ = True
    return _asserted(check_loss(fn, inputs, **options))


def assert_torch_gradients(fn, inputs: Mapping, **options) -> RunResult:
    """`check_torch`, raising AssertionError with the discrepancy table when it does not pass."""
    __tracebackhide__ = True
    return _asserted(check_torch(fn, inputs, **options))


def assert_jax_gradients(fn, inputs: Mapping, **options) -> RunResult:
    """`check_jax`, raising AssertionError with the discrepancy table when it does not pass."""
    __tracebackhide__ = True
    return _asserted(check_jax(fn, inputs, **options))


def _asserted(result: RunResult) -> RunResult:
    __tracebackhide__ = True
    if not result.ok:
        raise AssertionError("\n" + str(result))
    return result


# --- the one implementation -------------------------------------------------------------


def check_code(
    code,
    arrays: dict,
    floating: list[str],
    *,
    reference=None,
    wrt=None,
    dtypes=None,
    outputs: int = 1,
    modes=("rev",),
    order: int = 1,
) -> RunResult:
    """Run your `code` (engines/own's protocol) as an engine beside the reference engines
    (or fd of your own forward) on `arrays` (float64, integer data int64), checking the
    products `modes` ("rev", "fwd") and `order` (2: Hessian-vector products) ask for, as
    a case's fields of those names do; a product your kind of code cannot give is a
    ValueError."""
    wrt, dtypes, modes = _wrt(wrt, floating), _dtypes(dtypes), _modes(modes)
    _require_products(code, modes, order, reference)
    if code.name in set(BUILTIN) | {EXPECT}:
        raise ValueError(f"name {code.name!r} is taken by another engine; pass name=...")
    leaves = {
        k: Leaf(k, a.shape, INT if a.dtype.kind in "iub" else FLOAT) for k, a in arrays.items()
    }
    ref_graph = None if reference is None else _reference_graph(reference, leaves, outputs)
    shapes, float64_error = _output_shapes(code, arrays, dtypes)
    graph = ref_graph or _own_graph(code, leaves, shapes)
    case = OwnCase.make(
        _slug(code.name), arrays, graph, wrt, dtypes, reference, {"modes": modes, "order": order}
    )
    engines = _engines(code, shapes, ref_graph, float64_error, list(arrays))
    if ref_graph is None and float64_error is None:
        case.ops = engines[1].ops  # fd's table, your forward in it: the Taylor test's too
    stop = _stop(code, shapes, ref_graph)
    if stop is not None:
        results = [stopped_result(case, d, engines, *stop) for d in dtypes]
        return RunResult.from_case_results(
            results, run_metadata(engines), {case.name: case.details()}
        )
    # in this process (no time limit, no worker): your functions need not pickle, and may
    # be closures
    return run([case], engines=engines, options=RunOptions(timeout=None))


def _output_shapes(code, arrays: dict, dtypes: list[str]):
    """Your outputs' shapes from one forward call, in float64 or else in a checked dtype
    (a float32-only kernel), and what float64 raised (fd needs float64); shapes is a
    UserCodeError when every call failed."""
    errors: list[UserCodeError] = []
    for dtype in dict.fromkeys(["float64", *dtypes]):
        try:
            outs = code.outputs({k: dt.cast(a, dtype) for k, a in arrays.items()})
            return [np.shape(o) for o in outs], (errors[0] if errors else None)
        except UserCodeError as e:
            errors.append(e)
    first_checked = errors[min(1, len(errors) - 1)]  # float64's when it is the checked one
    return first_checked, errors[0]


def _stop(code, shapes, ref_graph) -> tuple | None:
    """(verdict, message, blame) when the run cannot start: your forward failed on every
    dtype (ERROR), or its outputs' shapes are not the reference's (a wrong forward: FAIL)."""
    if isinstance(shapes, UserCodeError):
        return Verdict.ERROR, str(shapes), code.forward_name
    if ref_graph is None:
        return None
    want = ref_graph.output_shape
    if joined_shape(shapes) != want:
        return (
            Verdict.FAIL,
            f"the forward disagrees with the reference: {code.forward_name} "
            f"returned shape(s) {', '.join(str(list(s)) for s in shapes)}, the reference "
            f"{list(want)}",
            code.forward_name,
        )
    return None


def _engines(code, shapes, ref_graph, float64_error, names: list[str]) -> list:
    mine = OwnEngine(code, [] if isinstance(shapes, UserCodeError) else shapes)
    if ref_graph is not None:
        return [mine] + make_engines()
    if float64_error is not None:
        return [
            mine,
            Unavailable(
                "fd", f"fd differentiates your code in float64, which failed: {float64_error}"
            ),
        ]
    own_op = {_op_name(code): Primitive(_float64_forward(code, names), ())}
    return [mine, FiniteDifferences({**reference_impls.OPS, **own_op})]


class Unavailable:
    """An engine that cannot run for a stated reason: each run is a SKIP saying it."""

    def __init__(self, name: str, reason: str):
        self.name, self.reason = name, reason

    def vjp(self, graph, inputs, wrt, cotangent):
        raise EngineSkip(self.reason)


def _float64_forward(code, names: list[str]) -> Callable:
    """Your forward as the own node's op: numpy arrays in, your outputs joined out."""

    def value(*arrays):
        return np.asarray(joined(code.outputs(dict(zip(names, arrays)))), np.float64)

    value.__name__ = code.forward_name
    return value


def _own_graph(code, leaves: dict[str, Leaf], shapes) -> Graph:
    """One node whose op is your forward, under a name no registered op can have."""
    out_shape = () if isinstance(shapes, UserCodeError) or not shapes else joined_shape(shapes)
    graph = Graph(dict(leaves))
    graph.add(Node("out", _op_name(code), tuple(leaves), {}, out_shape, "out"))
    graph.output = "out"
    return graph


def _op_name(code) -> str:
    return f"<{code.forward_name}>"


def _reference_graph(reference, leaves: dict[str, Leaf], outputs: int) -> Graph:
    """One expression, or named steps; with several outputs, the last `outputs` steps
    raveled and joined, as your engine joins your outputs."""
    steps = list(reference.items()) if isinstance(reference, Mapping) else [("out", reference)]
    if outputs > 1:
        if len(steps) < outputs:
            raise ValueError(
                f"reference has {len(steps)} step(s); outputs={outputs} takes "
                "the last ones as the outputs"
            )
        raveled = [f"reshape({k}, shape=[-1])" for k, _ in steps[-outputs:]]
        steps.append((JOINED, f"concat({', '.join(raveled)}, axis=0)"))
    try:
        return build_graph(steps, leaves)
    except GraphError as e:
        raise ValueError(f"reference {_shown(reference)}: {e}") from None


def _shown(reference) -> str:
    return repr(reference) if isinstance(reference, str) else "steps"


class OwnCase(Case):
    """A case whose inputs are your arrays (rounded to each dtype) instead of YAML specs."""

    values: dict[str, np.ndarray]  # set by `make`

    @classmethod
    def make(
        cls,
        name: str,
        arrays: dict,
        graph: Graph,
        wrt: list[str],
        dtypes: list[str],
        reference,
        products: Mapping | None = None,
    ) -> OwnCase:
        """Your case; `products`: its `modes` and `order` (default: the model's own)."""
        body = (
            {"graph": dict(reference)}
            if isinstance(reference, Mapping)
            else {"expr": reference or f"{name}({', '.join(arrays)})"}
        )
        model = CaseModel.model_validate(  # the document a YAML file would hold
            {
                "name": name,
                "inputs": {k: {"shape": list(a.shape)} for k, a in arrays.items()},
                "wrt": wrt,
                "dtypes": dtypes,
                "tags": ["own"],
                "description": "checked with gradcheck.check",
                **body,
                **(products or {}),
            }
        )
        case = cls(model, graph, wrt, "<python>", 0)
        case.values = arrays
        return case

    def arrays(self, dtype: str) -> dict[str, np.ndarray]:
        return {k: dt.cast(a, dtype) for k, a in self.values.items()}


def _floating(array: np.ndarray) -> bool:
    return array.dtype.kind == "f" or array.dtype.name == "bfloat16"


def _inputs(inputs: Mapping) -> tuple[dict[str, np.ndarray], list[str]]:
    """Floating inputs as float64 copies, everything else (labels, masks) as int64."""
    arrays, floating = {}, []
    for name, value in inputs.items():
        array = np.asarray(value)
        if _floating(array):
            arrays[name] = array.astype(np.float64)
            floating.append(name)
        elif array.dtype.kind in "iub":
            arrays[name] = array.astype(np.int64)
        else:
            raise TypeError(
                f"input {name!r} has dtype {array.dtype}; expected floating "
                "numbers, or integers (data such as labels)"
            )
    return arrays, floating


def _wrt(wrt, floating: list[str]) -> list[str]:
    if wrt is None:
        return floating
    wrt = [wrt] if isinstance(wrt, str) else list(wrt)
    wrong = [k for k in wrt if k not in floating]
    if wrong or not wrt:
        raise ValueError(
            f"wrt names {wrong or 'nothing'}: it must name floating inputs among "
            f"{', '.join(floating) or 'none'}"
        )
    return wrt


def _dtypes(dtypes) -> list[str]:
    dtypes = (
        ["float64"] if dtypes is None else [dtypes] if isinstance(dtypes, str) else list(dtypes)
    )
    wrong = [d for d in dtypes if d not in dt.DTYPES]
    if wrong or not dtypes:
        raise ValueError(f"dtypes must be among {', '.join(dt.DTYPES)}, got {dtypes}")
    return list(dict.fromkeys(dtypes))


def _modes(modes) -> list[str]:
    """`modes` as a list: "rev" and/or "fwd", each once (one name alone may be a string)."""
    modes = [modes] if isinstance(modes, str) else list(modes)
    if not modes or len(set(modes)) != len(modes) or set(modes) - set(MODES):
        raise ValueError(f"modes must list rev and/or fwd, each once, got {modes}")
    return modes


def _require_products(code, modes: list[str], order: int, reference) -> None:
    """A ValueError where `modes` or `order` asks for what your kind of code cannot give,
    or for second order without a reference. fd's HVP differentiates the reference's
    gradient; without a reference the only gradient there is is your own backward, so
    your HVP would be held against your backward's derivative, not your forward's, and a
    wrong backward would be blamed on fd's HVP too."""
    if order not in (1, 2):
        raise ValueError(f"order must be 1 or 2, got {order!r}")
    if order == 2 and reference is None:
        raise ValueError(
            "order=2 needs a reference (the same function in the case language): your "
            "Hessian-vector products are checked against the reference's engines"
        )
    asked = {"jvp": "fwd" in modes, "hvp": order == 2}
    missing = [method for method, wanted in asked.items() if wanted and not hasattr(code, method)]
    if missing:
        raise ValueError(
            f"{code.name} cannot give the product(s) asked for ({', '.join(missing)}): "
            f"{getattr(code, 'limits', 'its kind of code lacks them')}"
        )


def _caller(fn) -> str | None:
    """The name of a check of a lambda: the test or function that called `check`, else the
    calling file and line; None (the function's own name) for a named function."""
    if not name_of(fn).startswith("<"):
        return None
    here = os.path.dirname(os.path.dirname(__file__))
    for frame in inspect.stack()[1:]:
        if not frame.filename.startswith(here):
            if frame.function != "<module>":
                return frame.function
            return f"{os.path.splitext(os.path.basename(frame.filename))[0]}_{frame.lineno}"
    return None


def _slug(name: str) -> str:
    """A case name from a function name: `affine_backward` -> `affine-backward`."""
    return re.sub(r"[^a-z0-9.]+", "-", name.lower()).strip("-.")[:120] or "function"
