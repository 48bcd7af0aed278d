"""projects.models and projects.models.versions over real HTTP, against a real server.

Versions are deployed by the server's own scheduler thread from a real scikit-learn model
(``model_origin``) and validated by loading it in a subprocess — or, only where
``mlengine.serving.predictor`` is missing, by the test-only file-name stand-in
(``conftest.model_check_environment``).
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.api.conftest import error_of, wait_for_operation
from tests.registry import predictor_available

VERSION_TYPE = "type.googleapis.com/google.cloud.ml.v1.Version"
MODEL_TYPE = "type.googleapis.com/google.cloud.ml.v1.Model"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
METADATA_TYPE = "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"


def models_url(project: str) -> str:
    return f"/v1/projects/{project}/models"


def versions_url(project: str, model: str = "census") -> str:
    return f"{models_url(project)}/{model}/versions"


def create_model(api: httpx.Client, project: str, name: str = "census", **fields: Any) -> Any:
    response = api.post(models_url(project), json={"name": name, **fields})
    assert response.status_code == 200, response.text
    return response.json()


def deploy(api: httpx.Client, project: str, version: str, origin: str, **fields: Any) -> Any:
    """versions.create, then wait for its operation; the finished operation."""
    body = {"name": version, "deploymentUri": origin, **fields}
    response = api.post(versions_url(project), json=body)
    assert response.status_code == 200, response.text
    return wait_for_operation(api, response.json()["name"])


def test_model_create_get_list_patch_delete(api: httpx.Client, project: str) -> None:
    created = create_model(api, project, description="income", labels={"team": "tabular"})
    create_model(api, project, "other")

    fetched = api.get(f"{models_url(project)}/census").json()
    listed = api.get(models_url(project), params={"pageSize": 1}).json()
    rest = api.get(
        models_url(project), params={"pageSize": 1, "pageToken": listed["nextPageToken"]}
    ).json()
    filtered = api.get(models_url(project), params={"filter": "labels.team=tabular"}).json()
    patched = api.patch(
        f"{models_url(project)}/census",
        params={"updateMask": "description"},
        json={"description": "census income"},
    ).json()
    deleted = api.delete(f"{models_url(project)}/other").json()

    assert created["name"] == f"projects/{project}/models/census"
    assert created["regions"] == ["local"] and isinstance(created["etag"], str)
    assert fetched == created
    assert [m["name"].rsplit("/", 1)[1] for m in listed["models"] + rest["models"]] == [
        "other",
        "census",
    ]
    assert "nextPageToken" not in rest
    assert [m["name"] for m in filtered["models"]] == [created["name"]]
    assert patched["done"] is True and patched["metadata"]["@type"] == METADATA_TYPE
    assert patched["metadata"]["operationType"] == "UPDATE_MODEL"
    assert patched["response"]["@type"] == MODEL_TYPE
    assert patched["response"]["description"] == "census income"
    assert deleted["done"] is True and deleted["response"] == {"@type": EMPTY_TYPE}
    assert api.get(f"/v1/{deleted['name']}").json() == deleted
    assert api.get(f"{models_url(project)}/other").status_code == 404


def test_version_lifecycle(api: httpx.Client, project: str, model_origin: str) -> None:
    create_model(api, project)
    assert api.get(versions_url(project)).text.strip() == "{}"

    response = api.post(versions_url(project), json={"name": "v1", "deploymentUri": model_origin})
    started = response.json()
    first = wait_for_operation(api, started["name"])
    second = deploy(api, project, "v2", model_origin, labels={"stage": "canary"})

    assert response.status_code == 200
    assert started["name"].startswith(f"projects/{project}/operations/create_census_v1-")
    assert started["metadata"]["operationType"] == "CREATE_VERSION"
    assert started["metadata"]["modelName"] == f"projects/{project}/models/census"
    assert first["response"]["@type"] == VERSION_TYPE, first
    assert first["response"]["state"] == "READY" and first["response"]["isDefault"] is True
    assert first["response"]["framework"] == "SCIKIT_LEARN"
    assert second["response"]["state"] == "READY" and "isDefault" not in second["response"]
    model = api.get(f"{models_url(project)}/census").json()
    assert model["defaultVersion"]["name"] == f"projects/{project}/models/census/versions/v1"
    assert model["defaultVersion"]["isDefault"] is True

    metrics = {
        line.split()[0]: float(line.split()[1])
        for line in api.get("/metrics").text.splitlines()
        if line.startswith(("mlengine_models ", "mlengine_versions{"))
    }
    assert metrics["mlengine_models"] >= 1 and metrics['mlengine_versions{state="READY"}'] >= 2

    listed = api.get(versions_url(project), params={"pageSize": 1}).json()
    assert [v["name"].rsplit("/", 1)[1] for v in listed["versions"]] == ["v2"]
    assert "nextPageToken" in listed
    ready = api.get(versions_url(project), params={"filter": "state=READY labels.stage=canary"})
    assert [v["name"].rsplit("/", 1)[1] for v in ready.json()["versions"]] == ["v2"]

    switched = api.post(f"{versions_url(project)}/v2:setDefault", json={})
    assert switched.status_code == 200 and switched.json()["isDefault"] is True
    assert "isDefault" not in api.get(f"{versions_url(project)}/v1").json()
    model = api.get(f"{models_url(project)}/census").json()
    assert model["defaultVersion"]["name"].endswith("/versions/v2")

    patched = api.patch(
        f"{versions_url(project)}/v1",
        params={"updateMask": "description,manualScaling.nodes"},
        json={"description": "old", "manualScaling": {"nodes": 2}},
    ).json()
    assert patched["done"] is True and patched["metadata"]["operationType"] == "UPDATE_VERSION"
    assert patched["response"]["manualScaling"] == {"nodes": 2}

    deleting = api.delete(f"{versions_url(project)}/v1").json()
    assert deleting["metadata"]["operationType"] == "DELETE_VERSION"
    deleted = wait_for_operation(api, deleting["name"])
    assert deleted["response"] == {"@type": EMPTY_TYPE}
    assert api.get(f"{versions_url(project)}/v1").status_code == 404
    last = wait_for_operation(api, api.delete(f"{versions_url(project)}/v2").json()["name"])
    assert "error" not in last
    assert "defaultVersion" not in api.get(f"{models_url(project)}/census").json()
    assert api.delete(f"{models_url(project)}/census").json()["done"] is True


def test_a_version_whose_files_do_not_load_ends_failed(
    api: httpx.Client, project: str, tmp_path: Any
) -> None:
    create_model(api, project)
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "weights.bin").write_bytes(b"?")

    operation = deploy(api, project, "v1", str(folder))

    assert operation["error"]["code"] == 3 or operation["error"]["code"] == 9, operation
    version = api.get(f"{versions_url(project)}/v1").json()
    assert version["state"] == "FAILED" and version["errorMessage"]
    assert "defaultVersion" not in api.get(f"{models_url(project)}/census").json()


def test_resource_rules(api: httpx.Client, project: str, model_origin: str) -> None:
    create_model(api, project)
    deploy(api, project, "v1", model_origin)
    deploy(api, project, "v2", model_origin)

    model_with_versions = api.delete(f"{models_url(project)}/census")
    default_with_others = api.delete(f"{versions_url(project)}/v1")
    duplicate_model = api.post(models_url(project), json={"name": "census"})
    duplicate_version = api.post(
        versions_url(project), json={"name": "v1", "deploymentUri": model_origin}
    )

    assert model_with_versions.status_code == 400
    error = error_of(model_with_versions)
    assert error["status"] == "FAILED_PRECONDITION" and "v1, v2" in error["message"]
    assert default_with_others.status_code == 400
    assert error_of(default_with_others)["status"] == "FAILED_PRECONDITION"
    assert duplicate_model.status_code == 409
    assert error_of(duplicate_model)["status"] == "ALREADY_EXISTS"
    assert duplicate_version.status_code == 409


def test_no_update_or_delete_while_creating(
    api: httpx.Client, project: str, model_origin: str
) -> None:
    create_model(api, project)
    started = api.post(versions_url(project), json={"name": "v1", "deploymentUri": model_origin})
    update = api.patch(f"{versions_url(project)}/v1", params={"updateMask": "description"}, json={})
    delete = api.delete(f"{versions_url(project)}/v1")
    wait_for_operation(api, started.json()["name"])

    # Loading the model in a subprocess takes seconds, so both calls find it CREATING; the
    # file-name stand-in (no predictor installed) may be quicker than the client.
    for response in (update, delete):
        if response.status_code != 200 or predictor_available():
            assert response.status_code == 400, response.text
            assert error_of(response)["status"] == "FAILED_PRECONDITION"
            assert "CREATING" in error_of(response)["message"]


def test_cancelling_a_creation(api: httpx.Client, project: str, model_origin: str) -> None:
    create_model(api, project)
    started = api.post(versions_url(project), json={"name": "v1", "deploymentUri": model_origin})
    cancel = api.post(f"/v1/{started.json()['name']}:cancel")
    finished = wait_for_operation(api, started.json()["name"])
    version = api.get(f"{versions_url(project)}/v1").json()

    assert cancel.status_code == 200 and cancel.json() == {}
    if "error" in finished:
        assert finished["error"]["code"] == 1  # CANCELLED
        assert version["state"] == "FAILED" and "cancelled" in version["errorMessage"]
        assert finished["metadata"]["isCancellationRequested"] is True
    else:  # the deployment finished before the cancel arrived: nothing to cancel
        assert predictor_available() is False
        assert version["state"] == "READY"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "field"),
    [
        ("post", "", {"name": "bad-name"}, 400, "name"),
        ("post", "", {"name": "m", "regions": ["a", "b"]}, 400, "regions"),
        ("post", "", {"name": "m", "unknownField": 1}, 400, "unknownField"),
        ("get", "/nope", None, 404, None),
        ("get", "/Bad-Name", None, 400, "name"),
        ("patch", "/census", {}, 400, "updateMask"),
        ("post", "/census/versions", {"name": "v1"}, 400, "deploymentUri"),
        ("post", "/census/versions", {"name": "v1", "deploymentUri": "../x"}, 400, "deploymentUri"),
        ("post", "/nope/versions", {"name": "v1", "deploymentUri": "/tmp"}, 404, None),
        ("get", "/census/versions/nope", None, 404, None),
        ("delete", "/census/versions/nope", None, 404, None),
        ("post", "/census/versions/nope:setDefault", {"x": 1}, 400, "x"),
        ("get", "/census/versions?filter=name%3Aa%20OR%20name%3Ab", None, 400, "filter"),
        ("get", "?pageToken=garbage", None, 400, "pageToken"),
    ],
)
def test_bad_requests_get_the_error_envelope(
    api: httpx.Client,
    project: str,
    method: str,
    path: str,
    body: dict[str, Any] | None,
    status: int,
    field: str | None,
) -> None:
    create_model(api, project)
    response = api.request(method, models_url(project) + path, json=body)
    assert response.status_code == status, response.text
    error = error_of(response)
    if field is not None:
        assert error["details"][0]["fieldViolations"][0]["field"] == field
    if status == 404:
        assert error["status"] == "NOT_FOUND"


def test_wrong_verbs_and_custom_methods(api: httpx.Client, project: str) -> None:
    create_model(api, project)
    wrong_verb = api.get(f"{versions_url(project)}/v1:setDefault")
    unknown_method = api.post(f"{versions_url(project)}/v1:undeploy")
    assert wrong_verb.status_code == 405 and wrong_verb.headers["allow"] == "POST"
    assert unknown_method.status_code == 404
