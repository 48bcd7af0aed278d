"""kill -9 of a real server while jobs run and queue; a new server picks everything up.

Downtime 0 s: the replicas are still running and are re-attached. Downtime 10 s: the
running job's replicas finish while no server is up; their exit status and every line are
collected after the restart. In both cases the queued job still runs, nothing runs twice and
no process is left behind.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    TERMINAL,
    all_logs,
    build_trainer_sdist,
    start_server_process,
    training_job,
    wait_for_job,
)
from tests.processes import alive

PROJECT = "crash-test"


def _supervisor_pids(home: Path) -> list[int]:
    """Every replica supervisor and trainer pid the executor recorded under MLENGINE_HOME."""
    import json

    pids = []
    for record in (home / "runs").glob("*/*.pid"):
        doc = json.loads(record.read_text())
        for key in ("pid", "trainer_pid", "supervisor", "trainer"):
            value = doc.get(key)
            if isinstance(value, int):
                pids.append(value)
            elif isinstance(value, dict) and isinstance(value.get("pid"), int):
                pids.append(value["pid"])
    return pids


def _state(client: httpx.Client, job_id: str) -> str:
    return client.get(f"/v1/projects/{PROJECT}/jobs/{job_id}").json()["state"]


@pytest.mark.slow
@pytest.mark.parametrize("downtime", [0, 10])
def test_kill_9_loses_nothing_and_runs_nothing_twice(tmp_path, downtime):
    home = tmp_path / "home"
    env = {"MLENGINE_STRICT_PLACEMENT": "true"}
    first = start_server_process(home, env=env)
    client = httpx.Client(base_url=first.url, timeout=30)
    uri = client.post(
        f"/upload/v1/projects/{PROJECT}/packages",
        params={"filename": "apitrainer-0.1.tar.gz"},
        content=build_trainer_sdist(),
        headers={"Content-Type": "application/octet-stream"},
    ).json()["packageUri"]
    two_cpus = {"scaleTier": "CUSTOM", "masterType": "n1-standard-2"}
    for job_id, sleep in (("running_job", "6"), ("queued_job", "0")):
        body = training_job(job_id, uri, "--lines", "3", "--sleep", sleep, **two_cpus)
        assert client.post(f"/v1/projects/{PROJECT}/jobs", json=body).status_code == 200
    deadline = time.monotonic() + 120
    while _state(client, "running_job") != "RUNNING" and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _state(client, "running_job") == "RUNNING"
    if (os.cpu_count() or 1) <= 2:
        assert _state(client, "queued_job") == "QUEUED"
    time.sleep(1.0)  # let the first lines reach the store
    replicas = _supervisor_pids(home)
    assert replicas, "the executor recorded no replica processes"

    first.process.send_signal(signal.SIGKILL)
    first.process.wait()
    assert all(alive(pid) for pid in replicas) or downtime > 0  # replicas outlive the server
    time.sleep(downtime)

    second = start_server_process(home, env=env)
    try:
        client = httpx.Client(base_url=second.url, timeout=30)
        for job_id in ("running_job", "queued_job"):
            job = wait_for_job(client, PROJECT, job_id)
            assert job["state"] == "SUCCEEDED", job
            messages = [
                e["message"]
                for e in all_logs(client, PROJECT, job_id)
                if e["taskName"] == "master-replica-0"
            ]
            # Every line exactly once: the trainer ran once and no line was lost or repeated.
            assert messages == ["line 0", "line 1", "line 2", "last line"], messages
        running = client.get(f"/v1/projects/{PROJECT}/jobs/running_job").json()
        queued = client.get(f"/v1/projects/{PROJECT}/jobs/queued_job").json()
        if (os.cpu_count() or 1) <= 2:
            assert queued["startTime"] >= running["endTime"]  # never ran side by side
        all_pids = replicas + _supervisor_pids(home)
        deadline = time.monotonic() + 15
        while any(alive(p) for p in all_pids) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not [p for p in all_pids if alive(p)], "orphan replica processes"
        assert all(
            j["state"] in TERMINAL
            for j in client.get(f"/v1/projects/{PROJECT}/jobs").json()["jobs"]
        )
    finally:
        second.stop()
