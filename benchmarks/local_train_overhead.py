"""Overhead of `mlengine local train` over plain `python -m` on a no-op trainer.

    python benchmarks/local_train_overhead.py [--runs 30]

Runs both commands alternately (so drift on a noisy machine hits both), prints a table of
median / p10 / p90 wall times and the median overhead, and writes
benchmarks/results/local_train_overhead.json. Goal: median overhead ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
PACKAGE = HERE / "noop_trainer" / "trainer"


def _time(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        argv, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def _quantile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30)
    parser.add_argument("--out", default=str(HERE / "results" / "local_train_overhead.json"))
    args = parser.parse_args()
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    mlengine = Path(sys.executable).with_name("mlengine")
    commands = {
        "python -m trainer.task": ([sys.executable, "-m", "trainer.task"], PACKAGE.parent),
        "mlengine local train": (
            [
                str(mlengine),
                "local",
                "train",
                "--module-name",
                "trainer.task",
                "--package-path",
                str(PACKAGE),
            ],
            HERE,
        ),
        "mlengine local train --distributed (1 worker)": (
            [
                str(mlengine),
                "local",
                "train",
                "--module-name",
                "trainer.task",
                "--package-path",
                str(PACKAGE),
                "--distributed",
                "--worker-count",
                "1",
                "--parameter-server-count",
                "0",
            ],
            HERE,
        ),
    }
    samples: dict[str, list[float]] = {name: [] for name in commands}
    for argv, cwd in commands.values():  # warm the page cache once
        _time(argv, cwd, env)
    for _ in range(args.runs):
        for name, (argv, cwd) in commands.items():
            samples[name].append(_time(argv, cwd, env))
    baseline = statistics.median(samples["python -m trainer.task"])
    rows = []
    print(f"{'command':48} {'median ms':>10} {'p10 ms':>8} {'p90 ms':>8} {'overhead ms':>12}")
    for name, values in samples.items():
        median = statistics.median(values)
        row = {
            "command": name,
            "runs": len(values),
            "median_ms": median * 1e3,
            "p10_ms": _quantile(values, 0.1) * 1e3,
            "p90_ms": _quantile(values, 0.9) * 1e3,
            "overhead_ms": (median - baseline) * 1e3,
            "ratio": median / baseline,
        }
        rows.append(row)
        print(
            f"{name:48} {row['median_ms']:10.1f} {row['p10_ms']:8.1f} {row['p90_ms']:8.1f} "
            f"{row['overhead_ms']:12.1f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "local_train_overhead",
                "goal_overhead_ms": 150,
                "python": sys.version.split()[0],
                "cpus": os.cpu_count(),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
