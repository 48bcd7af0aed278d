"""A custom prediction routine end to end, over real HTTP against the real server (spec §3.7).

The routine's code is a small sdist uploaded through ``/upload/v1/projects/P/packages``; the
version names it with ``predictionClass`` and ``packageUris``. The server publishes the
package with the version, loads the routine once in its checker subprocess, and its data
plane builds it with ``from_path`` (reading a file of the model folder) and passes the
request's extra top-level keys to ``predict``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import ServerProcess, error_of, wait_for_operation
from tests.registry import ROUTINE_MODULE, build_sdist, predictor_available

pytestmark = pytest.mark.skipif(not predictor_available(), reason="no predictor module")

PACKAGE = "greeter-0.1.tar.gz"


def upload(server: ServerProcess, project: str, filename: str, data: bytes) -> str:
    response = httpx.post(
        f"{server.url}/upload/v1/projects/{project}/packages",
        params={"filename": filename},
        content=data,
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["packageUri"])


def create_version(api: httpx.Client, project: str, body: dict[str, Any]) -> httpx.Response:
    created = api.post(f"/v1/projects/{project}/models", json={"name": "greeter"})
    assert created.status_code == 200, created.text
    return api.post(f"/v1/projects/{project}/models/greeter/versions", json=body)


@pytest.fixture
def model_folder(tmp_path: Path) -> Path:
    """What ``from_path`` reads: the greeting."""
    folder = tmp_path / "greeter-model"
    folder.mkdir()
    (folder / "greeting.txt").write_text("Hello\n")
    return folder


def test_a_routine_is_deployed_and_predicts_with_request_keys(
    api: httpx.Client, server: ServerProcess, project: str, model_folder: Path
) -> None:
    uri = upload(
        server, project, PACKAGE, build_sdist("greeter", "0.1", {"greeter.py": ROUTINE_MODULE})
    )
    body = {
        "name": "v1",
        "deploymentUri": str(model_folder),
        "predictionClass": "greeter.Greeter",
        "packageUris": [uri],
        "runtimeVersion": "2.11",
        "pythonVersion": "3.7",
    }
    response = create_version(api, project, body)
    assert response.status_code == 200, response.text
    done = wait_for_operation(api, response.json()["name"])
    assert "error" not in done, done
    version = done["response"]
    assert version["state"] == "READY" and version["isDefault"] is True
    assert version["predictionClass"] == "greeter.Greeter" and version["packageUris"] == [uri]
    assert "framework" not in version

    target = f"/v1/projects/{project}/models/greeter/versions/v1:predict"
    shouted = api.post(target, json={"instances": ["Ada", "Linus"], "punctuation": "!"})
    assert shouted.status_code == 200, shouted.text
    assert shouted.json() == {"predictions": ["Hello, Ada!", "Hello, Linus!"]}

    plain = api.post(f"/v1/projects/{project}/models/greeter:predict", json={"instances": ["Bo"]})
    assert plain.status_code == 200, plain.text
    assert plain.json() == {"predictions": ["Hello, Bo."]}


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"framework": "SCIKIT_LEARN"}, "framework"),
        (
            {"packageUris": ["mlengine-artifacts://packages/" + "0" * 64 + "/x-1.0.tar.gz"]},
            "packageUris[0]",
        ),
        ({"packageUris": ["http://example.com/x-1.0.tar.gz"]}, "packageUris[0]"),
    ],
)
def test_bad_routine_versions_are_refused_naming_the_field(
    api: httpx.Client, project: str, model_folder: Path, fields: dict[str, Any], field: str
) -> None:
    body = {
        "name": "v1",
        "deploymentUri": str(model_folder),
        "predictionClass": "greeter.Greeter",
        **fields,
    }
    response = create_version(api, project, body)
    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert error["details"][0]["fieldViolations"][0]["field"] == field


def test_a_routine_that_does_not_load_ends_failed(
    api: httpx.Client, server: ServerProcess, project: str, model_folder: Path
) -> None:
    broken = build_sdist("broken", "0.1", {"broken.py": "raise ImportError('no greeter here')\n"})
    uri = upload(server, project, "broken-0.1.tar.gz", broken)
    body = {
        "name": "v1",
        "deploymentUri": str(model_folder),
        "predictionClass": "broken.Greeter",
        "packageUris": [uri],
    }
    response = create_version(api, project, body)
    assert response.status_code == 200, response.text
    done = wait_for_operation(api, response.json()["name"])
    assert done["error"]["code"] == 9, done
    assert "no greeter here" in done["error"]["message"]
    version = api.get(f"/v1/projects/{project}/models/greeter/versions/v1").json()
    assert version["state"] == "FAILED" and "no greeter here" in version["errorMessage"]
