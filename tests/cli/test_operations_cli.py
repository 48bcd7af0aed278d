"""``mlengine operations``: rendering and waiting against a fake transport, then a real server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import yaml
from click.testing import CliRunner

from mlengine.cli.errors import run_cli
from mlengine.cli.main import cli
from tests.client.test_sdk import fake_client, server_process

OPERATION = {
    "name": "projects/p/operations/create_census_v1-1",
    "metadata": {
        "@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
        "createTime": "2024-03-07T17:13:34Z",
        "operationType": "CREATE_VERSION",
    },
}
DONE = {
    **OPERATION,
    "done": True,
    "response": {
        "@type": "type.googleapis.com/google.cloud.ml.v1.Version",
        "name": "projects/p/models/census/versions/v1",
        "state": "READY",
    },
}


def invoke(monkeypatch: pytest.MonkeyPatch, handler: Any, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr("mlengine.cli.operations.open_client", lambda ctx: fake_client(handler))
    with CliRunner().isolation() as (out, err, _):
        code = run_cli(cli, list(args))
    return code, out.getvalue().decode(), err.getvalue().decode()


def test_list_table_json_and_empty(monkeypatch: pytest.MonkeyPatch) -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/projects/p/operations"
        return httpx.Response(200, json={"operations": [OPERATION, DONE]})

    code, out, _ = invoke(monkeypatch, handler, "operations", "list")
    lines = out.splitlines()
    assert code == 0
    assert lines[0].split() == ["NAME", "DONE", "TYPE", "CREATED"]
    assert lines[1].split()[:3] == ["create_census_v1-1", "False", "CREATE_VERSION"]
    assert lines[2].split()[:3] == ["create_census_v1-1", "True", "CREATE_VERSION"]
    code, out, _ = invoke(
        monkeypatch, handler, "operations", "list", "--format", "json", "--limit", "1"
    )
    assert json.loads(out) == [OPERATION]

    code, out, err = invoke(
        monkeypatch, lambda r: httpx.Response(200, json={}), "operations", "list"
    )
    assert code == 0 and out == "" and "Listed 0 items." in err


def test_describe_accepts_a_bare_id_or_a_full_name(monkeypatch: pytest.MonkeyPatch) -> None:
    paths: list[str] = []

    def handler(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=DONE)

    code, out, _ = invoke(monkeypatch, handler, "operations", "describe", "create_census_v1-1")
    assert code == 0 and yaml.safe_load(out) == DONE
    invoke(monkeypatch, handler, "operations", "describe", "projects/other/operations/x")
    assert paths == [
        "/v1/projects/p/operations/create_census_v1-1",
        "/v1/projects/other/operations/x",
    ]


def test_wait_prints_the_response_or_exits_with_the_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    answers = iter([OPERATION, DONE])
    code, out, err = invoke(
        monkeypatch,
        lambda r: httpx.Response(200, json=next(answers)),
        "operations",
        "wait",
        "create_census_v1-1",
    )
    assert code == 0, err
    assert yaml.safe_load(out)["state"] == "READY"
    assert "Waiting for operation [projects/p/operations/create_census_v1-1]" in err

    failed = {
        **OPERATION,
        "done": True,
        "error": {"code": 9, "message": "The model could not be loaded."},
    }
    code, _, err = invoke(
        monkeypatch,
        lambda r: httpx.Response(200, json=failed),
        "operations",
        "wait",
        "create_census_v1-1",
    )
    assert code == 6 and "The model could not be loaded." in err

    code, _, err = invoke(
        monkeypatch,
        lambda r: httpx.Response(200, json=OPERATION),
        "operations",
        "wait",
        "create_census_v1-1",
        "--timeout",
        "0",
    )
    assert code == 9 and "not done" in err


def test_cancel_posts_to_the_operation(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={})

    code, _, err = invoke(monkeypatch, handler, "operations", "cancel", "op1")
    assert code == 0 and "projects/p/operations/op1" in err
    assert seen[0].method == "POST"
    assert seen[0].url.path == "/v1/projects/p/operations/op1:cancel"


# -- a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("ops-server") / "home") as url:
        yield url


def mlengine(server: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mlengine.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "MLENGINE_SERVER": server},
    )


def test_against_a_real_server(server: str) -> None:
    empty = mlengine(server, "operations", "list", "--format", "json")
    assert empty.returncode == 0, empty.stderr
    assert json.loads(empty.stdout) == []
    for command in ("describe", "cancel", "wait"):
        missing = mlengine(server, "operations", command, "no_such_op")
        assert missing.returncode == 4, (command, missing.stderr)
        assert "no_such_op" in missing.stderr
    other = mlengine(
        server, "operations", "describe", "projects/elsewhere/operations/x1", "--project", "mine"
    )
    assert other.returncode == 4 and "x1" in other.stderr
