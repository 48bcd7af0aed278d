"""Overhead of the local executor: start() → first log line, against running the command directly.

    python benchmarks/executor_start.py [--runs 20]

The trainer is a one-line module, ``print("ready")`` (the executor runs ``python -m MODULE``).
The baseline starts the same command with ``subprocess.Popen`` and reads its first stdout
line. The executor rows go through ``LocalProcessExecutor.start`` — ports, environment, one
supervisor per replica (a second interpreter) — and poll ``read_logs`` every millisecond until
the primary's line arrives. Runs alternate so drift on a noisy machine hits every row. Prints a
table of median / p10 / p90 and writes benchmarks/results/executor_start.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from mlengine.domain.replicas import ReplicaPlan, plan_for_local_train
from mlengine.executors.base import RunSpec
from mlengine.executors.cluster_env import RunIdentity
from mlengine.executors.local import LocalProcessExecutor

HERE = Path(__file__).resolve().parent
MODULE = "ready_trainer"


def _direct(workdir: Path, env: dict[str, str]) -> float:
    started = time.perf_counter()
    proc = subprocess.Popen(
        [sys.executable, "-m", MODULE], cwd=workdir, env=env, stdout=subprocess.PIPE
    )
    assert proc.stdout is not None
    proc.stdout.readline()
    elapsed = time.perf_counter() - started
    proc.wait()
    proc.stdout.close()
    return elapsed


def _through_executor(
    executor: LocalProcessExecutor, plan: ReplicaPlan, workdir: Path, env: dict[str, str], i: int
) -> tuple[float, float]:
    """(seconds until the primary's first line, seconds spent inside start())."""
    spec = RunSpec(
        run_id=f"bench/run/{i}",
        plan=plan,
        python=sys.executable,
        module=MODULE,
        args=[],
        workdir=str(workdir),
        identity=RunIdentity(job_id="bench"),
        base_env=env,
    )
    started = time.perf_counter()
    handle = executor.start(spec, [])
    in_start = time.perf_counter() - started
    cursor: Mapping[str, Any] = {}
    while True:
        lines, cursor = executor.read_logs(handle, cursor)
        if any(line.replica == handle["primary"] for line in lines):
            break
        time.sleep(0.001)
    elapsed = time.perf_counter() - started
    while not executor.poll(handle).ended:
        time.sleep(0.005)
    executor.cleanup(handle)
    return elapsed, in_start


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--out", default=str(HERE / "results" / "executor_start.json"))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp) / "work"
        workdir.mkdir()
        (workdir / f"{MODULE}.py").write_text('print("ready", flush=True)\n')
        executor = LocalProcessExecutor(Path(tmp) / "runs", gpu_ids=[])
        single = plan_for_local_train(distributed=False)
        pair = plan_for_local_train(distributed=True, worker_count=1, parameter_server_count=0)
        counter = iter(range(10**6))
        rows: dict[str, Callable[[], tuple[float, float | None]]] = {
            "python -m MODULE (Popen, first line)": lambda: (_direct(workdir, env), None),
            "executor, 1 replica": lambda: _through_executor(
                executor, single, workdir, env, next(counter)
            ),
            "executor, master + 1 worker": lambda: _through_executor(
                executor, pair, workdir, env, next(counter)
            ),
        }
        for measure in rows.values():  # warm the page cache once
            measure()
        samples: dict[str, list[tuple[float, float | None]]] = {name: [] for name in rows}
        for _ in range(args.runs):
            for name, measure in rows.items():
                samples[name].append(measure())
    _report(samples, Path(args.out), args.runs)


def _report(samples: dict[str, list[tuple[float, float | None]]], out: Path, runs: int) -> None:
    baseline = statistics.median(t for t, _ in next(iter(samples.values())))
    print(
        f"{'path to the first line':40} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} "
        f"{'overhead ms':>12} {'in start() ms':>14}"
    )
    table = []
    for name, values in samples.items():
        times = [t for t, _ in values]
        starts = [s for _, s in values if s is not None]
        median = statistics.median(times)
        row = {
            "path": name,
            "runs": len(times),
            "median_ms": median * 1e3,
            "p10_ms": _quantile(times, 0.1) * 1e3,
            "p90_ms": _quantile(times, 0.9) * 1e3,
            "overhead_ms": (median - baseline) * 1e3,
            "ratio": median / baseline,
            "start_call_median_ms": statistics.median(starts) * 1e3 if starts else None,
        }
        table.append(row)
        in_start = f"{row['start_call_median_ms']:14.1f}" if starts else f"{'-':>14}"
        print(
            f"{name:40} {row['median_ms']:10.1f} {row['p10_ms']:8.1f} {row['p90_ms']:8.1f} "
            f"{row['overhead_ms']:12.1f} {in_start}"
        )
    out.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "benchmark": "executor_start",
        "python": sys.version.split()[0],
        "cpus": os.cpu_count(),
        "runs": runs,
        "rows": table,
    }
    out.write_text(json.dumps(document, indent=2) + "\n")
    print(f"saved {out}")


if __name__ == "__main__":
    main()
