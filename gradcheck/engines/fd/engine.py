"""The `fd` engine: `differentiate` over a case's numpy forward pass, in float64.

f = <cotangent, forward(x)> for one input x at a time; only the nodes that depend on x are
recomputed, for a stack of perturbed inputs at once (see `batching`), or in place when
`batched=False`. float32, bfloat16 and float16 cases are differenced in float64 from the
same rounded inputs: finite differences in those dtypes are too noisy to judge anything.

Coverage, per input: every element (`full`) up to a size chosen by cost, at least
`FULL_ELEMENTS`; above it `directional`: a few seeded random directions v, with fd's
Richardson estimate of the directional derivative J v (which the comparator holds against
each engine's <g, v>), plus a per-element check of a seeded sample of elements.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np

import reference_impls
from reference_impls import Primitive

from ...dtypes import as_float64
from ..base import Directions, EngineOutput, constants, require_ops
from .batching import dependent_nodes, row_bytes, stacked_forward
from .evaluate import MEMORY_BUDGET
from .stencil import Derivative, differentiate, differentiate_along

FULL, DIRECTIONAL, AUTO = "full", "directional", "auto"
FULL_ELEMENTS = 10_000  # inputs up to this size are always checked element by element
WORK_BUDGET = 4e8  # element-operations affordable per input, which may raise that
SAMPLE_WORK = 2e7  # ... and that sets the per-element sample of a directional check
MIN_SAMPLE, MAX_SAMPLE = 8, 256
DIRECTIONS = 4
# A second look, where fd alone disagrees: stencils 100 and 10,000 times narrower than the
# first (a relu input 1e-6 from its kink lies inside the first, outside both of these), and
# how far apart their two estimates may be: twice their errors, plus what float64 keeps of
# a difference quotient at the narrower step (1e-9 relatively)
SECOND_LOOK = (1e-2, 1e-4)
FD_AGREEMENT, NOISE_GAP = 2.0, 1e-9


class FiniteDifferences:
    def __init__(
        self,
        ops: Mapping[str, Primitive] | None = None,
        step: float = 1e-3,
        max_elements: int | None = None,
        seed: int = 0,
        name: str = "fd",
        coverage: str = AUTO,
        directions: int = DIRECTIONS,
        memory_budget: int = MEMORY_BUDGET,
        batched: bool = True,
    ):
        """max_elements: full coverage up to this size (None: chosen by cost); coverage:
        `auto`, `full` or `directional` for every input; batched: False forces in place."""
        self.ops = reference_impls.OPS if ops is None else ops
        self.step, self.max_elements, self.seed, self.name = step, max_elements, seed, name
        self.coverage, self.directions = coverage, directions
        self.memory_budget, self.batched = memory_budget, batched

    def vjp(self, graph, inputs, wrt, cotangent, settings=None) -> EngineOutput:
        require_ops(self.name, graph, self.ops)
        plan = _Plan(
            getattr(settings, "fd_max_elements", None) or self.max_elements,
            getattr(settings, "fd_coverage", None) or self.coverage,
        )
        with np.errstate(all="ignore"):  # NaN and Inf are judged (NONFINITE), not warned
            return self._vjp(graph, inputs, wrt, cotangent, plan)

    def _vjp(self, graph, inputs, wrt, cotangent, plan) -> EngineOutput:
        env = {k: as_float64(v) for k, v in inputs.items()}
        env.update(constants(graph, np.float64))
        env = reference_impls.forward(graph, self.ops, env)
        result = EngineOutput(np.asarray(env[graph.output]), {})
        weights = np.asarray(cotangent, dtype=np.float64)
        for name in wrt:
            objective = Objective(graph, self.ops, env, name, weights, self.batched)
            self._check(objective, name, env[name], plan, result)
        return result

    def _check(self, objective, name: str, x: np.ndarray, plan, result: EngineOutput) -> None:
        coverage = plan.coverage_of(x.size, objective.work)
        indices = None if coverage == FULL else self._sample(name, x, plan, objective.work)
        found = differentiate(
            objective,
            x,
            indices=indices,
            step=self.step,
            **objective.evaluation(self.memory_budget),
        )
        result.grads[name], result.grad_err[name] = found.grad, found.err
        result.kinks[name], result.checked[name] = found.kink, found.checked
        result.kink_distance[name], result.coverage[name] = found.kink_distance, coverage
        if coverage == DIRECTIONAL:
            result.directions[name] = self._directions(objective, name, x)

    def second_look(self, graph, inputs, cotangent, name: str, indices) -> Derivative:
        """The elements `indices` of `name`'s gradient again, at two narrower stencils
        (SECOND_LOOK x the step): a kink closer to x than the first stencil's reach, and
        unseen by it, is outside theirs. Where the two agree (within twice their errors),
        the better one is the estimate, its error their difference added; where they do
        not, the element is flagged a kink."""
        env = {k: as_float64(v) for k, v in inputs.items()}
        env.update(constants(graph, np.float64))
        env = reference_impls.forward(graph, self.ops, env)
        objective = Objective(
            graph, self.ops, env, name, np.asarray(cotangent, np.float64), self.batched
        )
        with np.errstate(all="ignore"):
            a, b = (
                differentiate(
                    objective,
                    env[name],
                    indices=indices,
                    step=self.step * k,
                    **objective.evaluation(self.memory_budget),
                )
                for k in SECOND_LOOK
            )
        return _agreed(a, b)

    def _sample(self, name: str, x: np.ndarray, plan, work: int) -> np.ndarray:
        """A seeded sample of flat indices: as many as the cost allows, at most the stated
        limit or MAX_SAMPLE."""
        most = plan.max_elements or MAX_SAMPLE
        size = min(x.size, most, max(MIN_SAMPLE, int(SAMPLE_WORK // (4 * work))))
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()), x.size])
        return np.sort(rng.choice(x.size, size, replace=False))

    def _directions(self, objective, name: str, x: np.ndarray) -> Directions:
        """J v for seeded random directions v, scaled like x."""
        rng = np.random.default_rng([self.seed, zlib.crc32(name.encode()), x.size, 1])
        scale = max(float(np.sqrt(np.mean(x * x))), 1e-2) if x.size else 1.0
        vectors = rng.standard_normal((self.directions, x.size)) * scale
        found = differentiate_along(
            objective, x, vectors, step=self.step, **objective.evaluation(self.memory_budget)
        )
        return Directions(vectors.reshape((-1,) + x.shape), found.grad, found.err, found.kink)


@dataclass
class _Plan:
    max_elements: int | None
    coverage: str

    def limit(self, work: int) -> int:
        """The largest input checked element by element: the stated limit, or by cost."""
        if self.max_elements is not None:
            return self.max_elements
        return max(FULL_ELEMENTS, int(WORK_BUDGET // (4 * max(work, 1))))

    def coverage_of(self, size: int, work: int) -> str:
        if self.coverage != AUTO:
            return self.coverage
        return FULL if size <= self.limit(work) else DIRECTIONAL


def _agreed(a: Derivative, b: Derivative) -> Derivative:
    gap = np.abs(a.grad - b.grad)
    better = np.where(a.err <= b.err, a.grad, b.grad)
    kink = a.kink | b.kink | ~(gap <= FD_AGREEMENT * (a.err + b.err) + NOISE_GAP * np.abs(better))
    distance = np.where(a.kink, a.kink_distance, b.kink_distance)
    return Derivative(
        better, np.minimum(a.err, b.err) + gap, kink, distance, a.checked & b.checked, a.batched
    )


class Objective:
    """x -> <cotangent, output> with input `name` set to x, for one x or a stack of them;
    only the nodes that depend on `name` are recomputed, the rest is read from the
    unperturbed pass."""

    def __init__(self, graph, ops, env: dict, name: str, weights: np.ndarray, batched: bool):
        self.nodes = dependent_nodes(graph, [name])
        self.graph, self.ops, self.name, self.weights = graph, ops, name, weights
        self.scratch, self.ndim = dict(env), np.ndim(env[name])
        self.stacked = stacked_forward(graph, ops, env, self.nodes, name) if batched else None
        self.row_bytes = row_bytes(env, [name], self.nodes)
        self.work = int(np.size(env[name]) + sum(_work(node, env) for node in self.nodes))

    def __call__(self, x: np.ndarray):
        if np.ndim(x) > self.ndim:
            out = self.stacked(x)
            return np.sum(out * self.weights, axis=tuple(range(1, np.ndim(out))))
        self.scratch[self.name] = x
        reference_impls.forward(self.graph, self.ops, self.scratch, self.nodes)
        return float(np.sum(self.scratch[self.graph.output] * self.weights))

    def evaluation(self, memory_budget: int) -> dict:
        """How `differentiate` should call this: stacked where the graph allows it."""
        return {
            "vectorized": None if self.stacked else False,
            "memory_budget": memory_budget,
            "row_bytes": self.row_bytes,
        }


def _work(node, env: dict) -> int:
    """About how many multiply-adds one evaluation of `node` costs."""
    args = [env[a] for a in node.args]
    return int(WORK.get(node.op, _plain_work)(np.size(env[node.name]), *args))


def _plain_work(out_size: int, *args) -> int:
    return out_size + sum(np.size(a) for a in args)


WORK = {
    "matmul": lambda out_size, a, b: out_size * np.shape(a)[-1],
    "conv2d": lambda out_size, x, w, *rest: out_size * np.size(w[0]),
}
