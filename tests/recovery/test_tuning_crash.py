"""kill -9 of a real server in the middle of a tuning job; a new server finishes the study.

After the restart the job runs to exactly ``maxTrials``: running trials are re-attached (or,
if they ended meanwhile, collected), finished ones are never re-run, no parameter set runs
twice, and at no time do more than ``maxParallelTrials`` trials run (checked from the trials'
own start/end times). The trainer is the tuning fixture, reporting through the real
``hypertune`` package.
"""

from __future__ import annotations

import json
import signal
import time
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from mlengine.client.packaging import build_package
from tests.api.conftest import start_server_process, training_job, wait_for_job
from tests.processes import alive
from tests.scheduler.conftest import TUNING

PROJECT = "tuning-crash"
MAX_TRIALS = 6
PARALLEL = 2


def _overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = best = 0
    for _, delta in events:
        level += delta
        best = max(best, level)
    return best


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.mark.slow
def test_kill_9_mid_study_finishes_exactly_max_trials_without_reruns(tmp_path: Path) -> None:
    home, rec = tmp_path / "home", tmp_path / "rec"
    first = start_server_process(home)
    client = httpx.Client(base_url=first.url, timeout=30)
    archive = build_package(TUNING, out_dir=tmp_path / "dist")
    uri = client.post(
        f"/upload/v1/projects/{PROJECT}/packages",
        params={"filename": archive.name},
        content=archive.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
    ).json()["packageUri"]
    spec = {
        "goal": "MAXIMIZE",
        "maxTrials": MAX_TRIALS,
        "maxParallelTrials": PARALLEL,
        "params": [
            {"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1},
            {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["a", "b"]},
        ],
    }
    body = training_job("study_1", uri, "--record", str(rec), "--step-sleep", "0.5")
    body["trainingInput"]["hyperparameters"] = spec
    response = client.post(f"/v1/projects/{PROJECT}/jobs", json=body)
    assert response.status_code == 200, response.text

    deadline = time.monotonic() + 120
    trials: list[dict] = []
    while time.monotonic() < deadline:
        job = client.get(f"/v1/projects/{PROJECT}/jobs/study_1").json()
        trials = (job.get("trainingOutput") or {}).get("trials") or []
        done = sum(t["state"] == "SUCCEEDED" for t in trials)
        if done >= 2 and any(t["state"] == "RUNNING" for t in trials):
            break
        time.sleep(0.1)
    assert any(t["state"] == "RUNNING" for t in trials), trials
    before = {t["trialId"] for t in trials if t["state"] == "SUCCEEDED"}
    pids = [json.loads(p.read_text())["pid"] for p in rec.glob("trial-*.json")]

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    time.sleep(2.0)

    second = start_server_process(home)
    try:
        client = httpx.Client(base_url=second.url, timeout=30)
        job = wait_for_job(client, PROJECT, "study_1")
        assert job["state"] == "SUCCEEDED", job
        output = job["trainingOutput"]
        assert output["completedTrialCount"] == str(MAX_TRIALS)  # int64 as a string
        assert output["isHyperparameterTuningJob"] is True
        trials = output["trials"]
        assert sorted(int(t["trialId"]) for t in trials) == list(range(1, MAX_TRIALS + 1))
        params = [tuple(sorted(t["hyperparameters"].items())) for t in trials]
        assert len(set(params)) == MAX_TRIALS  # no parameter set ran twice
        values = [t["finalMetric"]["objectiveValue"] for t in trials]
        assert values == sorted(values, reverse=True)  # best first
        assert all(isinstance(t["finalMetric"]["trainingStep"], str) for t in trials)
        starts = [line.split()[0] for line in (rec / "starts.log").read_text().splitlines()]
        assert sorted(starts, key=int) == [str(i) for i in range(1, MAX_TRIALS + 1)]
        assert before <= {t["trialId"] for t in trials if t["state"] == "SUCCEEDED"}
        intervals = [(_time(t["startTime"]), _time(t["endTime"])) for t in trials]
        assert _overlap(intervals) <= PARALLEL
        ran = [json.loads(p.read_text()) for p in rec.glob("trial-*.json")]
        assert _overlap([(d["start"], d["end"]) for d in ran]) <= PARALLEL
        pids += [d["pid"] for d in ran]
        time.sleep(0.5)
        assert not [p for p in pids if alive(p)], "orphan trial processes"
    finally:
        second.stop()
