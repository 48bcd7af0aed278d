"""Hyperparameter-tuning optimisers compared on a fixed offline suite.

    python benchmarks/tuning.py --quick                      # smoke run: 2 seeds, 30 trials
    python benchmarks/tuning.py --jobs 2                     # the synthetic suite
    python benchmarks/tuning.py --census --problems census   # real tuning, opt-in
    python benchmarks/tuning.py --resume                     # finish an interrupted run

Runs every (problem, optimiser, protocol, seed) study: ours (BayesianOptimizer), RandomSearch,
optuna TPE and GP, sequentially (q = 1) and in synchronous rounds of q = 5, up to --budget
trials; prints per protocol the normalised regret NR@30/NR@50/NR@100 (random = 1, optimum =
0), mean log10 regret, CPU seconds per suggestion and, for q > 1, the sequential trials needed
to match; OSS Vizier's stored curves (hpt_reference_traces.jsonl) are extra "(stored)" rows.
Then a timing table: CPU seconds per suggestion with --timing-history (100) finished trials
(uniformly random points, preloaded) on hartmann6 and mixed, q = 1 and a round of q = 5.
Problems: tuning_problems.py; optimiser adapters: tuning_runners.py; metrics: tuning_report.py.

Writes benchmarks/results/tuning.json (tuning_quick.json with --quick) with everything,
curves included; every finished study is appended to a JSONL log (--runs-log) so --resume
can skip it. E[random best] per problem is cached in tuning_random_reference.json.
"""

from __future__ import annotations

import os

# Before numpy/torch load: two shared cores, one thread per process (workers inherit it).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import argparse  # noqa: E402
import dataclasses  # noqa: E402
import datetime  # noqa: E402
import importlib.metadata  # noqa: E402
import json  # noqa: E402
import multiprocessing  # noqa: E402
import platform  # noqa: E402
import re  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections import defaultdict  # noqa: E402
from collections.abc import Iterator, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

import tuning_problems as problems_module  # noqa: E402
import tuning_report as report  # noqa: E402
from tuning_problems import ALL, SYNTHETIC, Problem, get_problem  # noqa: E402
from tuning_report import RandomPool  # noqa: E402
from tuning_runners import (  # noqa: E402
    BATCH_STYLES,
    OPTIMIZERS,
    RunRecord,
    run_one,
    time_suggestions,
)

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
STORED_TRACES = HERE.parent.parent / "shared" / "benchmarks" / "hpt_reference_traces.jsonl"
REFERENCE_CACHE = RESULTS / "tuning_random_reference.json"
SYNTHETIC_DRAWS = 200_000  # the U-statistic's pool; 20,000 left ±5 % noise at t = 30
CENSUS_DRAWS = 200
QUICK_PROBLEMS = ("branin", "hartmann6", "mixed", "crash_hartmann6")
#: A JSON list of numbers (and nulls), to be printed on one line.
NUMBER_LIST = re.compile(r"\[((?:\s*(?:-?[\d.eE+-]+|null),?)+\s*)\]")
#: Rough relative cost, so the slowest studies of a seed start first.
COST = {"gp": 10, "ours": 8, "tpe": 1, "random": 0.1}


@dataclasses.dataclass(frozen=True)
class Task:
    problem: str
    optimizer: str
    q: int
    seed: int
    budget: int
    style: str

    def key(self) -> tuple[Any, ...]:
        return dataclasses.astuple(self)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    p.add_argument("--problems", default="", help=f"comma list of {', '.join(ALL)}")
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS), help="comma list")
    p.add_argument("--seeds", type=int, help="seeds per problem (default 10; census 5)")
    p.add_argument("--budget", type=int, help="trials per study (default 100)")
    p.add_argument("--parallel", default="1,5", help="protocols: q values, comma list")
    p.add_argument("--quick", action="store_true", help="2 seeds, budget 30, 4 problems")
    p.add_argument("--census", action="store_true", help="add the census problem (slow)")
    p.add_argument("--jobs", type=int, default=1, help="worker processes")
    p.add_argument(
        "--batch-style",
        choices=BATCH_STYLES,
        default="pending",
        help="how ours is asked for a round (see tuning_runners.py)",
    )
    p.add_argument(
        "--timing-problems",
        default="hartmann6,mixed",
        help="problems of the suggestion-time table ('' or 'none' to skip)",
    )
    p.add_argument("--timing-history", type=int, default=100, help="finished trials")
    p.add_argument("--timing-seeds", type=int, default=5, help="histories per problem")
    p.add_argument("--stored", default="vizier", help="stored optimisers to show, or 'none'")
    p.add_argument("--out", type=Path, help="results JSON")
    p.add_argument("--runs-log", type=Path, help="JSONL of finished studies")
    p.add_argument("--resume", action="store_true", help="reuse studies in --runs-log")
    p.add_argument(
        "--report-only", action="store_true", help="summarise --runs-log, run nothing new"
    )
    args = p.parse_args(argv)
    name = "tuning_quick" if args.quick else "tuning"
    args.out = args.out or RESULTS / f"{name}.json"
    args.runs_log = args.runs_log or RESULTS / f"{name}_runs.jsonl"
    args.budget = args.budget or (30 if args.quick else 100)
    chosen = [s for s in args.problems.split(",") if s] or list(
        QUICK_PROBLEMS if args.quick else SYNTHETIC
    )
    if args.census and "census" not in chosen:
        chosen.append("census")
    try:
        args.problems = [get_problem(name).name for name in chosen]
    except KeyError as exc:
        p.error(str(exc.args[0]))
    args.optimizers = [o for o in args.optimizers.split(",") if o]
    unknown = set(args.optimizers) - set(OPTIMIZERS)
    if unknown:
        p.error(f"unknown optimizers {sorted(unknown)}; choose from {', '.join(OPTIMIZERS)}")
    args.parallel = [int(q) for q in args.parallel.split(",") if q]
    timing = [s for s in args.timing_problems.split(",") if s and s != "none"]
    try:
        args.timing_problems = [get_problem(name).name for name in timing]
    except KeyError as exc:
        p.error(str(exc.args[0]))
    if args.report_only:
        args.timing_problems = []
    return args


def seeds_for(problem: Problem, args: argparse.Namespace) -> int:
    if args.seeds:
        return int(args.seeds)
    return 2 if args.quick else problem.default_seeds


def tasks_for(args: argparse.Namespace) -> list[Task]:
    tasks = [
        Task(name, optimizer, q, seed, args.budget, args.batch_style)
        for name in args.problems
        for q in args.parallel
        for optimizer in args.optimizers
        for seed in range(seeds_for(get_problem(name), args))
    ]
    # Seed-major, so an interrupted run has every cell at about the same number of seeds;
    # within a seed the slowest studies first, so parallel workers finish together.
    return sorted(tasks, key=lambda t: (t.seed, -_cost(t)))


def _cost(task: Task) -> float:
    mixed = 3 if task.problem.startswith("mixed") else 1
    return COST.get(task.optimizer, 1) * mixed * task.q**0.5


# --- running -------------------------------------------------------------------------------


def _run_task(task: Task) -> tuple[Task, RunRecord]:
    problem = get_problem(task.problem)
    return task, run_one(problem, task.optimizer, task.q, task.seed, task.budget, task.style)


def _record_line(task: Task, record: RunRecord) -> str:
    row = {"task": dataclasses.asdict(task), "version": problems_module.DEFINITIONS_VERSION}
    return json.dumps({**row, "record": dataclasses.asdict(record)})


def load_finished(path: Path) -> dict[tuple[Any, ...], RunRecord]:
    finished = {}
    for line in path.read_text().splitlines() if path.exists() else []:
        try:
            row = json.loads(line)
        except json.JSONDecodeError:  # a line still being written by a running benchmark
            continue
        if row.get("version") == problems_module.DEFINITIONS_VERSION:
            record = RunRecord(**row["record"])
            if record.error is None:
                finished[Task(**row["task"]).key()] = record
    return finished


def run_tasks(tasks: list[Task], args: argparse.Namespace) -> list[RunRecord]:
    """Every task's record; finished ones from the runs log with --resume, the rest run."""
    finished = load_finished(args.runs_log) if args.resume or args.report_only else {}
    if args.report_only:
        log(f"{len(tasks)} studies, {len(finished)} in {args.runs_log}, nothing run")
        return [finished[t.key()] for t in tasks if t.key() in finished]
    todo = [t for t in tasks if t.key() not in finished]
    args.runs_log.parent.mkdir(parents=True, exist_ok=True)
    if not args.resume:
        args.runs_log.write_text("")
    log(f"{len(tasks)} studies, {len(tasks) - len(todo)} reused, {len(todo)} to run")
    records = {t.key(): finished[t.key()] for t in tasks if t.key() in finished}
    started = time.perf_counter()
    with args.runs_log.open("a") as out:
        for done, (task, record) in enumerate(_execute(todo, args.jobs), start=1):
            out.write(_record_line(task, record) + "\n")
            out.flush()
            records[task.key()] = record
            elapsed = time.perf_counter() - started
            eta = elapsed / done * (len(todo) - done)
            status = (
                "ERROR " + (record.error or "").strip().splitlines()[-1]
                if record.error
                else (f"{record.wall_s:.1f} s")
            )
            log(
                f"[{done}/{len(todo)}] {task.problem} {task.optimizer} q={task.q} "
                f"seed={task.seed}: {status} (elapsed {elapsed:.0f} s, ETA {eta:.0f} s)"
            )
    return [records[t.key()] for t in tasks]


def _execute(todo: list[Task], jobs: int) -> Iterator[tuple[Task, RunRecord]]:
    if jobs <= 1:
        yield from map(_run_task, todo)
        return
    # spawn: no torch/optuna state forked from the parent; workers re-import these modules.
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        yield from pool.imap_unordered(_run_task, todo)


@dataclasses.dataclass(frozen=True)
class TimingTask:
    problem: str
    optimizer: str
    q: int
    seed: int
    history: int
    style: str


def _run_timing(task: TimingTask) -> tuple[TimingTask, list[float]]:
    problem = get_problem(task.problem)
    cpu = time_suggestions(problem, task.optimizer, task.q, task.seed, task.history, task.style)
    return task, cpu


def run_timing(args: argparse.Namespace) -> dict[str, dict[str, dict[str, Any]]]:
    """optimizer -> "q=<q>" -> problem -> median/p95 CPU s per suggestion at the history."""
    tasks = [
        TimingTask(name, optimizer, q, seed, args.timing_history, args.batch_style)
        for name in args.timing_problems
        for q in args.parallel
        for optimizer in args.optimizers
        for seed in range(args.timing_seeds)
    ]
    if not tasks:
        return {}
    log(f"timing: {len(tasks)} rounds after {args.timing_history} trials")
    cpu: dict[tuple[str, str, str], list[float]] = defaultdict(list)
    if args.jobs <= 1:
        done: Iterator[tuple[TimingTask, list[float]]] = map(_run_timing, tasks)
        for task, seconds in done:
            cpu[(task.optimizer, f"q={task.q}", task.problem)].extend(seconds)
    else:
        with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
            for task, seconds in pool.imap_unordered(_run_timing, tasks):
                cpu[(task.optimizer, f"q={task.q}", task.problem)].extend(seconds)
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for (optimizer, q, problem), seconds in cpu.items():
        out.setdefault(optimizer, {}).setdefault(q, {})[problem] = {
            "calls": len(seconds),
            "cpu_s_median": report._num(np.median(seconds)),
            "cpu_s_p95": report._num(np.percentile(seconds, 95)),
            "cpu_s_max": report._num(np.max(seconds)),
        }
    return out


# --- the random-search reference -----------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Reference:
    """Uniform random search on one problem: E[best regret] per t, or the pool it came from.

    ``curve`` is set where the optimum is known; census keeps ``pool`` instead, because its
    regret is measured against the best value seen across all runs, known only at the end.
    ``worst`` is the highest value drawn: the stand-in before a study's first success.
    """

    worst: float
    curve: list[float] | None = None
    pool: RandomPool | None = None

    def resolve(
        self, problem: Problem, records: list[RunRecord], budget: int
    ) -> tuple[float, list[float]]:
        """(optimum, E[random best regret] for t = 1..budget) of ``problem``."""
        if self.pool is None:
            assert problem.optimum is not None and self.curve is not None
            return problem.optimum, self.curve
        seen = [v for r in records if r.problem == problem.name for v in r.true if v is not None]
        optimum = min([self.pool.best, *seen])
        return optimum, self.pool.expected_best_regret(budget, optimum)


def random_references(names: Sequence[str], budget: int) -> dict[str, Reference]:
    """The :class:`Reference` of every problem in ``names``.

    Cached in :data:`REFERENCE_CACHE`, keyed by definitions version, draws and budget.
    """
    cache = json.loads(REFERENCE_CACHE.read_text()) if REFERENCE_CACHE.exists() else {}
    current = cache.get("version") == problems_module.DEFINITIONS_VERSION
    entries = cache.get("problems", {}) if current else {}
    out = {}
    for name in names:
        problem = get_problem(name)
        draws = SYNTHETIC_DRAWS if problem.optimum is not None else CENSUS_DRAWS
        entry = entries.get(name, {})
        if not (entry.get("draws") == draws and entry.get("budget", 0) >= budget):
            entry = _draw_reference(problem, draws, max(budget, 100))
            entries[name] = entry
        if problem.optimum is None:
            pool = RandomPool(tuple(entry["pool_reported"]), tuple(entry["pool_true"]))
            out[name] = Reference(entry["worst"], pool=pool)
        else:
            out[name] = Reference(entry["worst"], curve=entry["expected_best_regret"][:budget])
    REFERENCE_CACHE.parent.mkdir(parents=True, exist_ok=True)
    document = {"version": problems_module.DEFINITIONS_VERSION, "problems": entries}
    REFERENCE_CACHE.write_text(json.dumps(document) + "\n")
    return out


def _draw_reference(problem: Problem, draws: int, budget: int) -> dict[str, Any]:
    started = time.perf_counter()
    pool = report.random_pool(problem, draws)
    entry: dict[str, Any] = {"draws": draws, "budget": budget, "worst": pool.worst}
    if problem.optimum is None:
        entry |= {"pool_reported": list(pool.reported), "pool_true": list(pool.true)}
    else:
        entry["optimum"] = problem.optimum
        entry["expected_best_regret"] = pool.expected_best_regret(budget, problem.optimum)
    log(f"random reference {problem.name}: {draws} draws, {time.perf_counter() - started:.0f} s")
    return entry


# --- summary -------------------------------------------------------------------------------


def summarise(
    records: list[RunRecord], references: dict[str, Reference], args: argparse.Namespace
) -> dict[str, Any]:
    groups: dict[tuple[int, str, str], list[RunRecord]] = defaultdict(list)
    errors = []
    for r in records:
        if r.error:
            errors.append(
                {
                    "problem": r.problem,
                    "optimizer": r.optimizer,
                    "q": r.q,
                    "seed": r.seed,
                    "error": r.error,
                }
            )
        else:
            groups[(r.q, r.optimizer, r.problem)].append(r)
    results: dict[int, dict[str, dict[str, Any]]] = defaultdict(dict)
    problems_out, curves = {}, {}
    for name in args.problems:
        problem, reference = get_problem(name), references[name]
        optimum, curves[name] = reference.resolve(problem, records, args.budget)
        problems_out[name] = {
            "description": problem.description,
            "params": [spec.to_api() for spec in problem.specs],
            "optimum": optimum,
            "optimum_source": "known" if problem.optimum is not None else "best seen",
            "noise_sd": problem.noise_sd,
            "random_expected_best_regret": report._round(curves[name]),
        }
        for q in args.parallel:
            for optimizer in args.optimizers:
                runs = groups.get((q, optimizer, name))
                if runs:
                    cell = report.summarise_cell(runs, optimum, reference.worst, curves[name])
                    results[q].setdefault(optimizer, {})[name] = cell
    return {
        "problems": problems_out,
        "results": dict(results),
        "errors": errors,
        "reference_curves": curves,
    }


def render(summary: dict[str, Any], stored: dict[int, Any], args: argparse.Namespace) -> str:
    parts = []
    results = summary["results"]
    for q in args.parallel:
        cells = {**results.get(q, {}), **stored.get(q, {})}
        if cells:
            parts.append(report.protocol_tables(q, cells, args.problems, args.budget))
        if "crash_hartmann6" in args.problems and q in results:
            parts.append(report.failure_line(results[q], "crash_hartmann6") or "")
    cost = report.parallel_cost(results)
    if cost:
        parts.append(report.parallel_table(cost, args.problems, args.budget))
    for error in summary["errors"]:
        parts.append(
            f"ERROR {error['optimizer']} {error['problem']} q={error['q']} "
            f"seed={error['seed']}: {error['error'].strip().splitlines()[-1]}"
        )
    return "\n\n".join(p for p in parts if p)


def environment() -> dict[str, Any]:
    versions = {}
    for package in ("numpy", "scipy", "optuna", "torch", "greenlet", "ioh", "scikit-learn"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = None
    return {
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "machine": platform.machine(),
        "versions": versions,
    }


def compact_json(document: Any) -> str:
    """Indented JSON with every list of numbers on one line (curves stay readable)."""
    text = json.dumps(document, indent=1)
    return NUMBER_LIST.sub(lambda m: "[" + " ".join(m.group(1).split()) + "]", text)


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    references = random_references(args.problems, args.budget)
    records = run_tasks(tasks_for(args), args)
    summary = summarise(records, references, args)
    timing = run_timing(args)
    curves = summary.pop("reference_curves")
    stored_optimizers = [] if args.stored == "none" else args.stored.split(",")
    core = {name: curves[name] for name in report.CORE if name in curves}
    stored = report.stored_cells(STORED_TRACES, core, stored_optimizers)
    text = render(summary, stored, args)
    if timing:
        text += "\n\n" + report.timing_table(timing, args.timing_history)
    print(text)
    document = {
        "benchmark": "tuning",
        "created": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python benchmarks/tuning.py", *(argv or sys.argv[1:])]),
        "environment": environment(),
        "config": {
            "problems": args.problems,
            "optimizers": args.optimizers,
            "parallel": args.parallel,
            "budget": args.budget,
            "batch_style": args.batch_style,
            "timing_problems": args.timing_problems,
            "seeds": {n: seeds_for(get_problem(n), args) for n in args.problems},
            "random_reference_draws": {"synthetic": SYNTHETIC_DRAWS, "census": CENSUS_DRAWS},
        },
        **summary,
        "results": {f"q={q}": cells for q, cells in summary["results"].items()},
        "aggregate": {
            f"q={q}": {opt: report.aggregate(c, args.problems) for opt, c in cells.items()}
            for q, cells in summary["results"].items()
        },
        "parallel_cost": report.parallel_cost(summary["results"]),
        "suggest_timing": {"history": args.timing_history, "seeds": args.timing_seeds}
        | {"cells": timing},
        "stored": {f"q={q}": cells for q, cells in stored.items()},
        "tables": text,
        "wall_s": round(time.perf_counter() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(compact_json(document) + "\n")
    log(f"saved {args.out} ({document['wall_s']} s)")
    return 1 if summary["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
