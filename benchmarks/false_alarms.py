"""How often does a correct implementation fail? Random valid cases per family, run through
the engines, and the false-alarm rate: any verdict other than PASS or NONDIFF, since every
engine here is right, but for a FAIL that names an engine whose op the accuracy table
measures wrong at the case's inputs (harness/accuracy.py): that alarm is right, and it is
counted apart as an engine fault.

    .venv/bin/python benchmarks/false_alarms.py --cases 1000 --dtypes float64,float32 \
        --engines numpy,fd,torch,jax --out reports/false-alarms

Each family draws random shapes, strides, paddings, seeds and scales (0.1 to 3, log-uniform)
and writes the case as YAML text, loaded through `gradcheck.loading.load_text` like any
catalog file. Families include conv-relu-maxpool-affine-softmax nets, deep tanh chains that
saturate, long RNNs, attention, embeddings, basic indexing, einsum, dropout masks and SVM
hinge losses. The default engines are all four; the jax engine compiles once per new graph
shape, so on two cores it fits a smaller `--cases` (say `--cases 200`, or `--engines
numpy,fd,torch` without it); each figure names its engines. `--markdown PATH` writes the
rates as one row per family, a pair of columns per dtype, for the documentation
(docs/tables/false-alarms.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import numpy as np
import yaml

from gradcheck.engines import make_engines
from gradcheck.harness.runner import RunOptions, run_case
from gradcheck.loading import load_text

GOOD = ("PASS", "NONDIFF")
ENGINE_FAULT = "ENGINE_FAULT"  # a FAIL naming an engine measured wrong there: not a false alarm


def log_uniform(rng, low=0.1, high=3.0) -> float:
    return round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 4)


def normal(rng, shape, scale=None) -> dict:
    return {
        "shape": [int(s) for s in shape],
        "init": "normal",
        "scale": log_uniform(rng) if scale is None else scale,
        "seed": int(rng.integers(2**31)),
    }


def labels(rng, n: int, classes: int) -> dict:
    return {
        "shape": [int(n)],
        "init": "randint",
        "low": 0,
        "high": int(classes),
        "seed": int(rng.integers(2**31)),
    }


def pick(rng, options):
    return options[int(rng.integers(len(options)))]


# --- families: rng -> (inputs, graph steps); the last step is the output ------------------

SCALAR_UNARY = [
    "tanh({})",
    "sigmoid({})",
    "exp(tanh({}))",
    "log(1 + {} * {})",
    "relu({})",
    "abs({})",
    "{} ** 2",
    "1 / (1 + {} * {})",
    "-{}",
]
SCALAR_BINARY = [
    "{} + {}",
    "{} - {}",
    "{} * {}",
    "maximum({}, {})",
    "minimum({}, {})",
    "{} / (1 + {} * {})",
]


def scalar_family(rng):
    """A random expression graph over a few scalar and vector inputs, reduced by `sum`."""
    shape = pick(rng, [[], [3], [4, 2]])
    names = ["a", "b", "c"][: int(rng.integers(2, 4))]
    inputs = {n: normal(rng, shape) for n in names}
    steps, pool = {}, list(names)
    for i in range(int(rng.integers(2, 8))):
        steps[f"s{i}"] = _scalar_step(rng, pool)
        pool.append(f"s{i}")
    steps["out"] = f"sum({pool[-1]})" if shape else pool[-1]
    return inputs, steps


def _scalar_step(rng, pool):
    a, b = pick(rng, pool), pick(rng, pool)
    if rng.random() < 0.5:
        template = pick(rng, SCALAR_UNARY)
        return template.format(*[a] * template.count("{}"))
    template = pick(rng, SCALAR_BINARY)
    return template.format(a, *[b] * (template.count("{}") - 1))


def deep_tanh_family(rng):
    """A chain of tanh layers with large weights: units saturate, gradients vanish."""
    n, d = int(rng.integers(1, 4)), int(rng.integers(2, 6))
    inputs = {"x": normal(rng, [n, d], 1.0)}
    steps, h = {}, "x"
    for i in range(int(rng.integers(3, 9))):
        inputs[f"w{i}"] = normal(rng, [d, d], log_uniform(rng, 0.5, 3.0))
        steps[f"h{i}"] = f"tanh({h} @ w{i})"
        h = f"h{i}"
    steps["out"] = f"sum({h} ** 2)"
    return inputs, steps


def l2_wx_family(rng):
    n, d, m = (int(v) for v in rng.integers(1, 7, 3))
    inputs = {"x": normal(rng, [n, d]), "w": normal(rng, [d, m]), "y": normal(rng, [n, m])}
    loss = pick(
        rng,
        [
            "sum((x @ w - y) ** 2)",
            "mean((x @ w - y) ** 2)",
            "0.5 * sum((x @ w - y) ** 2) + 0.1 * sum(w * w)",
            "sum(abs(x @ w - y))",
        ],
    )
    return inputs, {"loss": loss}


def softmax_family(rng):
    n, c, d = int(rng.integers(1, 6)), int(rng.integers(2, 8)), int(rng.integers(1, 6))
    inputs = {
        "x": normal(rng, [n, d]),
        "w": normal(rng, [d, c]),
        "b": normal(rng, [c]),
        "y": labels(rng, n, c),
    }
    head = pick(
        rng,
        [
            "softmax_cross_entropy(x @ w + b, y)",
            "softmax(x @ w + b, axis=-1)",
            "log_softmax(x @ w + b, axis=-1)",
            "softmax(x @ w + b, axis=0)",
            "log_softmax(x @ w + b, axis=0)",
        ],
    )
    if "cross_entropy" not in head:
        inputs.pop("y")
    return inputs, {"out": head}


def conv_geometry(rng):
    """Kernel, stride, padding and an input size that gives at least one output pixel and
    is no smaller than the padding (a case refuses padding past its input)."""
    k, stride = int(rng.integers(1, 4)), int(rng.integers(1, 3))
    pad = int(rng.integers(0, k))
    size = int(rng.integers(max(k - 2 * pad, pad, 1), 9))
    return k, stride, pad, size


def conv2d_family(rng):
    k, stride, pad, size = conv_geometry(rng)
    n, c, f = (int(v) for v in rng.integers(1, 4, 3))
    inputs = {
        "x": normal(rng, [n, c, size, size]),
        "w": normal(rng, [f, c, k, k]),
        "b": normal(rng, [f]),
    }
    conv = f"conv2d(x, w, b, stride={stride}, pad={pad})"
    out = pick(rng, [conv, f"sum({conv} ** 2)", f"tanh({conv})", f"relu({conv})"])
    return inputs, {"out": out}


def maxpool_family(rng):
    size, stride = int(rng.integers(1, 4)), int(rng.integers(1, 4))
    side = int(rng.integers(size, 10))
    inputs = {"x": normal(rng, [int(rng.integers(1, 3)), int(rng.integers(1, 4)), side, side])}
    pool = f"maxpool2d(x, size={size}, stride={stride})"
    relu_first = f"maxpool2d(relu(x), size={size}, stride={stride})"
    return inputs, {"out": pick(rng, [pool, f"sum({pool} ** 2)", relu_first])}


def rnn_family(rng):
    """Vanilla RNNs up to 30 steps long: gradients that vanish or saturate through time."""
    n, t, d, h = (
        int(rng.integers(1, 4)),
        int(rng.integers(1, 31)),
        int(rng.integers(1, 5)),
        int(rng.integers(1, 7)),
    )
    inputs = {
        "x": normal(rng, [n, t, d]),
        "h0": normal(rng, [n, h]),
        "wx": normal(rng, [d, h]),
        "wh": normal(rng, [h, h]),
        "b": normal(rng, [h]),
    }
    rnn = "rnn(x, h0, wx, wh, b)"
    return inputs, {"out": pick(rng, [rnn, f"sum({rnn} ** 2)", f"mean(tanh({rnn}))"])}


def lstm_family(rng):
    """LSTMs up to 20 steps long: four gates saturating through time."""
    n, t, d, h = (
        int(rng.integers(1, 4)),
        int(rng.integers(1, 21)),
        int(rng.integers(1, 5)),
        int(rng.integers(1, 6)),
    )
    inputs = {
        "x": normal(rng, [n, t, d]),
        "h0": normal(rng, [n, h]),
        "c0": normal(rng, [n, h]),
        "wx": normal(rng, [d, 4 * h]),
        "wh": normal(rng, [h, 4 * h]),
        "b": normal(rng, [4 * h]),
    }
    lstm = "lstm(x, h0, c0, wx, wh, b)"
    return inputs, {"out": pick(rng, [lstm, f"sum({lstm} ** 2)", f"mean(tanh({lstm}))"])}


def norms_family(rng):
    """Batch norm (2-D or spatial) and layer norm, with their scale and shift, into a loss:
    statistics whose gradients nearly cancel. At least 2 values per channel (torch refuses a
    training-mode batch norm of one)."""
    n, c = int(rng.integers(1, 6)), int(rng.integers(1, 5))
    spatial = rng.random() < 0.5
    shape = [n, c] + ([int(rng.integers(1, 4)), int(rng.integers(1, 4))] if spatial else [])
    shape[0] = max(n, 2) if int(np.prod(shape)) // c < 2 else n
    norm = pick(rng, ["batchnorm", "layernorm"])
    width = c if norm == "batchnorm" else shape[-1]
    eps = pick(rng, [1e-5, 1e-3])
    inputs = {"x": normal(rng, shape), "gamma": normal(rng, [width]), "beta": normal(rng, [width])}
    out = f"{norm}(x, gamma, beta, eps={eps})"
    return inputs, {"out": pick(rng, [out, f"sum(tanh({out}) ** 2)", f"mean({out} ** 3)"])}


def two_layer_family(rng):
    return convnet(rng) if rng.random() < 0.4 else mlp(rng)


def mlp(rng):
    n, d, h, c = (int(v) for v in rng.integers(1, 9, 4))
    c = max(c, 2)
    inputs = {
        "x": normal(rng, [n, d]),
        "w1": normal(rng, [d, h]),
        "b1": normal(rng, [h]),
        "w2": normal(rng, [h, c]),
        "b2": normal(rng, [c]),
        "y": labels(rng, n, c),
    }
    act = pick(rng, ["relu", "tanh", "sigmoid"])
    return inputs, {
        "hidden": f"{act}(x @ w1 + b1)",
        "scores": "hidden @ w2 + b2",
        "loss": "softmax_cross_entropy(scores, y)",
    }


def convnet(rng):
    """conv -> relu -> max-pool -> affine -> softmax cross-entropy, random geometry."""
    k, stride, pad, size = conv_geometry(rng)
    n, c, f, classes = (
        int(rng.integers(1, 3)),
        int(rng.integers(1, 4)),
        int(rng.integers(1, 5)),
        int(rng.integers(2, 6)),
    )
    conv_side = (size + 2 * pad - k) // stride + 1
    pool = min(2, conv_side)
    side = (conv_side - pool) // pool + 1
    flat = f * side * side
    inputs = {
        "x": normal(rng, [n, c, size, size]),
        "w1": normal(rng, [f, c, k, k]),
        "b1": normal(rng, [f]),
        "w2": normal(rng, [flat, classes]),
        "b2": normal(rng, [classes]),
        "y": labels(rng, n, classes),
    }
    return inputs, {
        "conv": f"conv2d(x, w1, b1, stride={stride}, pad={pad})",
        "act": "relu(conv)",
        "pool": f"maxpool2d(act, size={pool}, stride={pool})",
        "flat": f"reshape(pool, shape=[{n}, {flat}])",
        "scores": "flat @ w2 + b2",
        "loss": "softmax_cross_entropy(scores, y)",
    }


def int_values(rng, shape, high: int) -> dict:
    """Explicit integer data in [0, high), with at least one value repeated when there are
    two or more (an embedding lookup that hits one row twice accumulates its gradient)."""
    values = rng.integers(0, high, shape)
    flat = values.reshape(-1)
    if flat.size >= 2:
        flat[int(rng.integers(1, flat.size))] = flat[0]
    return {"value": values.tolist(), "dtype": "int64"}


def attention_family(rng):
    """Scaled dot-product attention softmax(q k^T / sqrt(d)) v, batched or not, from given
    q, k, v or from projections of one x (self-attention); the softmax written as `softmax`
    or as exp(s - logsumexp(s)); into a loss or as the output."""
    batched = rng.random() < 0.5
    lead = [int(rng.integers(1, 4))] if batched else []
    tq, tk, d, dv = (int(v) for v in rng.integers(1, 6, 4))
    kt = "transpose(k, axes=[0, 2, 1])" if batched else "transpose(k)"
    if rng.random() < 0.6:
        inputs = {
            "q": normal(rng, lead + [tq, d]),
            "k": normal(rng, lead + [tk, d]),
            "v": normal(rng, lead + [tk, dv]),
        }
        steps = {}
    else:
        din = int(rng.integers(1, 5))
        inputs = {
            "x": normal(rng, lead + [tk, din]),
            "wq": normal(rng, [din, d]),
            "wk": normal(rng, [din, d]),
            "wv": normal(rng, [din, dv]),
        }
        steps = {"q": "x @ wq", "k": "x @ wk", "v": "x @ wv"}
    steps["scores"] = f"q @ {kt} / {float(np.sqrt(d))!r}"
    steps["p"] = pick(
        rng, ["softmax(scores, axis=-1)", "exp(scores - logsumexp(scores, axis=-1, keepdims=True))"]
    )
    steps["att"] = "p @ v"
    steps["out"] = pick(rng, ["att", "sum(att ** 2)", "mean(tanh(att))", "sum(sin(att))"])
    return inputs, steps


def embedding_family(rng):
    """take(table, ids, axis=0) with integer ids of one or two axes (a row repeated at least
    once), into a squared loss, a tanh projection, or a bag-of-words softmax classifier."""
    vocab, dim = int(rng.integers(2, 10)), int(rng.integers(1, 6))
    ids_shape = [int(rng.integers(1, 6))] + (
        [int(rng.integers(1, 6))] if rng.random() < 0.5 else []
    )
    inputs = {"E": normal(rng, [vocab, dim]), "ids": int_values(rng, ids_shape, vocab)}
    head = pick(rng, ["squares", "projection", "classifier"])
    if head == "squares":
        return inputs, {"emb": "take(E, ids, axis=0)", "out": "sum(emb ** 2)"}
    if head == "projection":
        inputs["w"] = normal(rng, [dim, int(rng.integers(1, 5))])
        return inputs, {"emb": "take(E, ids, axis=0)", "out": "mean(tanh(emb @ w))"}
    classes = int(rng.integers(2, 5))
    inputs.update(
        {
            "W": normal(rng, [dim, classes]),
            "b": normal(rng, [classes]),
            "y": labels(rng, ids_shape[0], classes),
        }
    )
    bag = "mean(take(E, ids, axis=0), axis=1)" if len(ids_shape) == 2 else "take(E, ids, axis=0)"
    return inputs, {"bag": bag, "scores": "bag @ W + b", "loss": "softmax_cross_entropy(scores, y)"}


def _index_entry(rng, n: int) -> str:
    """One axis of a basic index that keeps at least one element of an axis of size n."""
    kind = pick(rng, ["all", "range", "step", "int", "reverse"])
    if kind == "all":
        return ":"
    if kind == "int":
        return str(int(rng.integers(-n, n)))
    if kind == "reverse":
        return pick(rng, ["::-1", f"{n - 1}::-{int(rng.integers(1, n + 1))}"])
    start = int(rng.integers(0, n))
    if kind == "range":
        return f"{start}:{int(rng.integers(start + 1, n + 1))}"
    return pick(rng, [f"::{int(rng.integers(1, 4))}", f"{start}::{int(rng.integers(1, 4))}"])


def _index_key(rng, shape) -> str:
    entries = [_index_entry(rng, n) for n in shape]
    if len(entries) > 1 and rng.random() < 0.3:  # trailing axes as ...
        cut = int(rng.integers(1, len(entries)))
        entries = entries[:cut] + ["..."]
    elif rng.random() < 0.2:  # leading axes as ...
        entries = ["..."] + entries[int(rng.integers(1, len(entries) + 1)) :]
    for _ in range(int(rng.integers(0, 3)) if rng.random() < 0.4 else 0):
        entries.insert(int(rng.integers(0, len(entries) + 1)), "None")
    return ", ".join(entries) if entries else "..."


def indexing_family(rng):
    """Basic indexing (slices with steps, negative steps, integers, ... and None) of a 1-3
    axis x, one or two reads of it, into a smooth loss."""
    shape = [int(v) for v in rng.integers(1, 6, int(rng.integers(1, 4)))]
    inputs = {"x": normal(rng, shape)}
    steps = {"y": f"x[{_index_key(rng, shape)}]"}
    loss = pick(rng, ["sum(tanh(y) ** 2)", "sum(exp(tanh(y)))", "mean(y * y) + sum(sin(y))"])
    if rng.random() < 0.4:
        steps["z"] = f"x[{_index_key(rng, shape)}]"
        loss += " + sum(z ** 3)"
    steps["out"] = loss
    return inputs, steps


EINSUM_FORMS = [  # subscripts, operand shapes by letter
    ("ij,jk->ik", "ij,jk"),
    ("bij,bjk->bik", "bij,bjk"),
    ("bij,bjk->bki", "bij,bjk"),
    ("bij,jk->bik", "bij,jk"),
    ("ij,ij->", "ij,ij"),
    ("ij,ji->", "ij,ji"),
    ("ij->j", "ij"),
    ("ij->", "ij"),
    ("i,j->ij", "i,j"),
    ("ijk->kji", "ijk"),
    ("ij,jk", "ij,jk"),
    ("i,i->", "i,i"),
    ("bi,bj->bij", "bi,bj"),
]


def einsum_family(rng):
    """numpy einsum: matrix products batched or not, trace-like full contractions
    ("ij,ji->" is trace(a b)), sums over one operand's letters, outer products and
    permutations; a scalar out as it is or through tanh, an array into a loss."""
    subscripts, terms = pick(rng, EINSUM_FORMS)
    sizes = {c: int(rng.integers(1, 5)) for c in sorted(set(terms) - {","})}
    names = ["a", "b", "c"]
    inputs = {
        names[i]: normal(rng, [sizes[c] for c in term]) for i, term in enumerate(terms.split(","))
    }
    expr = f'einsum("{subscripts}", {", ".join(inputs)})'
    scalar = subscripts.endswith("->")
    out = pick(rng, ["e", "tanh(e)"] if scalar else ["e", "sum(e ** 2)", "sum(sin(e))"])
    return inputs, {"e": expr, "out": out}


def dropout_family(rng):
    """A small net with a fixed dropout mask on its hidden layer: a seeded bernoulli mask
    (keep probability p) scaled by 1 / p, left out of wrt, or an integer 0/1 mask; into a
    softmax cross-entropy or a squared loss."""
    n, d, h, c = (
        int(rng.integers(1, 7)),
        int(rng.integers(1, 6)),
        int(rng.integers(1, 9)),
        int(rng.integers(2, 5)),
    )
    p = round(float(rng.uniform(0.3, 0.95)), 3)
    inputs = {
        "x": normal(rng, [n, d]),
        "w1": normal(rng, [d, h]),
        "b1": normal(rng, [h]),
        "w2": normal(rng, [h, c]),
    }
    act = pick(rng, ["relu", "tanh", "sigmoid", "gelu"])
    if rng.random() < 0.7:
        inputs["m"] = {
            "shape": [n, h],
            "init": "bernoulli",
            "p": p,
            "seed": int(rng.integers(2**31)),
        }
    else:
        inputs["m"] = {
            "shape": [n, h],
            "init": "randint",
            "low": 0,
            "high": 2,
            "seed": int(rng.integers(2**31)),
        }
    steps = {"hidden": f"{act}(x @ w1 + b1) * m / {p}", "scores": "hidden @ w2"}
    if rng.random() < 0.6:
        inputs["y"] = labels(rng, n, c)
        steps["loss"] = "softmax_cross_entropy(scores, y)"
    else:
        steps["loss"] = "sum(scores ** 2)"
    return inputs, steps, ["x", "w1", "b1", "w2"]


def svm_family(rng):
    """The multiclass SVM (hinge) loss written with ops: margins max(0, s - s_y + 1) with the
    correct-class score s_y picked by take_along_axis(s, expand_dims(y, 1), 1), minus the
    correct class's own margin of 1, mean over rows; optionally a bias and L2 term. Scores
    near a hinge give NONDIFF, which counts as good."""
    n, d, c = int(rng.integers(1, 7)), int(rng.integers(1, 6)), int(rng.integers(2, 6))
    inputs = {"X": normal(rng, [n, d]), "W": normal(rng, [d, c]), "y": labels(rng, n, c)}
    steps = {"s": "X @ W"}
    if rng.random() < 0.4:
        inputs["b"] = normal(rng, [c])
        steps["s"] = "X @ W + b"
    steps["margins"] = pick(
        rng,
        [
            "maximum(0, s - take_along_axis(s, expand_dims(y, 1), axis=1) + 1)",
            "relu(s - take_along_axis(s, expand_dims(y, axis=1), axis=1) + 1)",
        ],
    )
    loss = pick(rng, ["mean(sum(margins, axis=1) - 1)", f"(sum(margins) - {n}) / {n}"])
    if rng.random() < 0.3:
        loss += " + 0.1 * sum(W * W)"
    steps["loss"] = loss
    return inputs, steps


FAMILIES: dict[str, Callable] = {
    "scalar": scalar_family,
    "deep-tanh": deep_tanh_family,
    "l2-wx": l2_wx_family,
    "softmax": softmax_family,
    "conv2d": conv2d_family,
    "maxpool": maxpool_family,
    "rnn": rnn_family,
    "two-layer": two_layer_family,
    "lstm": lstm_family,
    "norms": norms_family,
    "attention": attention_family,
    "embedding": embedding_family,
    "indexing": indexing_family,
    "einsum": einsum_family,
    "dropout": dropout_family,
    "svm": svm_family,
}
# Each family's draws are seeded by its place here (the first eight in the order they were
# sorted in), so that adding a family never changes another's cases.
SEED_ORDER = [
    "conv2d",
    "deep-tanh",
    "l2-wx",
    "maxpool",
    "rnn",
    "scalar",
    "softmax",
    "two-layer",
    "lstm",
    "norms",
    "attention",
    "embedding",
    "indexing",
    "einsum",
    "dropout",
    "svm",
]


def case_yaml(family: str, index: int, seed: int, dtypes: list[str]) -> str:
    rng = np.random.default_rng([seed, index, SEED_ORDER.index(family)])
    inputs, steps, *wrt = FAMILIES[family](rng)  # a family may name wrt third
    doc = {
        "name": f"{family}-{index:05d}",
        "tags": [family, "random"],
        "inputs": inputs,
        "graph": steps,
        "dtypes": dtypes,
    }
    if wrt:
        doc["wrt"] = wrt[0]
    return yaml.safe_dump(doc, sort_keys=False)


def generate(family: str, count: int, seed: int, dtypes: list[str]) -> list:
    return [
        case
        for i in range(count)
        for case in load_text(case_yaml(family, i, seed, dtypes), f"<{family}-{i}>")
    ]


# --- measuring ----------------------------------------------------------------------------


def measure(cases, dtypes, engines, options) -> tuple[Counter, list[dict]]:
    """Verdict counts per (family, dtype) and the rows that were not PASS or NONDIFF. A FAIL
    whose every blamed engine has an op that the accuracy table measures wrong at the case's
    inputs (`CaseResult.faults`) is counted as an ENGINE_FAULT: the alarm is right."""
    counts, alarms = Counter(), []
    for case in cases:
        for dtype in dtypes:
            result = run_case(case, dtype, engines, options)
            row = vars(result.case)
            verdict = ENGINE_FAULT if _engine_fault(result) else str(row["verdict"])
            counts[(case.family, dtype, verdict)] += 1
            if verdict not in GOOD:
                keys = ("case", "dtype", "verdict", "blame", "message")
                alarms.append({**{k: str(row[k]) for k in keys}, "kind": verdict})
    return counts, alarms


def _engine_fault(result) -> bool:
    blamed = set(result.case.blame.split())
    return bool(blamed) and blamed <= {f.engine for f in result.faults}


def rates(counts: Counter, families, dtypes) -> list[dict]:
    table = []
    for family in families:
        for dtype in dtypes:
            ours = {v: n for (f, d, v), n in counts.items() if (f, d) == (family, dtype)}
            runs = sum(ours.values())
            faults = ours.get(ENGINE_FAULT, 0)
            bad = sum(n for v, n in ours.items() if v not in GOOD) - faults
            table.append(
                {
                    "family": family,
                    "dtype": dtype,
                    "runs": runs,
                    "false_alarms": bad,
                    "rate": bad / runs if runs else float("nan"),
                    "nondiff": ours.get("NONDIFF", 0),
                    "engine_faults": faults,
                }
            )
    return table


def markdown(table: list[dict], engines: list[str]) -> str:
    lines = [
        f"engines: {', '.join(engines)}",
        "",
        "| family | dtype | runs | false alarms | rate | NONDIFF | engine faults |",
        "|---|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {r['family']} | {r['dtype']} | {r['runs']} | {r['false_alarms']} | "
        f"{100 * r['rate']:.2f}% | {r['nondiff']} | {r['engine_faults']} |"
        for r in table
    ]
    return "\n".join(lines)


def wide_markdown(table: list[dict], dtypes: list[str]) -> str:
    """The rates with a row per family and, per dtype, its runs and false alarms (and its
    engine faults, where there are any)."""
    header = " | ".join(f"{d} runs | {d} false alarms" for d in dtypes)
    lines = [f"| family | {header} |", "|---" * (1 + 2 * len(dtypes)) + "|"]
    by_family: dict[str, dict] = {}
    for r in table:
        by_family.setdefault(r["family"], {})[r["dtype"]] = r
    for family, rows in by_family.items():
        cells = " | ".join(f"{rows[d]['runs']:,} | {_alarms_cell(rows[d])}" for d in dtypes)
        lines.append(f"| {family} | {cells} |")
    return "\n".join(lines) + "\n"


def _alarms_cell(row: dict) -> str:
    cell = f"{row['false_alarms']:,} ({100 * row['rate']:.2f}%)"
    faults = row["engine_faults"]
    return cell + (f" + {faults} engine fault{'s' * (faults > 1)}" if faults else "")


DEFAULT_ENGINES = "numpy,fd,torch,jax"  # as a default run of gradcheck uses them


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="random cases per family")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument(
        "--engines",
        default=DEFAULT_ENGINES,
        help=f"comma-separated engines (default: {DEFAULT_ENGINES})",
    )
    parser.add_argument(
        "--fd-max-elements",
        type=int,
        default=None,
        help="fd elements per input checked one by one (default: fd's own)",
    )
    parser.add_argument(
        "--no-taylor",
        action="store_true",
        help="skip the Taylor test (it only informs blame, never a verdict)",
    )
    parser.add_argument(
        "--modes", default="rev", help="products: rev and/or fwd, comma-separated (default: rev)"
    )
    parser.add_argument(
        "--order", type=int, choices=[1, 2], default=1, help="2: Hessian-vector products too"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for rates.md, alarms.json")
    parser.add_argument(
        "--markdown", type=Path, metavar="PATH", help="also write the rates here, one row a family"
    )
    args = parser.parse_args(argv)
    families, dtypes = args.families.split(","), args.dtypes.split(",")
    engines = make_engines(args.engines.split(","))
    options = RunOptions(
        fd_max_elements=args.fd_max_elements,
        taylor=not args.no_taylor,
        modes=args.modes.split(","),
        order=args.order,
    )
    counts, alarms, done = Counter(), [], []
    for family in families:
        start = time.perf_counter()
        c, a = measure(generate(family, args.cases, args.seed, dtypes), dtypes, engines, options)
        counts.update(c)
        alarms += a
        done.append(family)
        faults = sum(x["kind"] == ENGINE_FAULT for x in a)
        print(
            f"{family}: {len(a) - faults} false alarm(s), {faults} engine fault(s), "
            f"{time.perf_counter() - start:.0f} s",
            file=sys.stderr,
            flush=True,
        )
        report = markdown(rates(counts, done, dtypes), engines=args.engines.split(","))
        if args.out:  # after every family, so that a long run shows what it has
            write(args.out, report, alarms)
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(wide_markdown(rates(counts, done, dtypes), dtypes))
        print(f"wrote {args.markdown}", file=sys.stderr)
    for alarm in alarms:
        print(
            f"- {alarm['case']} [{alarm['dtype']}] {alarm['kind']} "
            f"blame={alarm['blame']}: {alarm['message']}"
        )
    return 0


def write(folder: Path, report: str, alarms: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rates.md").write_text(report + "\n")
    (folder / "alarms.json").write_text(json.dumps(alarms, indent=1))


if __name__ == "__main__":
    sys.exit(main())
