"""projects.jobs over real HTTP against a real server: submit, run, log, cancel, list, patch."""

from __future__ import annotations

import os
import time
from pathlib import Path

import httpx
import pytest

from mlengine.api.rendering import FieldMask
from tests.api.conftest import (
    ServerProcess,
    all_logs,
    build_trainer_sdist,
    error_of,
    new_job_id,
    start_server_process,
    training_job,
    wait_for_job,
)


def _create(api: httpx.Client, project: str, body: dict[str, object]) -> dict[str, object]:
    response = api.post(f"/v1/projects/{project}/jobs", json=body)
    assert response.status_code == 200, response.text
    job: dict[str, object] = response.json()
    return job


def _processes_with(marker: str) -> list[int]:
    """Pids whose command line contains ``marker`` (Linux /proc)."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_job_runs_to_success_with_every_log_line(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    created = _create(api, project, training_job(job_id, trainer_uri, "--lines", "5"))
    assert created["jobId"] == job_id
    assert created["state"] == "QUEUED"
    assert "createTime" in created and "etag" in created

    job = wait_for_job(api, project, job_id)

    assert job["state"] == "SUCCEEDED", job
    assert job["startTime"] >= job["createTime"] and job["endTime"] >= job["startTime"]
    assert isinstance(job["trainingOutput"]["consumedMLUnits"], int | float)
    entries = all_logs(api, project, job_id)
    trainer = [e["message"] for e in entries if e["taskName"] == "master-replica-0"]
    assert trainer == [f"line {i}" for i in range(5)] + ["last line"]
    seqs = [int(e["seq"]) for e in entries]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {"seq", "time", "taskName", "trialId", "stream", "severity", "message"} == set(
        entries[0]
    )
    assert any(e["taskName"] == "service" for e in entries)


def test_the_logs_route_returns_the_job_and_honours_task_name_and_limit(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    _create(api, project, training_job(job_id, trainer_uri, "--lines", "4"))
    wait_for_job(api, project, job_id)

    response = api.get(
        f"/v1/projects/{project}/jobs/{job_id}/logs",
        params={"taskName": "master-replica-0", "limit": 3},
    )

    assert response.status_code == 200
    body = response.json()
    assert body["job"]["jobId"] == job_id and body["job"]["state"] == "SUCCEEDED"
    assert [e["message"] for e in body["entries"]] == ["line 0", "line 1", "line 2"]
    assert {e["taskName"] for e in body["entries"]} == {"master-replica-0"}


def test_a_failing_job_names_the_replica_and_keeps_stderr(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    _create(api, project, training_job(job_id, trainer_uri, "--exit-code", "3"))

    job = wait_for_job(api, project, job_id)

    assert job["state"] == "FAILED"
    assert "master-replica-0" in job["errorMessage"], job["errorMessage"]
    assert "failing with 3 on purpose" in job["errorMessage"]
    assert "endTime" in job
    messages = [e["message"] for e in all_logs(api, project, job_id)]
    assert "last line" in messages


def test_cancelling_a_running_job_stops_its_processes(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    marker = f"marker-{job_id}"
    _create(api, project, training_job(job_id, trainer_uri, "--sleep", "300", "--marker", marker))
    wait_for_job(api, project, job_id, states=("RUNNING",))
    deadline = time.monotonic() + 30
    while not _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker), "the trainer process never showed up"

    response = api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel", json={})

    assert response.status_code == 200 and response.json() == {}
    state = api.get(f"/v1/projects/{project}/jobs/{job_id}").json()["state"]
    assert state in ("CANCELLING", "CANCELLED")
    job = wait_for_job(api, project, job_id, timeout=60)
    assert job["state"] == "CANCELLED" and "endTime" in job
    deadline = time.monotonic() + 15
    while _processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_with(marker) == []


def test_cancel_with_no_body_and_of_a_finished_job(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    _create(api, project, training_job(job_id, trainer_uri, "--sleep", "60"))
    cancelled = api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel")  # no body at all
    assert cancelled.status_code == 200 and cancelled.json() == {}
    wait_for_job(api, project, job_id, timeout=60)

    again = api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel", json={})

    assert again.status_code == 400
    error = error_of(again)
    assert error["status"] == "FAILED_PRECONDITION"
    assert "already ended" in error["message"]


def test_a_used_job_id_is_409_already_exists(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    body = training_job(job_id, trainer_uri, "--sleep", "60")
    _create(api, project, body)
    api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel")

    response = api.post(f"/v1/projects/{project}/jobs", json=body)

    assert response.status_code == 409
    error = error_of(response)
    assert error["status"] == "ALREADY_EXISTS"
    assert job_id in error["message"]


def test_get_of_an_unknown_job_is_404(api: httpx.Client, project: str) -> None:
    response = api.get(f"/v1/projects/{project}/jobs/nosuchjob")
    assert response.status_code == 404
    assert error_of(response)["status"] == "NOT_FOUND"


def test_list_filters_and_pages_newest_first(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    assert api.get(f"/v1/projects/{project}/jobs").text.strip() == "{}"
    ids = [f"abc_{i}" for i in range(5)] + ["other_1", "other_2"]
    for job_id in ids:
        _create(api, project, training_job(job_id, trainer_uri, "--sleep", "60"))
        api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel")  # QUEUED → CANCELLED at once

    seen: list[str] = []
    token = None
    pages = 0
    while True:
        params = {"filter": "jobId:abc*", "pageSize": 2, **({"pageToken": token} if token else {})}
        response = api.get(f"/v1/projects/{project}/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        seen += [job["jobId"] for job in page.get("jobs", [])]
        assert len(page.get("jobs", [])) <= 2
        pages += 1
        token = page.get("nextPageToken")
        if not token:
            break

    assert seen == [f"abc_{i}" for i in reversed(range(5))]
    assert pages >= 3
    everything = api.get(f"/v1/projects/{project}/jobs", params={"pageSize": 100}).json()
    assert [job["jobId"] for job in everything["jobs"]] == list(reversed(ids))
    assert "nextPageToken" not in everything


def test_patch_labels_with_a_matching_etag_and_refuse_a_stale_one(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    _create(api, project, training_job(job_id, trainer_uri, "--sleep", "60"))
    api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel")
    current = api.get(f"/v1/projects/{project}/jobs/{job_id}").json()
    url = f"/v1/projects/{project}/jobs/{job_id}"

    patched = api.patch(
        url,
        params={"updateMask": "labels,etag"},
        json={"labels": {"team": "vision"}, "etag": current["etag"]},
    )

    assert patched.status_code == 200, patched.text
    assert patched.json()["labels"] == {"team": "vision"}
    assert patched.json()["etag"] != current["etag"]
    stale = api.patch(
        url,
        params={"updateMask": "labels,etag"},
        json={"labels": {"team": "nlp"}, "etag": current["etag"]},
    )
    assert stale.status_code == 409
    assert error_of(stale)["status"] == "ABORTED"
    assert api.get(url).json()["labels"] == {"team": "vision"}
    no_mask = api.patch(url, json={"labels": {"team": "nlp"}})
    assert (
        no_mask.status_code == 400
        and error_of(no_mask)["details"][0]["fieldViolations"][0]["field"] == "updateMask"
    )


def test_partial_responses_and_compact_output(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    _create(api, project, training_job(job_id, trainer_uri, "--sleep", "60"))
    api.post(f"/v1/projects/{project}/jobs/{job_id}:cancel")

    one = api.get(
        f"/v1/projects/{project}/jobs/{job_id}",
        params={
            "fields": "jobId,state,trainingInput/pythonModule",
            "prettyPrint": "false",
            "alt": "json",
        },
    )
    listed = api.get(f"/v1/projects/{project}/jobs", params={"fields": "jobs(jobId)"})

    assert one.status_code == 200
    assert one.json() == {
        "jobId": job_id,
        "state": "CANCELLED",
        "trainingInput": {"pythonModule": "trainer.task"},
    }
    assert "\n" not in one.text.strip()
    assert listed.json() == {"jobs": [{"jobId": job_id}]}
    assert listed.text.startswith('{\n  "jobs"')  # pretty by default, 2-space indent


def test_queued_jobs_report_their_position(tmp_path: Path) -> None:
    """Strict placement on a 2-vCPU budget: a 2-vCPU job runs, the next ones queue."""
    custom = {"scaleTier": "CUSTOM", "masterType": "n1-highcpu-2"}
    strict = start_server_process(tmp_path / "home", env={"MLENGINE_STRICT_PLACEMENT": "true"})
    try:
        _check_positions(strict, custom)
    finally:
        assert strict.stop() == 0


def _check_positions(strict: ServerProcess, custom: dict[str, str]) -> None:
    with httpx.Client(base_url=strict.url, timeout=30) as api:
        uri = api.post(
            "/upload/v1/projects/p/packages",
            params={"filename": "t-0.1.tar.gz"},
            content=build_trainer_sdist(),
        ).json()["packageUri"]
        # The blocker asks for every CPU of the machine: nothing else fits next to it.
        cpus = max(2, os.cpu_count() or 1)
        blocker = training_job(
            "blocker", uri, "--sleep", "300", scaleTier="CUSTOM", masterType=f"n1-highcpu-{cpus}"
        )
        _create(api, "p", blocker)
        wait_for_job(api, "p", "blocker", states=("RUNNING",))
        for job_id in ("second", "third"):
            _create(api, "p", training_job(job_id, uri, **custom))
        time.sleep(1.0)  # a few scheduler ticks: they stay queued

        second = api.get("/v1/projects/p/jobs/second").json()
        third = api.get("/v1/projects/p/jobs/third").json()
        listed = api.get("/v1/projects/p/jobs", params={"filter": "state=QUEUED"}).json()

        assert (second["state"], second["jobPosition"]) == ("QUEUED", "1")
        assert (third["state"], third["jobPosition"]) == ("QUEUED", "2")
        assert {j["jobId"]: j["jobPosition"] for j in listed["jobs"]} == {
            "second": "1",
            "third": "2",
        }
        for job_id in ("blocker", "second", "third"):
            api.post(f"/v1/projects/p/jobs/{job_id}:cancel")
        wait_for_job(api, "p", "blocker", timeout=60)


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("jobId", {"jobId": "j"}),
        ("jobId, state", {"jobId": "j", "state": "RUNNING"}),
        ("trainingInput/args", {"trainingInput": {"args": ["--a"]}}),
        ("trainingInput(region,nope)", {"trainingInput": {"region": "local"}}),
        (
            "trainingInput/region,trainingInput",
            {"trainingInput": {"region": "local", "args": ["--a"]}},
        ),
        ("labels/*", {"labels": {"a": "1", "b": "2"}}),
        ("jobs(jobId)", {}),
        ("nope/deeper", {}),
    ],
)
def test_field_masks_select_nested_fields(selector: str, expected: dict[str, object]) -> None:
    job = {
        "jobId": "j",
        "state": "RUNNING",
        "labels": {"a": "1", "b": "2"},
        "trainingInput": {"region": "local", "args": ["--a"]},
    }
    assert FieldMask(selector).apply(job) == expected
    listed = FieldMask("jobs(jobId,labels/a),nextPageToken").apply(
        {"jobs": [job, {"jobId": "k"}], "nextPageToken": "t"}
    )
    assert listed == {
        "jobs": [{"jobId": "j", "labels": {"a": "1"}}, {"jobId": "k"}],
        "nextPageToken": "t",
    }
