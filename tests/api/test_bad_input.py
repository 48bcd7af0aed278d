"""Bad input gets a clear 4xx in the Google error envelope — never a 500, a trace or a hang.

Most tests talk to the shared real server; a few build the app in-process (httpx's ASGI
transport) where they need small limits or a collaborator that fails on purpose.
"""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlengine.api.app import ApiLimits, create_app
from mlengine.api.auth import BearerTokens, check_bind_address
from mlengine.composition import Runtime, build_runtime
from mlengine.config import Settings
from mlengine.domain.errors import MlEngineError
from tests.api.conftest import (
    AUTH_TOKENS,
    ServerProcess,
    error_of,
    server_environment,
    training_job,
)


def _violation(response: httpx.Response) -> str:
    details = error_of(response)["details"]
    assert details[0]["@type"] == "type.googleapis.com/google.rpc.BadRequest"
    return str(details[0]["fieldViolations"][0]["field"])


def _post_raw(api: httpx.Client, path: str, content: bytes, content_type: str) -> httpx.Response:
    return api.post(path, content=content, headers={"Content-Type": content_type})


# -- bodies --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("content", "content_type", "reason"),
    [
        (b'{"jobId": "a",', "application/json", "not valid JSON"),
        (b"\xff\xfe{}", "application/json", "not valid JSON"),
        (b"[1, 2]", "application/json", "must be a JSON object, not an array"),
        (b'"job"', "application/json", "must be a JSON object, not a str"),
        (b"", "application/json", "body is empty"),
        (b'{"jobId": "a"}', "text/plain", "Content-Type: application/json"),
        (b'{"jobId": "a"}', "application/x-www-form-urlencoded", "Content-Type"),
        (b"[" * 5000 + b"]" * 5000, "application/json", "not valid JSON"),
    ],
    ids=["truncated", "not-utf8", "array", "string", "empty", "text-plain", "form", "deep"],
)
def test_malformed_bodies_are_400_with_a_reason(
    api: httpx.Client, project: str, content: bytes, content_type: str, reason: str
) -> None:
    response = _post_raw(api, f"/v1/projects/{project}/jobs", content, content_type)

    assert response.status_code == 400, response.text
    error = error_of(response)
    assert error["status"] == "INVALID_ARGUMENT"
    assert reason in error["message"]


@pytest.mark.parametrize(
    ("training_input", "field", "words"),
    [
        ({"workerCount": "four"}, "trainingInput.workerCount", "expected an integer"),
        ({"scaleTier": "basic"}, "trainingInput.scaleTier", "did you mean 'BASIC'"),
        ({"pythonModul": "trainer.task"}, "trainingInput.pythonModul", "pythonModule"),
        ({"args": "--lines 3"}, "trainingInput.args", "expected a JSON array"),
        ({"jobDir": "../../etc"}, "trainingInput.jobDir", "absolute path"),
        ({"jobDir": "/tmp/jobs/../../etc"}, "trainingInput.jobDir", "'..' segments"),
        ({"jobDir": "/tmp/jobs/a\x01b"}, "trainingInput.jobDir", "control characters"),
        ({"packageUris": ["../../etc/passwd.tar.gz"]}, "trainingInput.packageUris[0]", ""),
    ],
    ids=[
        "int-as-words",
        "enum-case",
        "unknown-field",
        "args-string",
        "job-dir",
        "job-dir-dotdot",
        "job-dir-control",
        "package",
    ],
)
def test_wrong_types_unknown_fields_and_traversal_name_the_field(
    api: httpx.Client,
    project: str,
    trainer_uri: str,
    training_input: dict[str, Any],
    field: str,
    words: str,
) -> None:
    body = training_job("job_1", trainer_uri)
    body["trainingInput"].update(training_input)

    response = api.post(f"/v1/projects/{project}/jobs", json=body)

    assert response.status_code == 400, response.text
    assert _violation(response) == field
    assert words in error_of(response)["message"]


def test_job_ids_are_checked(api: httpx.Client, project: str, trainer_uri: str) -> None:
    hyphen = api.post(f"/v1/projects/{project}/jobs", json=training_job("bad-id", trainer_uri))
    long = api.post(f"/v1/projects/{project}/jobs", json=training_job("j" * 200, trainer_uri))
    missing = api.post(
        f"/v1/projects/{project}/jobs",
        json={"trainingInput": training_job("x", trainer_uri)["trainingInput"]},
    )
    in_path = api.get(f"/v1/projects/{project}/jobs/{'j' * 200}")

    assert hyphen.status_code == 400 and _violation(hyphen) == "jobId"
    assert "Try 'bad_id'" in error_of(hyphen)["message"]
    assert long.status_code == 400 and _violation(long) == "jobId"
    assert missing.status_code == 400 and _violation(missing) == "jobId"
    assert in_path.status_code == 400 and _violation(in_path) == "name"


def test_project_ids_in_paths_are_checked(api: httpx.Client) -> None:
    listed = api.get("/v1/projects/Has Space/jobs")
    created = api.post("/v1/projects/UPPER/jobs", json={"jobId": "a"})

    assert listed.status_code == 400 and _violation(listed) == "parent"
    assert created.status_code == 400 and _violation(created) == "parent"
    assert "Try 'upper'" in error_of(created)["message"]


def test_traversal_in_paths_never_reaches_a_handler(api: httpx.Client) -> None:
    for path in (
        "/v1/projects/../jobs",
        "/v1/projects/p/jobs/..%2F..%2Fetc",
        "/v1/projects/p/jobs/%2e%2e",
    ):
        response = api.get(path)
        assert response.status_code in (400, 404), (path, response.text)
        error_of(response)


def test_a_body_over_the_limit_is_413_before_parsing(api: httpx.Client, project: str) -> None:
    huge = b'{"jobId": "' + b"x" * (11 * 1024 * 1024) + b'"}'

    declared = _post_raw(api, f"/v1/projects/{project}/jobs", huge, "application/json")
    chunked = api.post(
        f"/v1/projects/{project}/jobs",
        content=iter([huge[: 1 << 20]] * 11),
        headers={"Content-Type": "application/json"},
    )

    for response in (declared, chunked):
        assert response.status_code == 413
        assert "10 MB limit" in error_of(response)["message"]


def test_cancel_takes_only_an_empty_object(api: httpx.Client, project: str) -> None:
    response = api.post(f"/v1/projects/{project}/jobs/some_job:cancel", json={"force": True})
    assert response.status_code == 400 and _violation(response) == "force"


# -- query parameters, routes and verbs ------------------------------------------------------


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"pagesize": "5"}, "pagesize"),
        ({"pageSize": "five"}, "pageSize"),
        ({"pageSize": "-1"}, "pageSize"),
        ({"prettyPrint": "maybe"}, "prettyPrint"),
        ({"alt": "proto"}, "alt"),
        ({"$.xgafv": "3"}, "$.xgafv"),
        ({"callback": "f"}, "callback"),
        ({"fields": "jobs(jobId"}, "fields"),
        ({"fields": "a//b"}, "fields"),
        ({"filter": "jobId:"}, "filter"),
    ],
)
def test_bad_query_parameters_are_named(
    api: httpx.Client, project: str, params: dict[str, str], field: str
) -> None:
    response = api.get(f"/v1/projects/{project}/jobs", params=params)

    assert response.status_code == 400, response.text
    assert _violation(response) == field


def test_standard_parameters_are_accepted_everywhere(api: httpx.Client, project: str) -> None:
    params = {
        "alt": "json",
        "prettyPrint": "false",
        "$.xgafv": "2",
        "key": "k",
        "quotaUser": "me",
        "fields": "jobs",
    }
    assert api.get(f"/v1/projects/{project}/jobs", params=params).text == "{}"
    repeated = api.get(f"/v1/projects/{project}/jobs?pageSize=1&pageSize=2")
    assert repeated.status_code == 400 and _violation(repeated) == "pageSize"


def test_unknown_routes_and_wrong_verbs(api: httpx.Client, project: str) -> None:
    unknown = api.get("/v2/projects/p/jobs")
    unknown_method = api.post(f"/v1/projects/{project}/jobs/j:start")
    delete = api.delete(f"/v1/projects/{project}/jobs/j")
    put = api.put(f"/v1/projects/{project}/jobs", json={})

    assert unknown.status_code == 404 and error_of(unknown)["status"] == "NOT_FOUND"
    assert unknown_method.status_code == 404
    assert delete.status_code == 405
    assert delete.headers["allow"] == "GET, PATCH"
    assert put.status_code == 405 and "POST" in error_of(put)["message"]


# -- uploads ------------------------------------------------------------------------------


def test_uploads_check_the_name_and_the_body(api: httpx.Client) -> None:
    url = "/upload/v1/projects/p/packages"
    headers = {"Content-Type": "application/octet-stream"}
    nameless = api.post(url, content=b"abc", headers=headers)
    traversal = api.post(
        url, params={"filename": "../../evil.tar.gz"}, content=b"abc", headers=headers
    )
    not_an_archive = api.post(
        url, params={"filename": "notes.txt"}, content=b"abc", headers=headers
    )
    empty = api.post(url, params={"filename": "t-0.1.tar.gz"}, headers=headers)
    bogus = api.post(url, params={"filename": "t-0.1.tar.gz"}, content=b"abc", headers=headers)

    assert nameless.status_code == 400 and _violation(nameless) == "filename"
    assert traversal.status_code == 400 and _violation(traversal) == "packageUris"
    assert not_an_archive.status_code == 400
    assert empty.status_code == 400 and "empty" in error_of(empty)["message"]
    assert bogus.status_code == 400 and "not a valid" in error_of(bogus)["message"]


# -- in-process: limits and failures -------------------------------------------------------


@pytest.fixture
def runtime(tmp_path: Path) -> Iterator[Runtime]:
    built = build_runtime(Settings(home=tmp_path / "home"))
    yield built
    built.close()


def _call(app: Any, method: str, path: str, **kwargs: Any) -> httpx.Response:
    import asyncio

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.request(method, path, **kwargs)

    return asyncio.run(go())


def test_limits_are_configurable(runtime: Runtime) -> None:
    app = create_app(runtime, limits=ApiLimits(max_body_bytes=100, max_upload_bytes=1000))

    body = _call(
        app,
        "POST",
        "/v1/projects/p/jobs",
        content=b"{" + b" " * 200 + b"}",
        headers={"Content-Type": "application/json"},
    )
    upload = _call(
        app, "POST", "/upload/v1/projects/p/packages?filename=t-0.1.tar.gz", content=b"x" * 2000
    )

    assert body.status_code == 413 and "100 bytes limit" in body.json()["error"]["message"]
    assert upload.status_code == 413


def test_limits_come_from_settings(tmp_path: Path) -> None:
    """MLENGINE_MAX_REQUEST_BYTES / MLENGINE_MAX_PACKAGE_BYTES reach the app and the service."""
    settings = Settings.from_env(
        {
            "MLENGINE_HOME": str(tmp_path / "h"),
            "MLENGINE_MAX_REQUEST_BYTES": "100",
            "MLENGINE_MAX_PACKAGE_BYTES": "1000",
        }
    )
    built = build_runtime(settings)
    try:
        app = create_app(built)
        body = _call(
            app,
            "POST",
            "/v1/projects/p/jobs",
            content=b"{" + b" " * 200 + b"}",
            headers={"Content-Type": "application/json"},
        )
        upload = _call(
            app, "POST", "/upload/v1/projects/p/packages?filename=t-0.1.tar.gz", content=b"x" * 2000
        )
        assert body.status_code == 413 and "100 bytes limit" in body.json()["error"]["message"]
        assert upload.status_code == 413
    finally:
        built.close()


class _Exploding:
    def __getattr__(self, name: str) -> Any:
        def fail(*args: object, **kwargs: object) -> None:
            raise RuntimeError("secret internals /etc/shadow")

        return fail


def test_an_unexpected_error_is_a_generic_500_envelope(runtime: Runtime) -> None:
    app = create_app(dataclasses.replace(runtime, jobs=_Exploding()))  # type: ignore[arg-type]

    response = _call(app, "GET", "/v1/projects/p/jobs/j")

    assert response.status_code == 500
    error = error_of(response)
    assert error["status"] == "INTERNAL"
    assert "secret" not in response.text and "Traceback" not in response.text


# -- authentication --------------------------------------------------------------------------


def test_auth_requires_a_known_bearer_token(auth_server: ServerProcess) -> None:
    url = f"{auth_server.url}/v1/projects/p/jobs"

    missing = httpx.get(url)
    wrong = httpx.get(url, headers={"Authorization": "Bearer nope"})
    basic = httpx.get(url, headers={"Authorization": "Basic ZW52LXRva2VuLTE="})
    unknown_route = httpx.get(f"{auth_server.url}/v1/secret/things")

    for response in (missing, wrong, basic, unknown_route):
        assert response.status_code == 401
        assert error_of(response)["status"] == "UNAUTHENTICATED"
        assert response.headers["www-authenticate"].startswith("Bearer")
    for token in AUTH_TOKENS:
        ok = httpx.get(url, headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200, token
    assert httpx.get(url, params={"access_token": "env-token-2"}).status_code == 200
    assert httpx.get(f"{auth_server.url}/healthz").status_code == 200
    assert httpx.get(f"{auth_server.url}/metrics").status_code == 401


def test_tokens_are_kept_hashed() -> None:
    tokens = BearerTokens(["alpha", " beta ", ""])
    assert tokens.accepts("alpha") and tokens.accepts("beta")
    assert not tokens.accepts("alph") and not tokens.accepts("")
    assert "alpha" not in repr(vars(tokens))
    assert not BearerTokens([]).enabled


def test_binding_beyond_loopback_needs_tokens_or_insecure(tmp_path: Path) -> None:
    env = server_environment(tmp_path / "home")

    refused = subprocess.run(
        [sys.executable, "-m", "mlengine.server", "--host", "0.0.0.0", "--port", "0"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert refused.returncode == 6
    assert "--insecure" in refused.stderr and "MLENGINE_AUTH_TOKENS" in refused.stderr
    assert not (tmp_path / "home" / "server.json").exists()
    with pytest.raises(MlEngineError):
        check_bind_address("192.168.1.5", tokens=BearerTokens([]), insecure=False)
    check_bind_address("192.168.1.5", tokens=BearerTokens(["t"]), insecure=False)
    check_bind_address("0.0.0.0", tokens=BearerTokens([]), insecure=True)
    for host in ("127.0.0.1", "localhost", "::1", "127.0.0.2"):
        check_bind_address(host, tokens=BearerTokens([]), insecure=False)
