"""kill -9 of a real server while a version is being created and another deleted.

The new server's deployer finds the CREATING version (its operation not done) and deploys it
again; the DELETING one is deleted.  Both operations end done, nothing is left half-way.
"""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from tests.api.conftest import (
    model_check_environment,
    start_server_process,
    wait_for_operation,
)
from tests.registry import sklearn_model_dir

PROJECT = "crash-test"


@pytest.mark.slow
def test_kill_9_during_version_creation_loses_nothing(tmp_path: Path) -> None:
    home = tmp_path / "home"
    origin = str(sklearn_model_dir(tmp_path / "origin"))
    env = model_check_environment()
    first = start_server_process(home, env=env)
    models = f"/v1/projects/{PROJECT}/models"
    with httpx.Client(base_url=first.url, timeout=30) as client:
        assert client.post(models, json={"name": "census"}).status_code == 200
        ready = client.post(
            f"{models}/census/versions", json={"name": "old", "deploymentUri": origin}
        )
        wait_for_operation(client, ready.json()["name"])
        deleting = client.delete(f"{models}/census/versions/old").json()
        creating = client.post(
            f"{models}/census/versions", json={"name": "v1", "deploymentUri": origin}
        ).json()
    first.process.send_signal(signal.SIGKILL)
    first.process.wait()

    second = start_server_process(home, env=env)
    try:
        with httpx.Client(base_url=second.url, timeout=30) as client:
            created = wait_for_operation(client, creating["name"])
            deleted = wait_for_operation(client, deleting["name"])
            versions = client.get(f"{models}/census/versions").json()["versions"]
            model = client.get(f"{models}/census").json()
    finally:
        assert second.stop() == 0, second.log_text()[-3000:]

    assert created["response"]["state"] == "READY", created
    assert deleted["response"]["@type"].endswith("protobuf.Empty")
    assert [v["name"].rsplit("/", 1)[1] for v in versions] == ["v1"]
    assert model["defaultVersion"]["name"].endswith("/versions/v1")
