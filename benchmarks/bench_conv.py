"""The reference conv2d (strided windows + tensordot) against a naive six-deep loop, as a
ratio measured in the same process.

    .venv/bin/python benchmarks/bench_conv.py
"""

from __future__ import annotations

import numpy as np

import reference_impls
from timing import best_of

CONV = reference_impls.OPS["conv2d"]


def naive_conv(x, w, b, stride=1, pad=0):
    x = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    n, _c, h, wd = x.shape
    f, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride + 1, (wd - kw) // stride + 1
    out = np.zeros((n, f, oh, ow))
    for i in range(n):
        for k in range(f):
            for r in range(oh):
                for s in range(ow):
                    window = x[i, :, r * stride : r * stride + kh, s * stride : s * stride + kw]
                    out[i, k, r, s] = np.sum(window * w[k]) + b[k]
    return out


def main() -> None:
    rng = np.random.default_rng(0)
    x, w, b = rng.normal(size=(8, 3, 32, 32)), rng.normal(size=(16, 3, 3, 3)), rng.normal(size=16)

    def reference():
        out = CONV.forward(x, w, b, stride=1, pad=1)
        return [rule(np.ones_like(out), out, x, w, b, stride=1, pad=1) for rule in CONV.grads]

    fast = best_of(reference, repeat=5)
    naive = best_of(lambda: naive_conv(x, w, b, 1, 1), repeat=1)
    assert np.allclose(naive_conv(x, w, b, 1, 1), CONV.forward(x, w, b, stride=1, pad=1))
    print(f"reference conv2d forward + 3 gradients, 8x3x32x32 * 16x3x3x3: {fast * 1e3:.1f} ms")
    print(f"naive loop forward alone is {naive / fast:.0f}x slower")


if __name__ == "__main__":
    main()
