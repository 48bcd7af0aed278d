"""Metrics and tables of ``benchmarks/tuning.py``: from finished studies to numbers.

Per problem p, optimiser and protocol (q):

* regret curve r_s(t): regret after t trials of the trial the study reports as best (lowest
  reported value), measured on the noiseless function, seed s (:func:`best_regret_curve`);
* NR_p(t) = mean_s r_s(t) / E[best regret of uniform random search after t trials]
  (random = 1, optimum = 0); the aggregate is the mean of NR_p over problems;
* mean log10 regret, log10(max(r, 1e-10)) averaged over seeds;
* CPU seconds per suggestion, median and p95 over all suggestions of all seeds;
* for q > 1, the sequential (q = 1) trials the same optimiser needs for its mean regret to
  reach the mean regret that q reaches after t trials.

E[best regret of uniform random search] is estimated from a pool of N random evaluations
(:func:`random_pool`) with the exact U-statistic
E[regret of the reported best of t draws] = Σ_k w_k r_(k), w_k = C(N−k, t−1) / C(N, t),
where r_(k) is the true regret of the k-th lowest *reported* value (failures last): the
average over every t-subset of the pool, i.e. Monte Carlo with all subsets as draws.
"""

from __future__ import annotations

import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.resources import ParameterSpec
from tuning_problems import Params, Problem
from tuning_runners import RunRecord

LOG_FLOOR = 1e-10
#: Failures after this trial count toward "failed after warm-up" (HPT_NOTES goal G11).
WARMUP_TRIALS = 15
#: The problems of HPT_NOTES' goal lines and of the stored reference traces.
CORE = ("branin", "hartmann6", "mixed")


def checkpoints(budget: int) -> list[int]:
    return sorted({t for t in (30, 50, 100, budget) if t <= budget})


def summarise_cell(
    runs: Sequence[RunRecord], optimum: float, worst: float, reference: Sequence[float]
) -> dict[str, Any]:
    """Everything reported for one (problem, optimiser, q): curves, NR, log10, CPU, failures."""
    budget = min(r.budget for r in runs)
    curves = np.array(
        [best_regret_curve(r.reported, r.true, optimum, worst)[:budget] for r in runs]
    )
    mean = curves.mean(axis=0)
    ref = np.asarray(reference[:budget], dtype=float)
    nr = np.divide(mean, ref, out=np.full_like(mean, np.nan), where=ref > 0)
    logs = np.log10(np.maximum(curves, LOG_FLOOR)).mean(axis=0)
    cpu = np.array([c for r in runs for c in r.suggest_cpu_s])
    late = [v for r in runs for v in r.reported[WARMUP_TRIALS:]]
    return {
        "seeds": sorted(r.seed for r in runs),
        "budget": budget,
        **{f"NR@{t}": _num(nr[t - 1]) for t in checkpoints(budget)},
        **{f"log10@{t}": _num(logs[t - 1]) for t in checkpoints(budget)},
        "cpu_s_median": _num(np.median(cpu)),
        "cpu_s_p95": _num(np.percentile(cpu, 95)),
        "failed_fraction": _num(np.mean([v is None for r in runs for v in r.reported])),
        "failed_fraction_after_warmup": _num(np.mean([v is None for v in late])) if late else None,
        "wall_s_total": _num(sum(r.wall_s for r in runs)),
        "mean_regret": _round(mean),
        "median_regret": _round(np.median(curves, axis=0)),
        "normalised_regret": _round(nr),
        "mean_log10_regret": _round(logs),
        "runs": [
            {"seed": r.seed, "regret": _round(c), "cpu_s": _round(r.suggest_cpu_s, 3)}
            for r, c in zip(runs, curves, strict=True)
        ],
    }


def aggregate(cells: Mapping[str, Mapping[str, Any]], problems: Sequence[str]) -> dict[str, Any]:
    """Mean NR over ``problems`` at each checkpoint every cell reaches (None if any missing)."""
    out: dict[str, Any] = {"problems": list(problems)}
    present = [cells.get(p) for p in problems]
    if not problems or any(c is None for c in present):
        return out
    budget = min(c["budget"] for c in present if c is not None)
    for t in checkpoints(budget):
        values = [c.get(f"NR@{t}") for c in present if c is not None]
        if all(v is not None for v in values):
            out[f"NR@{t}"] = _num(float(np.mean(values)))
    return out


def sequential_to_match(sequential: Sequence[float], target: float) -> int | None:
    """The first t (1-based) with ``sequential[t-1] <= target``; None if never."""
    for t, value in enumerate(sequential, start=1):
        if value <= target:
            return t
    return None


def parallel_cost(results: Mapping[int, Mapping[str, Mapping[str, Any]]]) -> dict[str, Any]:
    """For each q > 1, optimiser and problem: q's mean regret at t and the q=1 trials to match.

    Both means are over the seeds the two protocols have in common (an interrupted run may
    have one more seed in one of them).
    """
    out: dict[str, Any] = {}
    for q, by_optimizer in results.items():
        for optimizer, cells in by_optimizer.items() if q != 1 else ():
            for problem, cell in cells.items():
                seq = results.get(1, {}).get(optimizer, {}).get(problem)
                common = set(cell["seeds"]) & set(seq["seeds"]) if seq else set()
                if not common:
                    continue
                parallel, sequential = _mean_curve(cell, common), _mean_curve(seq, common)
                row: dict[str, Any] = {"seeds": sorted(common)}
                for t in checkpoints(cell["budget"]):
                    row[f"regret@{t}"] = _num(parallel[t - 1])
                    row[f"sequential_to_match@{t}"] = sequential_to_match(
                        sequential, parallel[t - 1]
                    )
                out.setdefault(f"q={q}", {}).setdefault(optimizer, {})[problem] = row
    return out


def _mean_curve(cell: Mapping[str, Any], seeds: set[int]) -> list[float]:
    curves = [run["regret"] for run in cell["runs"] if run["seed"] in seeds]
    return [float(v) for v in np.mean(np.array(curves, dtype=float), axis=0)]


def stored_cells(
    path: Path, references: Mapping[str, Sequence[float]], optimizers: Iterable[str]
) -> dict[int, dict[str, dict[str, Any]]]:
    """Cells like :func:`summarise_cell` from the stored traces (HPT_NOTES measurements).

    Only problems defined identically here and present in ``references`` are used; a
    stored trace is already best-so-far regret. Keys: q → "<opt> (stored)" → problem.
    """
    if not path.exists():
        return {}
    wanted = set(optimizers)
    traces: dict[tuple[int, str, str], list[dict[str, Any]]] = defaultdict(list)
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["opt"] in wanted and row["problem"] in references:
            traces[(row["batch"], row["opt"], row["problem"])].append(row)
    out: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    for (q, opt, problem), rows in sorted(traces.items()):
        by_seed = {}  # the longest trace per seed (some seeds were run to 30 and to 50)
        for row in rows:
            if len(row["trace"]) > len(by_seed.get(row["seed"], {}).get("trace", [])):
                by_seed[row["seed"]] = row
        budget = min(*(len(r["trace"]) for r in by_seed.values()), len(references[problem]))
        curves = np.array([r["trace"][:budget] for r in by_seed.values()], dtype=float)
        mean = curves.mean(axis=0)
        ref = np.asarray(references[problem][:budget], dtype=float)
        nr = mean / ref
        logs = np.log10(np.maximum(curves, LOG_FLOOR)).mean(axis=0)
        cpu = [c for r in by_seed.values() for c in r.get("ask_cpu_s", [])]
        out[q].setdefault(f"{opt} (stored)", {})[problem] = {
            "seeds": sorted(by_seed),
            "budget": budget,
            **{f"NR@{t}": _num(nr[t - 1]) for t in checkpoints(budget)},
            **{f"log10@{t}": _num(logs[t - 1]) for t in checkpoints(budget)},
            "cpu_s_median": _num(np.median(cpu)) if cpu else None,
            "cpu_s_p95": _num(np.percentile(cpu, 95)) if cpu else None,
            "mean_regret": _round(mean),
            "normalised_regret": _round(nr),
        }
    return dict(out)


# --- uniform random search: the reference ----------------------------------------------


def sample_uniform(
    specs: Sequence[ParameterSpec], rng: np.random.Generator, n: int
) -> list[Params]:
    """``n`` points uniform in each parameter's scaled unit interval.

    DOUBLE: uniform in x (linear), log x (log) or log(low + high − x) (reverse log: dense
    near the top). INTEGER: uniform over the integers (linear), or log-uniform on
    [low − ½, high + ½] then rounded (log, as optuna samples log integers; reverse log
    mirrored). DISCRETE and CATEGORICAL: each value equally likely, whatever the scale.
    """
    columns = {spec.parameter_name: _sample_column(spec, rng, n) for spec in specs}
    return [{name: column[i] for name, column in columns.items()} for i in range(n)]


def _sample_column(spec: ParameterSpec, rng: np.random.Generator, n: int) -> list[Any]:
    kind, scale = str(spec.type), str(spec.scale_type or "NONE")
    if kind == "CATEGORICAL":
        values = spec.categorical_values or []
        return [values[i] for i in rng.integers(0, len(values), n)]
    if kind == "DISCRETE":
        values = spec.discrete_values or []
        return [float(values[i]) for i in rng.integers(0, len(values), n)]
    low, high = float(spec.min_value or 0.0), float(spec.max_value or 0.0)
    if kind == "INTEGER":
        if scale not in ("UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"):
            return [int(v) for v in rng.integers(int(low), int(high) + 1, n)]
        u = np.exp(rng.uniform(math.log(low - 0.5), math.log(high + 0.5), n))
        w = np.clip(np.round(u), low, high).astype(int)
        return [int(v) for v in (w if scale == "UNIT_LOG_SCALE" else int(low + high) - w)]
    if scale == "UNIT_LOG_SCALE":
        return [float(v) for v in np.exp(rng.uniform(math.log(low), math.log(high), n))]
    if scale == "UNIT_REVERSE_LOG_SCALE":
        w = np.exp(rng.uniform(math.log(low), math.log(high), n))
        return [float(v) for v in np.clip(low + high - w, low, high)]
    return [float(v) for v in rng.uniform(low, high, n)]


def best_regret_curve(
    reported: Sequence[float | None], true: Sequence[float | None], optimum: float, worst: float
) -> list[float]:
    """Regret after each trial of the trial with the lowest *reported* value so far.

    Regret is ``true − optimum`` of that trial (noiseless); before any trial has
    completed it is ``worst − optimum``.
    """
    curve, best_reported, best_true = [], math.inf, worst
    for value, noiseless in zip(reported, true, strict=True):
        if value is not None and noiseless is not None and value < best_reported:
            best_reported, best_true = value, noiseless
        curve.append(best_true - optimum)
    return curve


@dataclass(frozen=True)
class RandomPool:
    """N uniform random evaluations, ordered by reported value (failures last)."""

    reported: tuple[float | None, ...]
    true: tuple[float | None, ...]

    @property
    def worst(self) -> float:
        """The highest true value in the pool: the regret stand-in before any success."""
        return max(v for v in self.true if v is not None)

    @property
    def best(self) -> float:
        return min(v for v in self.true if v is not None)

    def expected_best_regret(self, budget: int, optimum: float) -> list[float]:
        """E[regret of the reported best of t uniform draws], t = 1..budget (U-statistic)."""
        n = len(self.reported)
        if budget > n:
            raise ValueError(f"a pool of {n} draws cannot estimate the best of {budget}")
        worst = self.worst
        regrets = np.array([(worst if v is None else v) - optimum for v in self.true])
        k = np.arange(1, n + 1, dtype=float)
        curve = []
        for t in range(1, budget + 1):
            # w_1 = t/N, w_{k+1} = w_k (N − k − t + 1) / (N − k); zero once N − k < t − 1.
            ratios = np.clip((n - k[:-1] - t + 1) / (n - k[:-1]), 0.0, None)
            weights = (t / n) * np.concatenate(([1.0], np.cumprod(ratios)))
            curve.append(float(weights @ regrets))
        return curve


def random_pool(problem: Problem, draws: int, seed: int = 12345) -> RandomPool:
    """Evaluate ``draws`` uniform random points of ``problem`` (noise and failures included)."""
    rng = np.random.default_rng(seed)
    results = [problem.evaluate(p, rng) for p in sample_uniform(problem.specs, rng, draws)]
    results.sort(key=lambda r: math.inf if r[0] is None else r[0])
    return RandomPool(tuple(r[0] for r in results), tuple(r[1] for r in results))


# --- tables --------------------------------------------------------------------------------


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(str(c)) for c in col) for col in zip(headers, *rows, strict=True)]
    line = lambda cells: "| " + " | ".join(f"{c:<{w}}" for c, w in zip(cells, widths, strict=True))  # noqa: E731
    rule = "|" + "|".join("-" * (w + 2) for w in widths) + "|"
    return "\n".join([line(headers) + " |", rule, *(line(r) + " |" for r in rows)])


def fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, int):
        return str(value)
    return f"{value:.{digits}f}" if abs(value) >= 10**-digits or value == 0 else f"{value:.1e}"


def protocol_tables(
    q: int,
    cells: Mapping[str, Mapping[str, Mapping[str, Any]]],
    problems: Sequence[str],
    budget: int,
) -> str:
    """NR table, log10 table and CPU table of one protocol; rows = optimisers."""
    at = checkpoints(budget)
    groups = [("mean", list(problems))]
    if set(CORE) <= set(problems) and len(problems) > len(CORE):
        groups.append(("core3", list(CORE)))
    nr_rows, log_rows, cpu_rows = [], [], []
    for optimizer, by_problem in cells.items():
        pair = lambda c, key: "/".join(fmt(c.get(f"{key}@{t}")) if c else "-" for t in at)  # noqa: E731
        nr_cells = [pair(by_problem.get(p), "NR") for p in problems]
        for _, members in groups:
            agg = aggregate(by_problem, members)
            if "stored" in optimizer:  # stored traces cover only some problems: mean over those
                agg = aggregate(by_problem, [p for p in members if p in by_problem])
            nr_cells.append("/".join(fmt(agg.get(f"NR@{t}")) for t in at))
        nr_rows.append([optimizer, *nr_cells])
        log_rows.append(
            [
                optimizer,
                *(
                    "/".join(fmt(c.get(f"log10@{t}"), 2) if c else "-" for t in at)
                    for c in (by_problem.get(p) for p in problems)
                ),
            ]
        )
        cpu_rows.append(
            [
                optimizer,
                *(
                    f"{_seconds(c.get('cpu_s_median'))} ({_seconds(c.get('cpu_s_p95'))})"
                    if c
                    else "-"
                    for c in (by_problem.get(p) for p in problems)
                ),
            ]
        )
    title = "sequential (q=1)" if q == 1 else f"parallel q={q} (ask {q}, then tell {q})"
    ats = "/".join(f"@{t}" for t in at)
    seeds = sorted(
        {len(c["seeds"]) for opt, cs in cells.items() if "stored" not in opt for c in cs.values()}
    )
    counted = "-".join(str(n) for n in sorted({seeds[0], seeds[-1]})) if seeds else "0"
    return "\n\n".join(
        [
            f"### {title}: normalised regret NR{ats} (random = 1, optimum = 0; "
            f"{counted} seeds per cell)",
            markdown_table(["optimizer", *problems, *(name for name, _ in groups)], nr_rows),
            f"mean log10 regret {ats}",
            markdown_table(["optimizer", *problems], log_rows),
            "CPU seconds per suggestion, median (p95)",
            markdown_table(["optimizer", *problems], cpu_rows),
        ]
    )


def parallel_table(cost: Mapping[str, Any], problems: Sequence[str], budget: int) -> str:
    at = checkpoints(budget)
    parts = []
    for protocol, by_optimizer in cost.items():
        rows = []
        for optimizer, by_problem in by_optimizer.items():
            cells = []
            for p in problems:
                row = by_problem.get(p)
                cells.append(
                    "/".join(_match(row.get(f"sequential_to_match@{t}"), budget) for t in at)
                    if row
                    else "-"
                )
            rows.append([optimizer, *cells])
        parts.append(
            f"### {protocol}: sequential trials needed to match its mean regret at "
            + "/".join(f"@{t}" for t in at)
        )
        parts.append(markdown_table(["optimizer", *problems], rows))
    return "\n\n".join(parts)


def failure_line(cells: Mapping[str, Mapping[str, Any]], problem: str) -> str | None:
    shares = {
        opt: c[problem]["failed_fraction_after_warmup"]
        for opt, c in cells.items()
        if c.get(problem, {}).get("failed_fraction_after_warmup") is not None
    }
    if not shares:
        return None
    listed = ", ".join(f"{opt} {100 * s:.1f} %" for opt, s in shares.items())
    return f"{problem}: failed trials after trial {WARMUP_TRIALS}: {listed}"


def timing_table(timing: Mapping[str, Mapping[str, Mapping[str, Any]]], history: int) -> str:
    """CPU seconds per suggestion after ``history`` trials: median (p95) per q and problem."""
    columns = sorted({(q, p) for by_opt in timing.values() for q in by_opt for p in by_opt[q]})
    rows = []
    for optimizer, by_q in timing.items():
        cells = []
        for q, problem in columns:
            cell = by_q.get(q, {}).get(problem)
            cells.append(
                f"{_seconds(cell['cpu_s_median'])} ({_seconds(cell['cpu_s_p95'])})" if cell else "-"
            )
        rows.append([optimizer, *cells])
    headers = ["optimizer", *(f"{p} {q}" for q, p in columns)]
    return "\n\n".join(
        [
            f"### CPU seconds per suggestion with {history} finished trials, median (p95) "
            "(q=5: the 5 calls of one round, 0-4 pending)",
            markdown_table(headers, rows),
        ]
    )


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:.2g}" if value < 0.01 else f"{value:.2f}"


def _match(t: int | None, budget: int) -> str:
    return f">{budget}" if t is None else str(t)


def _num(value: Any) -> float | None:
    value = float(value)
    return None if math.isnan(value) else float(f"{value:.6g}")


def _round(values: Iterable[Any], digits: int = 5) -> list[float | None]:
    return [None if math.isnan(float(v)) else float(f"{float(v):.{digits}g}") for v in values]
