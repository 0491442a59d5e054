"""How often does a correct implementation fail? Random valid cases per family, run through
the engines, and the false-alarm rate: any verdict other than PASS or NONDIFF, since every
engine here is right.

    .venv/bin/python benchmarks/false_alarms.py --cases 1000 --dtypes float64,float32 \
        --engines numpy,fd,torch --out reports/false-alarms

Each family draws random shapes, strides, paddings, seeds and scales (0.1 to 3, log-uniform)
and writes the case as YAML text, loaded through `gradcheck.loading.load_text` like any
catalog file. Families include conv-relu-maxpool-affine-softmax nets, deep tanh chains that
saturate and long RNNs. The jax engine compiles once per new graph shape: on two cores it
fits a smaller `--cases` (say `--engines numpy,jax --cases 200`); each figure names its engines.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Callable

import numpy as np
import yaml

from gradcheck.engines import make_engines
from gradcheck.harness.runner import RunOptions, run_case
from gradcheck.loading import load_text

GOOD = ("PASS", "NONDIFF")


def log_uniform(rng, low=0.1, high=3.0) -> float:
    return round(float(np.exp(rng.uniform(np.log(low), np.log(high)))), 4)


def normal(rng, shape, scale=None) -> dict:
    return {"shape": [int(s) for s in shape], "init": "normal",
            "scale": log_uniform(rng) if scale is None else scale,
            "seed": int(rng.integers(2 ** 31))}


def labels(rng, n: int, classes: int) -> dict:
    return {"shape": [int(n)], "init": "randint", "low": 0, "high": int(classes),
            "seed": int(rng.integers(2 ** 31))}


def pick(rng, options):
    return options[int(rng.integers(len(options)))]


# --- families: rng -> (inputs, graph steps); the last step is the output ------------------

SCALAR_UNARY = ["tanh({})", "sigmoid({})", "exp(tanh({}))", "log(1 + {} * {})", "relu({})",
                "abs({})", "{} ** 2", "1 / (1 + {} * {})", "-{}"]
SCALAR_BINARY = ["{} + {}", "{} - {}", "{} * {}", "maximum({}, {})", "minimum({}, {})",
                 "{} / (1 + {} * {})"]


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
    loss = pick(rng, ["sum((x @ w - y) ** 2)", "mean((x @ w - y) ** 2)",
                      "0.5 * sum((x @ w - y) ** 2) + 0.1 * sum(w * w)", "sum(abs(x @ w - y))"])
    return inputs, {"loss": loss}


def softmax_family(rng):
    n, c, d = int(rng.integers(1, 6)), int(rng.integers(2, 8)), int(rng.integers(1, 6))
    inputs = {"x": normal(rng, [n, d]), "w": normal(rng, [d, c]), "b": normal(rng, [c]),
              "y": labels(rng, n, c)}
    head = pick(rng, ["softmax_cross_entropy(x @ w + b, y)", "softmax(x @ w + b, axis=-1)",
                      "log_softmax(x @ w + b, axis=-1)", "softmax(x @ w + b, axis=0)",
                      "log_softmax(x @ w + b, axis=0)"])
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
    inputs = {"x": normal(rng, [n, c, size, size]), "w": normal(rng, [f, c, k, k]),
              "b": normal(rng, [f])}
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
    n, t, d, h = (int(rng.integers(1, 4)), int(rng.integers(1, 31)), int(rng.integers(1, 5)),
                  int(rng.integers(1, 7)))
    inputs = {"x": normal(rng, [n, t, d]), "h0": normal(rng, [n, h]),
              "wx": normal(rng, [d, h]), "wh": normal(rng, [h, h]), "b": normal(rng, [h])}
    rnn = "rnn(x, h0, wx, wh, b)"
    return inputs, {"out": pick(rng, [rnn, f"sum({rnn} ** 2)", f"mean(tanh({rnn}))"])}


def lstm_family(rng):
    """LSTMs up to 20 steps long: four gates saturating through time."""
    n, t, d, h = (int(rng.integers(1, 4)), int(rng.integers(1, 21)), int(rng.integers(1, 5)),
                  int(rng.integers(1, 6)))
    inputs = {"x": normal(rng, [n, t, d]), "h0": normal(rng, [n, h]), "c0": normal(rng, [n, h]),
              "wx": normal(rng, [d, 4 * h]), "wh": normal(rng, [h, 4 * h]),
              "b": normal(rng, [4 * h])}
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
    return (convnet(rng) if rng.random() < 0.4 else mlp(rng))


def mlp(rng):
    n, d, h, c = (int(v) for v in rng.integers(1, 9, 4))
    c = max(c, 2)
    inputs = {"x": normal(rng, [n, d]), "w1": normal(rng, [d, h]), "b1": normal(rng, [h]),
              "w2": normal(rng, [h, c]), "b2": normal(rng, [c]), "y": labels(rng, n, c)}
    act = pick(rng, ["relu", "tanh", "sigmoid"])
    return inputs, {"hidden": f"{act}(x @ w1 + b1)", "scores": "hidden @ w2 + b2",
                    "loss": "softmax_cross_entropy(scores, y)"}


def convnet(rng):
    """conv -> relu -> max-pool -> affine -> softmax cross-entropy, random geometry."""
    k, stride, pad, size = conv_geometry(rng)
    n, c, f, classes = (int(rng.integers(1, 3)), int(rng.integers(1, 4)),
                        int(rng.integers(1, 5)), int(rng.integers(2, 6)))
    conv_side = (size + 2 * pad - k) // stride + 1
    pool = min(2, conv_side)
    side = (conv_side - pool) // pool + 1
    flat = f * side * side
    inputs = {"x": normal(rng, [n, c, size, size]), "w1": normal(rng, [f, c, k, k]),
              "b1": normal(rng, [f]), "w2": normal(rng, [flat, classes]),
              "b2": normal(rng, [classes]), "y": labels(rng, n, classes)}
    return inputs, {"conv": f"conv2d(x, w1, b1, stride={stride}, pad={pad})",
                    "act": "relu(conv)", "pool": f"maxpool2d(act, size={pool}, stride={pool})",
                    "flat": f"reshape(pool, shape=[{n}, {flat}])",
                    "scores": "flat @ w2 + b2", "loss": "softmax_cross_entropy(scores, y)"}


FAMILIES: dict[str, Callable] = {
    "scalar": scalar_family, "deep-tanh": deep_tanh_family, "l2-wx": l2_wx_family,
    "softmax": softmax_family, "conv2d": conv2d_family, "maxpool": maxpool_family,
    "rnn": rnn_family, "two-layer": two_layer_family, "lstm": lstm_family, "norms": norms_family,
}
# Each family's draws are seeded by its place here (the first eight in the order they were
# sorted in), so that adding a family never changes another's cases.
SEED_ORDER = ["conv2d", "deep-tanh", "l2-wx", "maxpool", "rnn", "scalar", "softmax",
              "two-layer", "lstm", "norms"]


def case_yaml(family: str, index: int, seed: int, dtypes: list[str]) -> str:
    rng = np.random.default_rng([seed, index, SEED_ORDER.index(family)])
    inputs, steps = FAMILIES[family](rng)
    doc = {"name": f"{family}-{index:05d}", "tags": [family, "random"], "inputs": inputs,
           "graph": steps, "dtypes": dtypes}
    return yaml.safe_dump(doc, sort_keys=False)


def generate(family: str, count: int, seed: int, dtypes: list[str]) -> list:
    return [case for i in range(count)
            for case in load_text(case_yaml(family, i, seed, dtypes), f"<{family}-{i}>")]


# --- measuring ----------------------------------------------------------------------------

def measure(cases, dtypes, engines, options) -> tuple[Counter, list[dict]]:
    """Verdict counts per (family, dtype) and the rows that were false alarms."""
    counts, alarms = Counter(), []
    for case in cases:
        for dtype in dtypes:
            row = vars(run_case(case, dtype, engines, options).case)
            counts[(case.family, dtype, str(row["verdict"]))] += 1
            if row["verdict"] not in GOOD:
                alarms.append({k: str(row[k]) for k in ("case", "dtype", "verdict", "blame",
                                                        "message")})
    return counts, alarms


def rates(counts: Counter, families, dtypes) -> list[dict]:
    table = []
    for family in families:
        for dtype in dtypes:
            runs = sum(n for (f, d, _), n in counts.items() if (f, d) == (family, dtype))
            bad = sum(n for (f, d, v), n in counts.items()
                      if (f, d) == (family, dtype) and v not in GOOD)
            nondiff = counts[(family, dtype, "NONDIFF")]
            table.append({"family": family, "dtype": dtype, "runs": runs, "false_alarms": bad,
                          "rate": bad / runs if runs else float("nan"), "nondiff": nondiff})
    return table


def markdown(table: list[dict], engines: list[str]) -> str:
    lines = [f"engines: {', '.join(engines)}", "",
             "| family | dtype | runs | false alarms | rate | NONDIFF |",
             "|---|---|---|---|---|---|"]
    lines += [f"| {r['family']} | {r['dtype']} | {r['runs']} | {r['false_alarms']} | "
              f"{100 * r['rate']:.2f}% | {r['nondiff']} |" for r in table]
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100, help="random cases per family")
    parser.add_argument("--families", default=",".join(FAMILIES))
    parser.add_argument("--dtypes", default="float64,float32")
    parser.add_argument("--engines", default="numpy,fd,torch")
    parser.add_argument("--fd-max-elements", type=int, default=None,
                        help="fd elements per input checked one by one (default: fd's own)")
    parser.add_argument("--no-taylor", action="store_true", help="skip the Taylor test (it "
                        "only informs blame, never a verdict)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, help="folder for rates.md, alarms.json")
    args = parser.parse_args(argv)
    families, dtypes = args.families.split(","), args.dtypes.split(",")
    engines = make_engines(args.engines.split(","))
    options = RunOptions(fd_max_elements=args.fd_max_elements, taylor=not args.no_taylor)
    counts, alarms, done = Counter(), [], []
    for family in families:
        start = time.perf_counter()
        c, a = measure(generate(family, args.cases, args.seed, dtypes), dtypes, engines, options)
        counts.update(c)
        alarms += a
        done.append(family)
        print(f"{family}: {len(a)} false alarm(s), {time.perf_counter() - start:.0f} s",
              file=sys.stderr, flush=True)
        report = markdown(rates(counts, done, dtypes), engines=args.engines.split(","))
        if args.out:        # after every family, so that a long run shows what it has
            write(args.out, report, alarms)
    print(report)
    for alarm in alarms:
        print(f"- {alarm['case']} [{alarm['dtype']}] {alarm['verdict']} "
              f"blame={alarm['blame']}: {alarm['message']}")
    return 0


def write(folder: Path, report: str, alarms: list[dict]) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rates.md").write_text(report + "\n")
    (folder / "alarms.json").write_text(json.dumps(alarms, indent=1))


if __name__ == "__main__":
    sys.exit(main())
