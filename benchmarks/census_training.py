"""Census DNN training speed: one process vs `local train --distributed` (DDP over gloo).

    python benchmarks/census_training.py [--train-steps 2000] [--repeats 3]

Each configuration runs the census PyTorch example through `mlengine local train` on the
shared UCI files with the same flags, evaluating only at the end. The trainer logs
"trained N steps in T s" (data loading, the steps and the final evaluation, not the export);
we report the median over repeats of optimizer steps/s per replica, examples/s across the
group (steps × batch × world size / time), and the accuracy on adult.test. Writes
benchmarks/results/census_training.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CENSUS = REPO.parent / "shared" / "data" / "census"
PACKAGE = REPO / "examples" / "census" / "pytorch" / "trainer"
TRAINED = re.compile(r"\[master-replica-0\].*trained (\d+) steps in ([\d.]+) s")
ACCURACY = re.compile(r"accuracy=([\d.]+)")

CONFIGS = {
    "1 process": [],
    "distributed: master + 1 worker": [
        "--distributed",
        "--worker-count",
        "1",
        "--parameter-server-count",
        "0",
    ],
    "distributed: master + 2 workers": [
        "--distributed",
        "--worker-count",
        "2",
        "--parameter-server-count",
        "0",
    ],
}


def run_once(extra: list[str], steps: int, batch: int, port: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as job_dir:
        argv = [
            str(Path(sys.executable).with_name("mlengine")),
            "local",
            "train",
            "--module-name",
            "trainer.task",
            "--package-path",
            str(PACKAGE),
            "--job-dir",
            job_dir,
            "--start-port",
            str(port),
            *extra,
            "--",
            "--train-files",
            str(CENSUS / "adult.data"),
            "--eval-files",
            str(CENSUS / "adult.test"),
            "--train-steps",
            str(steps),
            "--eval-frequency",
            str(steps),
            "--train-batch-size",
            str(batch),
        ]
        started = time.perf_counter()
        result = subprocess.run(
            argv, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}
        )
        wall = time.perf_counter() - started
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(extra) or 'single'} failed:\n{result.stderr[-3000:]}")
    trained = TRAINED.search(result.stdout + result.stderr)
    accuracy = ACCURACY.search(result.stderr.split("Final metrics")[-1])
    if trained is None or accuracy is None:
        raise RuntimeError(f"could not read the trainer's timing:\n{result.stderr[-2000:]}")
    return {
        "train_seconds": float(trained.group(2)),
        "wall_seconds": wall,
        "accuracy": float(accuracy.group(1)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--train-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(HERE / "results" / "census_training.json"))
    args = parser.parse_args()
    rows = []
    port = 29500
    print(
        f"{'configuration':34} {'world':>5} {'steps/s':>8} {'examples/s':>11} "
        f"{'scaling':>8} {'accuracy':>9} {'wall s':>7}"
    )
    base_rate = None
    for name, extra in CONFIGS.items():
        world = 1 + (int(extra[extra.index("--worker-count") + 1]) if extra else 0)
        runs = []
        for _ in range(args.repeats):
            port += 10
            runs.append(run_once(extra, args.train_steps, args.batch_size, port))
        seconds = statistics.median(r["train_seconds"] for r in runs)
        steps_per_s = args.train_steps / seconds
        examples_per_s = steps_per_s * args.batch_size * world
        base_rate = base_rate or examples_per_s
        row = {
            "configuration": name,
            "world_size": world,
            "steps_per_s": steps_per_s,
            "examples_per_s": examples_per_s,
            "scaling_vs_1_process": examples_per_s / base_rate,
            "accuracy_median": statistics.median(r["accuracy"] for r in runs),
            "wall_seconds_median": statistics.median(r["wall_seconds"] for r in runs),
            "runs": runs,
        }
        rows.append(row)
        print(
            f"{name:34} {world:5d} {steps_per_s:8.1f} {examples_per_s:11.0f} "
            f"{row['scaling_vs_1_process']:8.2f} {row['accuracy_median']:9.4f} "
            f"{row['wall_seconds_median']:7.1f}"
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "benchmark": "census_training",
                "train_steps": args.train_steps,
                "batch_size": args.batch_size,
                "cpus": os.cpu_count(),
                "rows": rows,
            },
            indent=2,
        )
    )
    print(f"saved {out}")


if __name__ == "__main__":
    main()
