"""The official client (google-api-python-client, static discovery doc) against the server.

``client_options={"api_endpoint": URL}`` replaces the document's rootUrl + servicePath
(``https://ml.googleapis.com/`` + ``""``); method paths (``v1/{+parent}/jobs``) are joined
to it with exactly one ``/``, so ``http://127.0.0.1:PORT`` and ``http://127.0.0.1:PORT/``
both work.
"""

from __future__ import annotations

import json
import time
from typing import Any

import google.auth.credentials
import google.auth.exceptions
import google.oauth2.credentials
import pytest
from googleapiclient import discovery
from googleapiclient.errors import HttpError

from tests.api.conftest import AUTH_TOKENS, TERMINAL, ServerProcess, new_job_id, training_job


@pytest.fixture(params=["", "/"], ids=["bare", "slash"])
def ml(server: ServerProcess, request: pytest.FixtureRequest) -> Any:
    return discovery.build(
        "ml",
        "v1",
        client_options={"api_endpoint": server.url + request.param},
        credentials=google.auth.credentials.AnonymousCredentials(),
        static_discovery=True,
        cache_discovery=False,
    )


def _wait(ml: Any, name: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        job: dict[str, Any] = ml.projects().jobs().get(name=name).execute()
        if job["state"] in TERMINAL or time.monotonic() > deadline:
            return job
        time.sleep(0.3)


def test_create_get_list_patch_cancel_through_the_official_client(
    ml: Any, project: str, trainer_uri: str
) -> None:
    jobs = ml.projects().jobs()
    job_id = new_job_id("gac")

    created = jobs.create(
        parent=f"projects/{project}", body=training_job(job_id, trainer_uri, "--lines", "2")
    ).execute()
    finished = _wait(ml, f"projects/{project}/jobs/{job_id}")
    listed = jobs.list(parent=f"projects/{project}", filter="jobId:gac*", pageSize=5).execute()
    patched = jobs.patch(
        name=f"projects/{project}/jobs/{job_id}",
        updateMask="labels,etag",
        body={"labels": {"via": "googleapiclient"}, "etag": finished["etag"]},
    ).execute()

    assert created["jobId"] == job_id and created["state"] == "QUEUED"
    assert finished["state"] == "SUCCEEDED"
    assert [job["jobId"] for job in listed["jobs"]] == [job_id]
    assert patched["labels"] == {"via": "googleapiclient"}
    with pytest.raises(HttpError) as finished_cancel:
        jobs.cancel(name=f"projects/{project}/jobs/{job_id}", body={}).execute()
    assert finished_cancel.value.resp.status == 400
    assert json.loads(finished_cancel.value.content)["error"]["status"] == "FAILED_PRECONDITION"


def test_cancel_of_a_running_job_and_paging_with_list_next(
    ml: Any, project: str, trainer_uri: str
) -> None:
    jobs = ml.projects().jobs()
    ids = [new_job_id("page") for _ in range(3)]
    for job_id in ids:
        jobs.create(
            parent=f"projects/{project}", body=training_job(job_id, trainer_uri, "--sleep", "60")
        ).execute()
        assert jobs.cancel(name=f"projects/{project}/jobs/{job_id}").execute() == {}

    seen: list[str] = []
    request = jobs.list(parent=f"projects/{project}", pageSize=2)
    while request is not None:
        response = request.execute()
        seen += [job["jobId"] for job in response.get("jobs", [])]
        request = jobs.list_next(previous_request=request, previous_response=response)

    assert seen == list(reversed(ids))


def test_errors_surface_as_http_errors_with_the_right_status(ml: Any, project: str) -> None:
    jobs = ml.projects().jobs()
    with pytest.raises(HttpError) as missing:
        jobs.get(name=f"projects/{project}/jobs/nosuch").execute()
    with pytest.raises(HttpError) as invalid:
        jobs.create(
            parent=f"projects/{project}", body={"jobId": "bad-id", "trainingInput": {}}
        ).execute()
    with pytest.raises(HttpError) as unknown_operation:
        ml.projects().operations().get(name=f"projects/{project}/operations/nope").execute()

    assert missing.value.resp.status == 404
    assert invalid.value.resp.status == 400
    assert "jobId" in str(invalid.value)
    assert unknown_operation.value.resp.status == 404


def test_operations_list_is_empty_for_a_new_project(ml: Any, project: str) -> None:
    assert ml.projects().operations().list(name=f"projects/{project}").execute() == {}


def test_bearer_tokens_through_the_official_client(auth_server: ServerProcess) -> None:
    def build(credentials: Any) -> Any:
        return discovery.build(
            "ml",
            "v1",
            client_options={"api_endpoint": auth_server.url},
            credentials=credentials,
            static_discovery=True,
            cache_discovery=False,
        )

    with_token = build(google.oauth2.credentials.Credentials(AUTH_TOKENS[0]))
    anonymous = build(google.auth.credentials.AnonymousCredentials())

    assert with_token.projects().jobs().list(parent="projects/p").execute() == {}
    # On a 401 the client tries to refresh its credentials; anonymous ones cannot be.
    with pytest.raises(google.auth.exceptions.InvalidOperation, match="cannot be refreshed"):
        anonymous.projects().jobs().list(parent="projects/p").execute()


def _wait_operation(ml: Any, name: str, timeout: float = 180) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        operation: dict[str, Any] = ml.projects().operations().get(name=name).execute()
        if operation.get("done") or time.monotonic() > deadline:
            return operation
        time.sleep(0.2)


def test_models_and_versions_through_the_official_client(
    ml: Any, project: str, model_origin: str
) -> None:
    models = ml.projects().models()
    versions = models.versions()
    parent = f"projects/{project}"
    model_name = f"{parent}/models/census"

    created = models.create(parent=parent, body={"name": "census", "regions": ["local"]}).execute()
    with pytest.raises(HttpError) as duplicate:
        models.create(parent=parent, body={"name": "census"}).execute()
    with pytest.raises(HttpError) as bad_name:
        models.create(parent=parent, body={"name": "census-2"}).execute()
    assert duplicate.value.resp.status == 409 and bad_name.value.resp.status == 400
    patched = _wait_operation(
        ml,
        models.patch(
            name=model_name, updateMask="description", body={"description": "census income"}
        ).execute()["name"],
    )
    first = _wait_operation(
        ml,
        versions.create(
            parent=model_name, body={"name": "v1", "deploymentUri": model_origin}
        ).execute()["name"],
    )
    second = _wait_operation(
        ml,
        versions.create(
            parent=model_name, body={"name": "v2", "deploymentUri": model_origin}
        ).execute()["name"],
    )
    default = versions.setDefault(name=f"{model_name}/versions/v2", body={}).execute()
    listed = versions.list(parent=model_name, pageSize=1).execute()
    following = versions.list_next(
        previous_request=versions.list(parent=model_name, pageSize=1), previous_response=listed
    ).execute()
    version_patch = _wait_operation(
        ml,
        versions.patch(
            name=f"{model_name}/versions/v1",
            updateMask="labels",
            body={"labels": {"stage": "old"}},
        ).execute()["name"],
    )
    got = models.get(name=model_name).execute()
    found = models.list(parent=parent, filter="name:cens*").execute()

    assert created["name"] == model_name
    assert patched["response"]["description"] == "census income"
    assert first["response"]["state"] == "READY" and first["response"]["isDefault"] is True
    assert second["response"]["state"] == "READY"
    assert default["isDefault"] is True and default["name"].endswith("/versions/v2")
    assert [v["name"].rsplit("/", 1)[1] for v in listed["versions"] + following["versions"]] == [
        "v2",
        "v1",
    ]
    assert version_patch["response"]["labels"] == {"stage": "old"}
    assert got["defaultVersion"]["name"].endswith("/versions/v2")
    assert [m["name"] for m in found["models"]] == [model_name]

    with pytest.raises(HttpError) as model_in_use:
        models.delete(name=model_name).execute()
    with pytest.raises(HttpError) as default_in_use:
        versions.delete(name=f"{model_name}/versions/v2").execute()
    assert model_in_use.value.resp.status == 400
    assert json.loads(model_in_use.value.content)["error"]["status"] == "FAILED_PRECONDITION"
    assert default_in_use.value.resp.status == 400

    for version in ("v1", "v2"):
        deleted = _wait_operation(
            ml, versions.delete(name=f"{model_name}/versions/{version}").execute()["name"]
        )
        assert deleted["response"]["@type"] == "type.googleapis.com/google.protobuf.Empty"
    assert models.delete(name=model_name).execute()["done"] is True
    with pytest.raises(HttpError) as gone:
        models.get(name=model_name).execute()
    assert gone.value.resp.status == 404
