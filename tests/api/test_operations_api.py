"""projects.operations over real HTTP.

The tests write operations into the server's own database through the store, as a service
would, to control their exact content, and read and cancel them through the API; the
operations of models and versions are covered end to end in ``test_models_api.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from mlengine.stores.sql import SqlMetadataStore
from tests.api.conftest import ServerProcess, error_of

METADATA_TYPE = "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"


@pytest.fixture
def store(server: ServerProcess) -> Iterator[SqlMetadataStore]:
    opened = SqlMetadataStore(f"sqlite:///{server.home / 'mlengine.db'}")
    yield opened
    opened.close()


def _operation(project: str, op_id: str, *, done: bool = False) -> dict[str, Any]:
    operation: dict[str, Any] = {
        "name": f"projects/{project}/operations/{op_id}",
        "metadata": {
            "@type": METADATA_TYPE,
            "operationType": "CREATE_VERSION",
            "createTime": "2024-01-01T00:00:00Z",
        },
        "done": done,
    }
    if done:
        operation["response"] = {"@type": "type.googleapis.com/google.protobuf.Empty"}
    return operation


def test_get_returns_the_stored_operation(
    api: httpx.Client, project: str, store: SqlMetadataStore
) -> None:
    store.create_operation(project, _operation(project, "create_m_v1-1"))

    response = api.get(f"/v1/projects/{project}/operations/create_m_v1-1")

    assert response.status_code == 200
    assert response.json() == _operation(project, "create_m_v1-1")


def test_list_pages_newest_first_and_an_empty_list_is_an_empty_object(
    api: httpx.Client, project: str, store: SqlMetadataStore
) -> None:
    assert api.get(f"/v1/projects/{project}/operations").text.strip() == "{}"
    for i in range(3):
        store.create_operation(project, _operation(project, f"op-{i}"))

    first = api.get(f"/v1/projects/{project}/operations", params={"pageSize": 2}).json()
    second = api.get(
        f"/v1/projects/{project}/operations",
        params={"pageSize": 2, "pageToken": first["nextPageToken"]},
    ).json()

    names = [op["name"].rsplit("/", 1)[1] for op in first["operations"] + second["operations"]]
    assert names == ["op-2", "op-1", "op-0"]
    assert "nextPageToken" not in second


def test_list_refuses_a_filter_and_accepts_return_partial_success(
    api: httpx.Client, project: str
) -> None:
    filtered = api.get(f"/v1/projects/{project}/operations", params={"filter": "done=true"})
    partial = api.get(f"/v1/projects/{project}/operations", params={"returnPartialSuccess": "true"})

    assert filtered.status_code == 400
    assert error_of(filtered)["details"][0]["fieldViolations"][0]["field"] == "filter"
    assert partial.status_code == 200


def test_cancel_sets_the_flag_and_leaves_a_finished_operation_alone(
    api: httpx.Client, project: str, store: SqlMetadataStore
) -> None:
    store.create_operation(project, _operation(project, "running"))
    store.create_operation(project, _operation(project, "finished", done=True))

    running = api.post(f"/v1/projects/{project}/operations/running:cancel")
    finished = api.post(f"/v1/projects/{project}/operations/finished:cancel", json={})

    assert (running.status_code, running.json()) == (200, {})
    assert (finished.status_code, finished.json()) == (200, {})
    flagged = api.get(f"/v1/projects/{project}/operations/running").json()
    assert flagged["metadata"]["isCancellationRequested"] is True
    assert api.get(f"/v1/projects/{project}/operations/finished").json() == _operation(
        project, "finished", done=True
    )


def test_unknown_operations_and_bad_names(api: httpx.Client, project: str) -> None:
    missing = api.get(f"/v1/projects/{project}/operations/nope")
    cancel_missing = api.post(f"/v1/projects/{project}/operations/nope:cancel")
    bad_project = api.get("/v1/projects/Bad_Project/operations")
    wrong_verb = api.get(f"/v1/projects/{project}/operations/nope:cancel")

    assert missing.status_code == 404 and error_of(missing)["status"] == "NOT_FOUND"
    assert cancel_missing.status_code == 404
    assert bad_project.status_code == 400
    assert error_of(bad_project)["details"][0]["fieldViolations"][0]["field"] == "name"
    assert wrong_verb.status_code == 405 and wrong_verb.headers["allow"] == "POST"
