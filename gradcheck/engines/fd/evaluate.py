"""Evaluating a function at many single-element perturbations of one point.

`evaluator(f, x, ...)` gives a callable `values(flat, deltas)`: f at x + deltas[k] in
element flat[k], for every k, as row k of a (len(flat), f's size) array (one column for a
scalar f). Two ways, the same numbers up to rounding:
- in place: one array is changed at one element, f is called, the element is restored
  (no copy of the whole input per evaluation);
- batched: perturbed copies are stacked along a new leading axis and go through one
  vectorized call, `f(stack) -> one value (or array) per row`, in chunks of rows that fit
  a memory budget. The stack is filled once; between chunks only the perturbed entries are
  reset.
"""

from __future__ import annotations

import numpy as np

MEMORY_BUDGET = 64 * 2**20  # bytes for the stacked inputs and a chunk's intermediates
ROW_FACTOR = 4  # a callable's working memory per row, in inputs' worth
PROBE_RTOL = 1e-9  # batched and single calls must agree this well to be trusted


class InPlace:
    def __init__(self, f, x: np.ndarray):
        self.f, self.x, self.flat_x = f, x, x.reshape(-1)  # x is ours: contiguous, float64

    def __call__(self, flat: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        rows = []
        for i, delta in zip(flat.tolist(), deltas.tolist()):
            old = self.flat_x[i]
            self.flat_x[i] = old + delta
            try:
                # copied before x is restored: f may return x itself, or a view of it
                rows.append(np.array(self.f(self.x), dtype=np.float64).reshape(-1))
            finally:
                self.flat_x[i] = old  # restored exactly, not by subtracting delta
        return np.array(rows).reshape(len(flat), -1)


class Batched:
    def __init__(self, f, x: np.ndarray, rows: int):
        self.f, self.x, self.rows = f, x, max(1, int(rows))
        self.stack: np.ndarray | None = None  # allocated on first use, at the chunk size

    def __call__(self, flat: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        chunks = [
            self._chunk(flat[start : start + self.rows], deltas[start : start + self.rows])
            for start in range(0, len(flat), self.rows)
        ]
        return np.concatenate(chunks)

    def _chunk(self, flat: np.ndarray, deltas: np.ndarray) -> np.ndarray:
        n = len(flat)
        if self.stack is None or len(self.stack) < n:
            self.stack = np.repeat(self.x[None], min(self.rows, max(n, 1)), axis=0)
        rows = self.stack.reshape(len(self.stack), -1)
        original = self.x.reshape(-1)[flat]
        rows[np.arange(n), flat] = original + deltas
        try:
            # copied before the stack is reset: f may return the stack itself, or a view
            return np.array(self.f(self.stack[:n]), dtype=np.float64).reshape(n, -1)
        finally:
            rows[np.arange(n), flat] = original


def evaluator(
    f,
    x: np.ndarray,
    vectorized: bool | None = None,
    memory_budget: int = MEMORY_BUDGET,
    row_bytes: int | None = None,
):
    """In place, or batched where `f` takes stacked inputs: `vectorized` True trusts it,
    None finds out by a probe (`accepts_stacks`)."""
    if vectorized is None:
        vectorized = accepts_stacks(f, x)
    if not vectorized:
        return InPlace(f, x)
    row_bytes = row_bytes or ROW_FACTOR * max(x.nbytes, 8)
    return Batched(f, x, memory_budget // max(row_bytes, 1))


def accepts_stacks(f, x: np.ndarray) -> bool:
    """Whether f(stack of inputs) gives each row's f(input): tried on two rows (x moved at
    its first and at its last element) against two single calls. A reduction over every
    axis, a reduction over the wrong axis, or an error means no."""
    flat = np.array([0, x.size - 1])
    deltas = np.array([1.0, -1.0]) * max(1e-3 * float(np.max(np.abs(x), initial=0)), 1e-3)
    try:
        with np.errstate(all="ignore"):
            batched = Batched(f, x, rows=2)(flat, deltas)
    except Exception:  # noqa: BLE001 -- any failure of the batched call means no
        return False
    with np.errstate(all="ignore"):
        single = InPlace(f, x)(flat, deltas)
    if batched.shape != single.shape:  # a reduction over the stack, say
        return False
    scale = np.maximum(np.abs(single), 1.0)
    return bool(np.all(np.abs(batched - single) <= PROBE_RTOL * scale))
