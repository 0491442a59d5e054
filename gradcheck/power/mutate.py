"""Mutation testing of the catalog: how many realistic backprop bugs does it catch?

Every mutant of the corpus (`corpus.py`) replaces the `numpy` engine, beside the unmutated
engines, on each case that uses the mutated op. The unmutated engines (fd, torch, jax) run
once per case and dtype; their outputs are replayed for every mutant, so only the mutated
numpy engine and the comparator run again: minutes, not hours.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..engines import EngineSkip, NumpyEngine, call_vjp, make_engines
from ..harness.result import write_table
from ..harness.runner import RunOptions, run_case
from ..harness.verdict import FAILING
from ..reports.mutants import render_mutants_html
from .corpus import Mutant, all_mutants

MUTATION_FILES = {"mutants": "mutants.csv", "matrix": "matrix.csv", "baseline": "baseline.csv"}

REFERENCES = ("fd", "torch", "jax")
KILLED, SHARED, SURVIVED = "killed", "blame shared", "survived"
EQUIVALENT, UNEXERCISED, NOT_APPLICABLE = "equivalent", "unexercised", "not applicable"
MUTANT_COLUMNS = [
    "mutant",
    "description",
    "killed",
    "blamed_alone",
    "cases",
    "op",
    "status",
    "equivalent",
    "killed_dtypes",
    "runs",
]
STATUS_ORDER = [SURVIVED, UNEXERCISED, SHARED, KILLED, EQUIVALENT, NOT_APPLICABLE]


class Replay:
    """An engine that runs its wrapped engine once per case, dtype and cotangent, and
    answers every later call with the recorded output (or the recorded exception)."""

    def __init__(self, engine):
        self.engine, self.name = engine, engine.name
        self.recorded: dict = {}

    def vjp(self, graph, inputs, wrt, cotangent, settings):
        key = ("vjp", id(graph), tuple(wrt), cotangent.dtype.str, cotangent.tobytes())
        return self._replayed(key, call_vjp, self.engine, graph, inputs, wrt, cotangent, settings)

    def jvp(self, graph, inputs, wrt, tangents):
        key = ("jvp", id(graph), tuple(wrt), _fingerprint(tangents))
        return self._replayed(key, _product, "jvp", self.engine, graph, inputs, wrt, tangents)

    def hvp(self, graph, inputs, wrt, cotangent, tangents):
        key = ("hvp", id(graph), tuple(wrt), cotangent.tobytes(), _fingerprint(tangents))
        args = (graph, inputs, wrt, cotangent, tangents)
        return self._replayed(key, _product, "hvp", self.engine, *args)

    def _replayed(self, key, run, *args):
        if key not in self.recorded:
            self.recorded[key] = _recorded(run, *args)
        output, error = self.recorded[key]
        if error is not None:
            raise error
        return output


def _recorded(run, *args) -> tuple:
    try:
        return run(*args), None
    except Exception as e:  # noqa: BLE001 -- replayed to every mutant as the engine's own ERROR/SKIP
        return None, e


def _product(product: str, engine, *args):
    """The engine's JVP or HVP; an engine without it is skipped for that product."""
    method = getattr(engine, product, None)
    if method is None:
        raise EngineSkip(f"{engine.name} gives no {product}")
    return method(*args)


def _fingerprint(arrays) -> tuple:
    return tuple((k, np.asarray(v).dtype.str, np.asarray(v).tobytes()) for k, v in arrays.items())


@dataclass
class MutationResult:
    mutants: pd.DataFrame  # one row per mutant: MUTANT_COLUMNS
    matrix: pd.DataFrame  # mutant x case[dtype]: killed / blamed: ... / survived / ''
    baseline: pd.DataFrame  # the unmutated run: case, dtype, verdict, blame
    metadata: dict = field(default_factory=dict)

    @property
    def counted(self) -> pd.DataFrame:
        """The mutants that count: applicable, and not equivalent."""
        return self.mutants[~self.mutants["status"].isin([EQUIVALENT, NOT_APPLICABLE])]

    @property
    def kill_rate(self) -> float:
        counted = self.counted
        return float((counted["status"] == KILLED).mean()) if len(counted) else 1.0

    @property
    def ok(self) -> bool:
        return bool((self.counted["status"] == KILLED).all())


def mutate(
    cases,
    mutants: Iterable[Mutant] | None = None,
    dtypes=None,
    references=None,
    progress: Callable[[str], None] | None = None,
) -> MutationResult:
    """Run every applicable mutant on the cases that use its op, beside `references`
    (default: fd, torch, jax), each engine's result computed once per case and dtype."""
    start = time.perf_counter()
    mutants = all_mutants() if mutants is None else list(mutants)
    replays = [Replay(e) for e in (make_engines(REFERENCES) if references is None else references)]
    runs = [(c, d) for c in cases for d in (list(dtypes) if dtypes else c.dtypes)]
    options = RunOptions(bounds_memo={})  # the reference's rounding, computed once per case
    baseline = {
        (c.name, d): _outcome(run_case(c, d, [NumpyEngine()] + replays, options)) for c, d in runs
    }
    judged = [(c, d) for c, d in runs if baseline[(c.name, d)][0] not in FAILING]
    reference_seconds = time.perf_counter() - start
    cells, rows = {}, []
    for mutant in mutants:
        if progress:
            progress(mutant.name)
        outcomes = _run_mutant(mutant, judged, replays, options)
        cells[mutant.name] = {f"{c}[{d}]": _cell(o) for (c, d), o in outcomes.items()}
        rows.append(_summary(mutant, outcomes, {d for _, d in runs}))
    return MutationResult(
        _sorted(pd.DataFrame(rows, columns=MUTANT_COLUMNS)),
        _matrix(cells, runs),
        _baseline_frame(baseline),
        _metadata(replays, cases, runs, start, reference_seconds),
    )


def _metadata(replays, cases, runs, start: float, reference_seconds: float) -> dict:
    return {
        "references": [r.name for r in replays],
        "cases": len(cases),
        "runs": len(runs),
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": " ".join(sys.argv),
        "seconds": round(time.perf_counter() - start, 1),
        "reference_seconds": round(reference_seconds, 1),
    }


def select(names: Iterable[str] = ()) -> list[Mutant]:
    """The corpus, or the mutants whose name starts with one of `names` (`matmul`,
    `softmax.last-axis`)."""
    names = tuple(names)
    return [m for m in all_mutants() if not names or m.name.startswith(names)]


def _run_mutant(mutant: Mutant, runs, replays, options: RunOptions) -> dict:
    if not mutant.applicable():
        return {}
    engine = mutant.engine()
    return {
        (c.name, d): _outcome(run_case(c, d, [engine] + replays, options))
        for c, d in runs
        if mutant.exercised_by(c)
    }


def _outcome(result) -> tuple[str, str]:
    return str(result.case.verdict), result.case.blame


def _cell(outcome: tuple[str, str]) -> str:
    verdict, blamed = outcome
    if verdict not in FAILING:
        return SURVIVED
    return KILLED if blamed == "numpy" else f"blamed: {blamed}"


def _summary(mutant: Mutant, outcomes: dict, dtypes: set[str]) -> dict:
    caught = {key for key, o in outcomes.items() if o[0] in FAILING}
    alone = {key for key in caught if outcomes[key][1] == "numpy"}
    killed = bool(outcomes) and {d for _, d in caught} >= dtypes
    blamed_alone = bool(outcomes) and {d for _, d in alone} >= dtypes
    return {
        "mutant": mutant.name,
        "description": mutant.description,
        "killed": killed,
        "blamed_alone": blamed_alone,
        "cases": " ".join(dict.fromkeys(c for c, _ in sorted(alone))),
        "op": mutant.op,
        "status": _status(mutant, outcomes, killed, blamed_alone),
        "equivalent": mutant.equivalent,
        "killed_dtypes": " ".join(sorted({d for _, d in alone})),
        "runs": len(outcomes),
    }


def _status(mutant: Mutant, outcomes: dict, killed: bool, blamed_alone: bool) -> str:
    if not mutant.applicable():
        return NOT_APPLICABLE
    if mutant.equivalent:
        return EQUIVALENT
    if not outcomes:
        return UNEXERCISED
    if blamed_alone:
        return KILLED
    return SHARED if killed else SURVIVED


def _sorted(frame: pd.DataFrame) -> pd.DataFrame:
    """Survivors first: the rows that need a new case."""
    rank = frame["status"].map(STATUS_ORDER.index)
    return (
        frame.assign(_rank=rank)
        .sort_values(["_rank", "mutant"], kind="stable")
        .drop(columns="_rank")
        .reset_index(drop=True)
    )


def _matrix(cells: dict, runs) -> pd.DataFrame:
    columns = [f"{c.name}[{d}]" for c, d in runs]
    frame = pd.DataFrame.from_dict(cells, orient="index", columns=columns).fillna("")
    return frame.rename_axis("mutant").reset_index()


def _baseline_frame(baseline: dict) -> pd.DataFrame:
    return pd.DataFrame(
        [{"case": c, "dtype": d, "verdict": v, "blame": b} for (c, d), (v, b) in baseline.items()]
    )


def write_mutation_reports(result, out_dir) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for attr, filename in MUTATION_FILES.items():
        write_table(getattr(result, attr), out / filename)
    (out / "mutants.html").write_text(render_mutants_html(result), encoding="utf-8")
    return out
