"""Which products a case checks, how an engine is asked for each, and the dot-product test.

A VJP (reverse mode) is what every engine gives; an engine with a `jvp` or `hvp` method
(engines/base.py) gives forward-mode products J_x u_x and Hessian-vector products H u too,
for the same seeded directions u (`Case.tangents`). Each product's results are compared
across engines as VJPs are, by the same comparator, rounding model and blame (runner.py).
The dot-product (adjoint) test holds one engine's two modes against each other,
<v, J_x u_x> = <J_x^T v, u_x> with v the cotangent: an engine whose forward and reverse
modes disagree is named even when no other engine is present.
"""

from __future__ import annotations

import numpy as np

from ..engines.base import EngineOutput, Settings, as_output
from .compare import comparison_row, judge, tolerance_for
from .rows import ADJOINT, HVP, JVP, VJP, ComparisonRow

MODES = {"rev": VJP, "fwd": JVP}


def wanted(case, modes=None, order=None) -> list[str]:
    """The products to check: the case's `modes` and `order`, or the run's overrides."""
    chosen = [MODES[m] for m in (modes or case.modes)]
    return chosen + ([HVP] if (order or case.order) == 2 else [])


def call(
    product: str, engine, case, arrays, settings: Settings, tangents, cotangent=None
) -> EngineOutput | None:
    """`engine`'s JVPs or HVP for the case (None: the engine does not give that product);
    an HVP's cotangent is the case's unless one is given."""
    method = getattr(engine, product, None)
    if method is None:
        return None
    if product == JVP:
        return as_output(method(case.graph, arrays, case.wrt, tangents))
    if cotangent is None:
        cotangent = case.cotangent(settings.dtype)
    return as_output(method(case.graph, arrays, case.wrt, cotangent, tangents))


def adjoint_rows(case, dtype: str, vjps: dict, jvps: dict, bounds: dict, tangents) -> list:
    """Per engine with both modes, per input: <v, J_x u_x> against <J_x^T v, u_x>. Their gap
    may be each side's rounding (its bound, or an estimate's error) summed along v and u."""
    v = np.asarray(case.cotangent(dtype), dtype=np.float64)
    rows = []
    for name in [n for n in jvps if n in vjps and _complete(vjps[n], case.wrt)]:
        for x in case.wrt:
            u = np.asarray(tangents[x], np.float64)
            sides = _dot_sides(v, u, _vjp_of(case, vjps[name], v), jvps[name], x)
            slack = _slack(sides, bounds, name, x, v, u, case)
            rows.append(_adjoint_row(case, dtype, name, x, sides, slack, bounds.get(VJP)))
    return rows


def _vjp_of(case, output: EngineOutput, v) -> EngineOutput:
    """The VJP with the cotangent v: a full Jacobian's rows contracted with v."""
    if not case.jacobian:
        return output
    return EngineOutput(
        output.value,
        {x: _contracted(g, v) for x, g in output.grads.items()},
        grad_err={x: _contracted(e, np.abs(v)) for x, e in output.grad_err.items()},
    )


def _contracted(jacobian, v) -> np.ndarray:
    return np.tensordot(v.ravel(), np.asarray(jacobian, np.float64), axes=1)


def _complete(vjp: EngineOutput, wrt) -> bool:
    """An estimate's VJP enters the test only where it computed every element, no kink."""
    return all(
        np.all(vjp.checked.get(x, True)) and not np.any(vjp.kinks.get(x, False)) for x in wrt
    )


def _dot_sides(v, u, vjp: EngineOutput, jvp: EngineOutput, x: str) -> dict:
    jv, g = np.asarray(jvp.grads[x], np.float64), np.asarray(vjp.grads[x], np.float64)
    return {
        "forward": float(np.sum(v * jv)),
        "reverse": float(np.sum(g * u)),
        "terms": float(np.sum(np.abs(v * jv)) + np.sum(np.abs(g * u))),
        "err": float(
            np.sum(np.abs(v) * jvp.grad_err.get(x, 0.0))
            + np.sum(np.abs(u) * vjp.grad_err.get(x, 0.0))
        ),
    }


def _slack(sides: dict, bounds: dict, name: str, x: str, v, u, case) -> float:
    """What rounding may put between the two sides: each product's bound along the vector
    it is dotted with, or, with no bound, the fixed tolerance of the terms' size."""
    if bounds.get(VJP) is None or bounds.get(JVP) is None:
        return sides["err"]
    along_v = np.sum(np.abs(v) * bounds[JVP].of(name).grads[x])
    reverse = _vjp_of(case, bounds[VJP].of(name), np.abs(v)).grads[x]
    along_u = np.sum(np.abs(u) * reverse)
    return sides["err"] + float(along_v + along_u)


def _adjoint_row(case, dtype, name, x, sides, slack, bounded) -> ComparisonRow:
    tol = tolerance_for(dtype, False, case.tolerance, bounded is not None)
    floor = tol.rtol * sides["terms"]  # cancelling terms: their size, not the total's
    j = judge(
        np.asarray(sides["forward"]),
        np.asarray(sides["reverse"]),
        tol,
        round_err=np.asarray(slack + floor),
    )
    j.message = j.message or "<v, J u> (forward) vs <J^T v, u> (reverse)"
    return comparison_row(case.name, dtype, x, (name, name), j, 1, product=ADJOINT)
