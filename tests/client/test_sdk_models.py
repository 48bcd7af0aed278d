"""The SDK's model, version and predict methods against a fake transport: paths, bodies,
masks, paging and waiting. (tests/cli/test_models_cli.py drives them against a real server.)"""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest

from mlengine.domain.errors import FailedPrecondition, InvalidArgument, NotFound
from tests.client.test_sdk import envelope, fake_client

OP = "projects/p/operations/create_m_v1-1"


def recording(answer: Any = None) -> tuple[list[httpx.Request], Any]:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = answer(request) if callable(answer) else answer
        return httpx.Response(200, json=body if body is not None else {})

    return seen, handler


def test_model_methods_send_the_v1_requests() -> None:
    seen, handler = recording({"name": OP, "done": True, "response": {"name": "m"}})
    client = fake_client(handler)
    client.create_model(
        "m", description="d", labels={"a": "1"}, online_prediction_logging=True, regions=["x"]
    )
    client.create_model({"name": "n", "onlinePredictionConsoleLogging": True})
    client.get_model("m")
    client.get_model("projects/other/models/m")
    client.delete_model("m")
    client.patch_model("m", {"description": "new"}, ["description", "labels"])
    client.patch_model("m", {"defaultVersion": {"name": "v2"}}, "defaultVersion.name")
    create, create_body, get, get_full, delete, patch, patch_default = seen
    assert (create.method, create.url.path) == ("POST", "/v1/projects/p/models")
    assert json.loads(create.content) == {
        "name": "m",
        "description": "d",
        "labels": {"a": "1"},
        "onlinePredictionLogging": True,
        "regions": ["x"],
    }
    assert json.loads(create_body.content) == {"name": "n", "onlinePredictionConsoleLogging": True}
    assert get.url.path == "/v1/projects/p/models/m"
    assert get_full.url.path == "/v1/projects/other/models/m"
    assert (delete.method, delete.url.path) == ("DELETE", "/v1/projects/p/models/m")
    assert patch.method == "PATCH" and patch.url.params["updateMask"] == "description,labels"
    assert json.loads(patch.content) == {"description": "new"}
    assert patch_default.url.params["updateMask"] == "defaultVersion.name"


def test_version_methods_send_the_v1_requests() -> None:
    seen, handler = recording({"name": OP})
    client = fake_client(handler)
    operation = client.create_version(
        "m", "v1", deployment_uri="/srv/m", framework="SCIKIT_LEARN", labels={"k_1": "v"}
    )
    assert operation == {"name": OP}
    client.get_version("m", "v1")
    client.get_version("m", "projects/q/models/m/versions/v9")
    client.delete_version("m", "v1")
    client.set_default_version("m", "v1")
    client.patch_version("m", "v1", {"autoScaling": {"minNodes": 2}}, ["autoScaling.minNodes"])
    create, get, get_full, delete, default, patch = seen
    assert (create.method, create.url.path) == ("POST", "/v1/projects/p/models/m/versions")
    assert json.loads(create.content) == {
        "name": "v1",
        "deploymentUri": "/srv/m",
        "framework": "SCIKIT_LEARN",
        "labels": {"k_1": "v"},  # values are not renamed, only keyword names
    }
    assert get.url.path == "/v1/projects/p/models/m/versions/v1"
    assert get_full.url.path == "/v1/projects/q/models/m/versions/v9"
    assert (delete.method, delete.url.path) == ("DELETE", "/v1/projects/p/models/m/versions/v1")
    assert (default.method, default.url.path) == (
        "POST",
        "/v1/projects/p/models/m/versions/v1:setDefault",
    )
    assert patch.url.params["updateMask"] == "autoScaling.minNodes"


def test_lists_walk_every_page() -> None:
    pages = {
        None: {"versions": [{"name": "a"}], "nextPageToken": "t1"},
        "t1": {"versions": [{"name": "b"}]},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/models"):
            assert request.url.params["filter"] == "labels.team=a"
            return httpx.Response(200, json={})  # an empty list is {}
        assert request.url.path == "/v1/projects/p/models/m/versions"
        assert request.url.params["pageSize"] == "1"
        return httpx.Response(200, json=pages[request.url.params.get("pageToken")])

    client = fake_client(handler)
    assert [v["name"] for v in client.list_versions("m", page_size=1)] == ["a", "b"]
    assert list(client.list_models(filter="labels.team=a")) == []


def test_wait_returns_the_done_operation_or_raises_its_error() -> None:
    polls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "POST":
            return httpx.Response(200, json={"name": OP})
        polls["n"] += 1
        done = polls["n"] >= 2
        body: dict[str, Any] = {"name": OP, "done": done} if done else {"name": OP}
        if done:
            body["response"] = {"name": "projects/p/models/m/versions/v1", "state": "READY"}
        return httpx.Response(200, json=body)

    client = fake_client(handler)
    done = client.create_version("m", {"name": "v1", "deploymentUri": "/x"}, wait=True)
    assert done["response"]["state"] == "READY" and polls["n"] == 2

    failed = {"name": OP, "done": True, "error": {"code": 9, "message": "has versions"}}
    client = fake_client(lambda r: httpx.Response(200, json=failed))
    with pytest.raises(FailedPrecondition, match="has versions"):
        client.delete_model("m", wait=True)
    assert client.delete_model("m")["error"]["code"] == 9  # without wait: the operation


def test_predict_posts_instances_and_extra_keys() -> None:
    seen, handler = recording({"predictions": [1, 0]})
    client = fake_client(handler)
    assert client.predict("m", [[1, 2], [3, 4]]) == {"predictions": [1, 0]}
    client.predict("m", ["a"], version="v2", signature_name="serving_default")
    default, versioned = seen
    assert default.url.path == "/v1/projects/p/models/m:predict"
    assert default.headers["content-type"] == "application/json"
    assert json.loads(default.content) == {"instances": [[1, 2], [3, 4]]}
    assert versioned.url.path == "/v1/projects/p/models/m/versions/v2:predict"
    assert json.loads(versioned.content) == {
        "instances": ["a"],
        "signature_name": "serving_default",
    }


def test_predict_errors_keep_the_servers_message() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if "/missing" in request.url.path:
            return envelope(404, "NOT_FOUND", "Model missing was not found.")
        return httpx.Response(400, json={"error": "Prediction failed: ValueError: bad shape"})

    client = fake_client(handler)
    with pytest.raises(NotFound, match="missing"):
        client.predict("missing", [1])
    with pytest.raises(InvalidArgument, match="Prediction failed: ValueError: bad shape"):
        client.predict("m", [1])
