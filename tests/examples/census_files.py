"""Shared pieces of the census example tests: paths, data slices, trainer processes."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = REPO_ROOT / "examples" / "census"
SHARED = REPO_ROOT.parent / "shared"
ADULT_DATA = SHARED / "data" / "census" / "adult.data"
ADULT_TEST = SHARED / "data" / "census" / "adult.test"
INSTANCES = SHARED / "spec" / "census_instances.jsonl"
#: Variables of an enclosing job that must not leak into the trainers the tests start.
CLUSTER_VARIABLES = (
    "TF_CONFIG", "CLUSTER_SPEC", "MASTER_ADDR", "MASTER_PORT", "WORLD_SIZE", "RANK",
    "LOCAL_RANK", "CLOUD_ML_TRIAL_ID", "CLOUD_ML_JOB_ID", "CLOUD_ML_HP_METRIC_TAG",
)  # fmt: skip

requires_census = pytest.mark.skipif(
    not (ADULT_DATA.exists() and ADULT_TEST.exists() and INSTANCES.exists()),
    reason="the shared census data is not present",
)


def write_slice(source: Path, target: Path, rows: int) -> Path:
    """Copy the first ``rows`` lines of ``source`` (header line included, if any)."""
    with source.open(encoding="utf-8") as lines:
        head = itertools.islice(lines, rows)
        target.write_text("".join(head), encoding="utf-8")
    return target


def trainer_env(metric_file: Path, **extra: str) -> dict[str, str]:
    """A clean single-threaded environment for a trainer subprocess."""
    env = {k: v for k, v in os.environ.items() if k not in CLUSTER_VARIABLES}
    env.update(OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", CLOUD_ML_HP_METRIC_FILE=str(metric_file))
    env.update(extra)
    return env


def start_trainer(example: str, args: Sequence[str], env: dict[str, str]) -> subprocess.Popen[str]:
    """``python -m trainer.task ARGS`` in ``examples/census/<example>``, as the launcher does."""
    return subprocess.Popen(
        [sys.executable, "-m", "trainer.task", *args],
        cwd=EXAMPLES / example,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def run_trainer(
    example: str, args: Sequence[str], env: dict[str, str], timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """Run a trainer to completion; fail the test with its log when it exits non-zero."""
    process = start_trainer(example, args, env)
    output, _ = process.communicate(timeout=timeout)
    if process.returncode != 0:
        pytest.fail(f"trainer exited {process.returncode}:\n{output[-5000:]}")
    return subprocess.CompletedProcess(process.args, process.returncode, output)


def metric_entries(metric_file: Path, tag: str) -> list[dict[str, object]]:
    """The metric file's entries (cloudml-hypertune format) that carry ``tag``."""
    entries = [json.loads(line) for line in metric_file.read_text().splitlines() if line]
    return [entry for entry in entries if tag in entry]


def census_instances() -> list[dict[str, object]]:
    """The two instances of the talk's request, then the sample's ``test.json`` line."""
    lines = INSTANCES.read_text().splitlines() + (EXAMPLES / "test.json").read_text().splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def hide_mlengine(folder: Path) -> str:
    """A PYTHONPATH entry whose ``mlengine`` package fails to import (SDK-less runtime)."""
    package = folder / "mlengine"
    package.mkdir(parents=True, exist_ok=True)
    (package / "__init__.py").write_text('raise ImportError("mlengine hidden by the test")\n')
    return str(folder)
