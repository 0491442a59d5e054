"""The `fd` engine: `differentiate` over a case's numpy forward pass, in float64.

f = <cotangent, forward(x)> for one input x at a time; only the nodes that depend on x are
recomputed, for a stack of perturbed inputs at once (see `batching`), or in place when
`batched=False`. float32, bfloat16 and float16 cases are differenced in float64 from the
same rounded inputs: finite differences in those dtypes are too noisy to judge anything.

Coverage, per input: every element (`full`) up to a size chosen by cost, at least
`FULL_ELEMENTS`; above it `directional`: a few seeded random directions v, with fd's
Richardson estimate of the directional derivative J v (which the comparator holds against
each engine's <g, v>), plus a per-element check of a seeded sample of elements.

Forward mode and second order use the same stencil along one direction, applied to every
element of an array at once: `jvp` differentiates the whole output along each input's
tangent (that input alone moving), `hvp` the reference's exact gradient of
<cotangent, output> (`reference_impls.backprop`) along all the tangents together.
"""

from __future__ import annotations

import zlib
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

import reference_impls
from reference_impls import Primitive

from ...dtypes import as_float64
from ..base import Directions, EngineOutput, constants, require_ops
from .batching import dependent_nodes, row_bytes, stacked_forward
from .evaluate import MEMORY_BUDGET
from .stencil import Derivative, differentiate, differentiate_along, power_of_two

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
# The Hessian-vector product is estimated at fd's step and at one this many times narrower
HVP_NARROWING = 4.0
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

    def jvp(self, graph, inputs, wrt, tangents) -> EngineOutput:
        """grads[x] = J_x u_x: the stencil of the whole output along u_x, x alone moving."""
        require_ops(self.name, graph, self.ops)
        with np.errstate(all="ignore"):
            env = self._forward(graph, inputs)
            result = EngineOutput(np.asarray(env[graph.output]), {})
            for name in wrt:
                output = Objective(graph, self.ops, env, name, None, self.batched)
                evaluation = output.evaluation(self.memory_budget)
                _record(result, name, self._along(output, env[name], tangents[name], evaluation))
        return result

    def hvp(self, graph, inputs, wrt, cotangent, tangents) -> EngineOutput:
        """grads[x] = (H u)_x: the stencil of the exact gradient of <cotangent, output> (the
        numpy reference's backward) along u, every input of `wrt` moving at once."""
        require_ops(self.name, graph, self.ops)
        with np.errstate(all="ignore"):
            env = self._forward(graph, inputs)
            gradient = Gradient(graph, self.ops, env, wrt, as_float64(cotangent))
            at, along = gradient.packed(env), gradient.packed(tangents)
            evaluation = {"vectorized": False, "memory_budget": self.memory_budget}
            found = _closer(
                self._along(gradient, at, along, evaluation),
                self._along(gradient, at, along, evaluation, HVP_NARROWING),
            )
        result = EngineOutput(np.asarray(env[graph.output]), {})
        for name in wrt:
            _record(result, name, found, lambda flat, name=name: gradient.part(flat, name))
        return result

    def _forward(self, graph, inputs) -> dict:
        """Every value of the graph's numpy forward pass, in float64 from the inputs."""
        env = {k: as_float64(v) for k, v in inputs.items()}
        env.update(constants(graph, np.float64))
        return reference_impls.forward(graph, self.ops, env)

    def _along(self, f, x: np.ndarray, u, evaluation: dict, narrowing: float = 1.0) -> Derivative:
        """The derivative of every element of f's output along u at x: the stencil runs
        along u times a power of two (exact to undo) that makes it about as large as x,
        as the directional checks' vectors are."""
        u = as_float64(u)
        scale = power_of_two(_typical_size(x) / _rms(u)) if _rms(u) > 0 else 1.0
        d = differentiate_along(
            f, x, u[None] * scale, step=self.step / narrowing, vector_valued=True, **evaluation
        )
        # its one direction, in u's units (a kink's distance too: in multiples of u)
        return Derivative(
            d.grad[0] / scale,
            d.err[0] / scale,
            d.kink[0],
            d.kink_distance[0] * scale,
            d.checked[0],
            d.batched,
        )

    def _vjp(self, graph, inputs, wrt, cotangent, plan) -> EngineOutput:
        env = self._forward(graph, inputs)
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
        _record(result, name, found)
        result.kink_distance[name], result.coverage[name] = found.kink_distance, coverage
        if coverage == DIRECTIONAL:
            result.directions[name] = self._directions(objective, name, x)

    def second_look(self, graph, inputs, cotangent, name: str, indices) -> Derivative:
        """The elements `indices` of `name`'s gradient again, at two narrower stencils
        (SECOND_LOOK x the step): a kink closer to x than the first stencil's reach, and
        unseen by it, is outside theirs. Where the two agree (within twice their errors),
        the better one is the estimate, its error their difference added; where they do
        not, the element is flagged a kink."""
        env = self._forward(graph, inputs)
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

    def second_look_jvp(self, graph, inputs, tangents, name: str) -> Derivative:
        """J_x u_x (x = `name`) again, as `second_look` looks at a gradient: at two narrower
        stencils, the better where they agree, a kink where they do not. A chaotic rnn's
        late outputs bend within the first stencil along u (rnn-00076 of the false-alarm
        benchmark: 0.94 off, with an error estimate of 0.03); at 1e-2 of its width the
        estimate is within 1e-8."""
        env = self._forward(graph, inputs)
        output = Objective(graph, self.ops, env, name, None, self.batched)
        evaluation = output.evaluation(self.memory_budget)
        with np.errstate(all="ignore"):
            a, b = (
                self._along(output, env[name], tangents[name], evaluation, narrowing=1 / k)
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
        vectors = rng.standard_normal((self.directions, x.size)) * _typical_size(x)
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


def _record(result: EngineOutput, name: str, found: Derivative, part=lambda a: a) -> None:
    """An estimate and what fd says of it, as `name`'s: `part` of each of `found`'s arrays."""
    result.grads[name], result.grad_err[name] = part(found.grad), part(found.err)
    result.kinks[name], result.checked[name] = part(found.kink), part(found.checked)


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x * x))) if x.size else 0.0


def _typical_size(x: np.ndarray) -> float:
    """How large a direction to step along at x: x's root mean square, at least 1e-2."""
    return max(_rms(x), 1e-2) if x.size else 1.0


def _closer(a: Derivative, b: Derivative) -> Derivative:
    """Two estimates of a smooth derivative at different steps: the one with the smaller
    error, whose error also holds their gap (a gradient that bends within the wider
    stencil can make its Richardson error estimate too small)."""
    gap = np.abs(a.grad - b.grad)
    better = np.where(a.err <= b.err, a.grad, b.grad)
    return replace(a, grad=better, err=np.minimum(a.err, b.err) + gap, kink=a.kink | b.kink)


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
    unperturbed pass. With no cotangent (`weights` None): x -> the output itself."""

    def __init__(self, graph, ops, env: dict, name: str, weights: np.ndarray | None, batched: bool):
        self.nodes = dependent_nodes(graph, [name])
        self.graph, self.ops, self.name, self.weights = graph, ops, name, weights
        self.scratch, self.ndim = dict(env), np.ndim(env[name])
        self.stacked = stacked_forward(graph, ops, env, self.nodes, name) if batched else None
        self.row_bytes = row_bytes(env, [name], self.nodes)
        self.work = int(np.size(env[name]) + sum(_work(node, env) for node in self.nodes))

    def __call__(self, x: np.ndarray):
        if np.ndim(x) > self.ndim:
            assert self.stacked is not None  # a stack of x comes only to a batched objective
            out = self.stacked(x)
            if self.weights is None:
                return out
            return np.sum(out * self.weights, axis=tuple(range(1, np.ndim(out))))
        self.scratch[self.name] = x
        reference_impls.forward(self.graph, self.ops, self.scratch, self.nodes)
        out = self.scratch[self.graph.output]
        return out if self.weights is None else float(np.sum(out * self.weights))

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


class Gradient:
    """x -> the numpy reference's exact gradient of <cotangent, output> over the inputs
    `wrt`, all of them moving: x and the gradient each packed into one flat vector, input
    after input. What the Hessian-vector product differentiates."""

    def __init__(self, graph, ops, env: dict, wrt, cotangent: np.ndarray):
        self.graph, self.ops, self.env, self.wrt = graph, ops, env, list(wrt)
        self.cotangent = cotangent
        self.shapes = [np.shape(env[w]) for w in self.wrt]
        self.ends = np.cumsum([int(np.prod(shape)) for shape in self.shapes])

    def __call__(self, x: np.ndarray) -> np.ndarray:
        moved = {w: self.part(x, w) for w in self.wrt}
        # backprop runs the forward pass again into the env it is given: a copy
        _, grads = reference_impls.backprop(
            self.graph, self.ops, {**self.env, **moved}, self.wrt, self.cotangent
        )
        return self.packed(grads)

    def packed(self, arrays) -> np.ndarray:
        return np.concatenate([as_float64(arrays[w]).reshape(-1) for w in self.wrt])

    def part(self, flat: np.ndarray, name: str) -> np.ndarray:
        """Input `name`'s part of a packed vector, in its shape."""
        i = self.wrt.index(name)
        start = self.ends[i - 1] if i else 0
        return flat[start : self.ends[i]].reshape(self.shapes[i])
