"""Hyperparameter tuning through the API of a real server process.

One tuning job (the fixture tuning trainer, reporting through the real ``hypertune`` package)
is created and polled with the official google-api-python-client, as test_googleapiclient.py
does; its ``trainingOutput`` and its log are checked in separate tests. Bad
HyperparameterSpecs are refused over REST with 400 INVALID_ARGUMENT naming the field.
The session's shared ``server`` is used: no server of its own.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime
from typing import Any

import google.auth.credentials
import httpx
import pytest
from googleapiclient import discovery

from mlengine.client.packaging import build_package
from tests.api.conftest import (
    JOB_TIMEOUT,
    TERMINAL,
    ServerProcess,
    all_logs,
    error_of,
    new_job_id,
    training_job,
)
from tests.scheduler.conftest import TUNING

MAX_TRIALS = 3
PARALLEL = 2
HP = "trainingInput.hyperparameters"
RFC3339 = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{3}|\.\d{6})?Z")

X = {"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1}
OPT = {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["a", "b"]}


def objective(params: dict[str, str]) -> float:
    """What the fixture trainer reports for ``--x`` and ``--opt`` (see its docstring)."""
    value = 1 - (float(params["x"]) - 0.3) ** 2 - 0.7**2
    return value + (0.05 if params["opt"] == "b" else 0.0)


def _time(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


@pytest.fixture(scope="module")
def tuning_project() -> str:
    return f"tune{uuid.uuid4().hex[:10]}"


@pytest.fixture(scope="module")
def tuning_uri(
    server: ServerProcess, tuning_project: str, tmp_path_factory: pytest.TempPathFactory
) -> str:
    """The fixture tuning trainer, built as an sdist and staged through the upload route."""
    archive = build_package(TUNING, out_dir=tmp_path_factory.mktemp("tuning-dist"))
    response = httpx.post(
        f"{server.url}/upload/v1/projects/{tuning_project}/packages",
        params={"filename": archive.name},
        content=archive.read_bytes(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["packageUri"])


@pytest.fixture(scope="module")
def ml(server: ServerProcess) -> Any:
    return discovery.build(
        "ml",
        "v1",
        client_options={"api_endpoint": server.url},
        credentials=google.auth.credentials.AnonymousCredentials(),
        static_discovery=True,
        cache_discovery=False,
    )


@pytest.fixture(scope="module")
def study(ml: Any, tuning_project: str, tuning_uri: str) -> dict[str, Any]:
    """A finished tuning job: created and polled through the official client."""
    job_id = new_job_id("hpt")
    body = training_job(job_id, tuning_uri)
    body["trainingInput"]["hyperparameters"] = {
        "goal": "MAXIMIZE",
        "maxTrials": MAX_TRIALS,
        "maxParallelTrials": PARALLEL,
        "algorithm": "RANDOM_SEARCH",
        "params": [X, OPT],
    }
    jobs = ml.projects().jobs()
    created = jobs.create(parent=f"projects/{tuning_project}", body=body).execute()
    assert created["jobId"] == job_id and created["state"] == "QUEUED", created
    name = f"projects/{tuning_project}/jobs/{job_id}"
    deadline = time.monotonic() + JOB_TIMEOUT
    job: dict[str, Any] = created
    while time.monotonic() < deadline:
        job = jobs.get(name=name).execute()
        if job["state"] in TERMINAL:
            break
        time.sleep(0.3)
    assert job["state"] == "SUCCEEDED", job
    return job


# -- (a) a tuning job through the official client ---------------------------------------------


def test_tuning_job_output_through_the_official_client(study: dict[str, Any]) -> None:
    spec = study["trainingInput"]["hyperparameters"]
    output = study["trainingOutput"]
    trials = output["trials"]

    assert spec["maxTrials"] == MAX_TRIALS and spec["algorithm"] == "RANDOM_SEARCH"
    assert output["isHyperparameterTuningJob"] is True
    assert output["completedTrialCount"] == str(MAX_TRIALS)  # int64 as a string
    assert output["hyperparameterMetricTag"] == "training/hptuning/metric"
    assert output["consumedMLUnits"] > 0
    assert sorted(t["trialId"] for t in trials) == ["1", "2", "3"]
    values = [t["finalMetric"]["objectiveValue"] for t in trials]
    assert values == sorted(values, reverse=True)  # best first
    assert len({tuple(sorted(t["hyperparameters"].items())) for t in trials}) == MAX_TRIALS
    for trial in trials:
        assert trial["state"] == "SUCCEEDED"
        assert set(trial["hyperparameters"]) == {"x", "opt"}
        assert all(isinstance(v, str) for v in trial["hyperparameters"].values())
        assert 0 <= float(trial["hyperparameters"]["x"]) <= 1
        assert trial["hyperparameters"]["opt"] in ("a", "b")
        final = trial["finalMetric"]
        assert final["trainingStep"] == "30"  # int64 as a string
        assert final["objectiveValue"] == pytest.approx(objective(trial["hyperparameters"]))
        assert [m["trainingStep"] for m in trial["allMetrics"]] == ["10", "20", "30"]
        assert "isTrialStoppedEarly" not in trial or trial["isTrialStoppedEarly"] is False
        assert RFC3339.fullmatch(trial["startTime"]), trial["startTime"]
        assert RFC3339.fullmatch(trial["endTime"]), trial["endTime"]
        assert _time(study["startTime"]) <= _time(trial["startTime"]) <= _time(trial["endTime"])
        assert _time(trial["endTime"]) <= _time(study["endTime"])


def test_tuning_job_is_listed_and_read_back_unchanged(
    ml: Any, study: dict[str, Any], tuning_project: str
) -> None:
    jobs = ml.projects().jobs()
    again = jobs.get(name=f"projects/{tuning_project}/jobs/{study['jobId']}").execute()
    listed = jobs.list(parent=f"projects/{tuning_project}", filter="jobId:hpt*").execute()

    assert again["trainingOutput"] == study["trainingOutput"]
    assert [j["jobId"] for j in listed["jobs"]] == [study["jobId"]]
    assert listed["jobs"][0]["trainingOutput"]["trials"] == study["trainingOutput"]["trials"]


# -- (c) the job's log ------------------------------------------------------------------------


def test_the_log_tags_trial_output_with_the_trial_id(
    server: ServerProcess, study: dict[str, Any], tuning_project: str
) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as api:
        entries = all_logs(api, tuning_project, study["jobId"])

    output = [e for e in entries if e["message"].startswith("trial ")]
    starting = {e["trialId"]: e["message"] for e in output if " starting with " in e["message"]}
    done = {e["trialId"] for e in output if " done: objective " in e["message"]}

    assert set(starting) == {"1", "2", "3"} == done
    for trial_id, message in starting.items():
        assert message.startswith(f"trial {trial_id} starting with ")
    assert all(e["trialId"] and e["stream"] == "stdout" for e in output)
    for trial in study["trainingOutput"]["trials"]:
        line = starting[trial["trialId"]]
        assert f"x={float(trial['hyperparameters']['x'])}" in line
        assert f"opt={trial['hyperparameters']['opt']}" in line
    # The service's own lines about a trial carry its id too; job-level ones carry none.
    started = {e["trialId"] for e in entries if re.match(r"Trial \d+ started: ", e["message"])}
    assert started == {"1", "2", "3"}
    assert any(e["trialId"] is None and e["message"].startswith("Tuning: ") for e in entries)
    seqs = [int(e["seq"]) for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


# -- (b) bad specs ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("hyperparameters", "field", "message"),
    [
        (
            {"params": [{**X, "minValue": 2, "maxValue": 1}]},
            f"{HP}.params[0].maxValue",
            f"'{HP}.params[0].maxValue' (1) must be greater than minValue (2)",
        ),
        (
            {"params": [{**X, "minValue": 0, "scaleType": "UNIT_LOG_SCALE"}]},
            f"{HP}.params[0].minValue",
            f"UNIT_LOG_SCALE needs a range above 0, but '{HP}.params[0].minValue' is 0",
        ),
        (
            {"params": [{**X, "minValue": -1, "scaleType": "UNIT_LOG_SCALE"}]},
            f"{HP}.params[0].minValue",
            f"UNIT_LOG_SCALE needs a range above 0, but '{HP}.params[0].minValue' is -1",
        ),
        (
            {"params": [{**OPT, "categoricalValues": []}]},
            f"{HP}.params[0].categoricalValues",
            f"'{HP}.params[0].categoricalValues' needs at least one value",
        ),
        (
            {"params": [{"parameterName": "n", "type": "DISCRETE", "discreteValues": [4, 2, 8]}]},
            f"{HP}.params[0].discreteValues[1]",
            f"'{HP}.params[0].discreteValues' must be strictly increasing, but 2 follows 4",
        ),
        (
            {"algorithm": "GRID_SEARCH", "params": [OPT, X]},
            f"{HP}.params[1].type",
            f"GRID_SEARCH cannot search the DOUBLE parameter at '{HP}.params[1]'",
        ),
        (
            {"maxTrials": 2, "maxParallelTrials": 3, "params": [X]},
            f"{HP}.maxParallelTrials",
            f"'{HP}.maxParallelTrials' (3) cannot exceed maxTrials (2)",
        ),
        (
            {"maxTrials": 2, "params": [X], "resumePreviousJobId": "no_such_job"},
            f"{HP}.resumePreviousJobId",
            f"'{HP}.resumePreviousJobId' names job 'no_such_job', which does not exist",
        ),
    ],
    ids=[
        "min-above-max",
        "log-scale-zero",
        "log-scale-negative",
        "no-categories",
        "unsorted-discrete",
        "grid-double",
        "parallel-above-max",
        "resume-missing",
    ],
)
def test_bad_hyperparameter_specs_are_400_naming_the_field(
    api: httpx.Client,
    project: str,
    tuning_uri: str,
    hyperparameters: dict[str, Any],
    field: str,
    message: str,
) -> None:
    job_id = new_job_id("bad")
    body = training_job(job_id, tuning_uri)
    body["trainingInput"]["hyperparameters"] = hyperparameters

    response = api.post(f"/v1/projects/{project}/jobs", json=body)

    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert message in error["message"], error["message"]
    assert [v["field"] for v in error["details"][0]["fieldViolations"]] == [field]
    assert api.get(f"/v1/projects/{project}/jobs/{job_id}").status_code == 404


def test_every_problem_of_a_spec_is_named(api: httpx.Client, project: str, tuning_uri: str) -> None:
    body = training_job(new_job_id("bad"), tuning_uri)
    body["trainingInput"]["hyperparameters"] = {
        "maxTrials": 1,
        "maxParallelTrials": 2,
        "params": [{**X, "minValue": 3}, {**OPT, "categoricalValues": []}],
    }

    response = api.post(f"/v1/projects/{project}/jobs", json=body)

    assert response.status_code == 400, response.text
    error = error_of(response)
    # The first problem is the field violation; the message lists every problem.
    assert [v["field"] for v in error["details"][0]["fieldViolations"]] == [
        f"{HP}.params[0].maxValue"
    ]
    assert "2 more problems:" in error["message"]
    for path in ("params[0].maxValue", "params[1].categoricalValues", "maxParallelTrials"):
        assert f"'{HP}.{path}'" in error["message"], error["message"]
