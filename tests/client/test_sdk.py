"""The Python SDK: against a fake transport (exact wire behaviour) and a real server process.

``server_process`` and ``write_trainer`` are shared with the CLI tests (tests/cli).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlengine.client.sdk import Client, JobView
from mlengine.config import Settings
from mlengine.domain.errors import (
    Code,
    FailedPrecondition,
    InvalidArgument,
    MlEngineError,
    NotFound,
    Unavailable,
)

# -- shared helpers: a real server and a tiny trainer ------------------------------------

TRAINER_TASK = '''\
"""A tiny trainer: prints lines, sleeps, prints a last line without a newline, exits."""
import argparse
import json
import sys
import time

parser = argparse.ArgumentParser()
parser.add_argument("--lines", type=int, default=3)
parser.add_argument("--sleep", type=float, default=0.0)
parser.add_argument("--exit-code", type=int, default=0)
args, _ = parser.parse_known_args()
print("ARGS " + json.dumps(sys.argv[1:]), flush=True)
for i in range(args.lines):
    print(f"line {i}", flush=True)
time.sleep(args.sleep)
sys.stdout.write(f"LAST LINE exit={args.exit_code}")
sys.stdout.flush()
sys.exit(args.exit_code)
'''


def write_trainer(root: Path) -> Path:
    """``root/pkg/trainer/{__init__,task}.py``; returns the package folder."""
    package = root / "pkg" / "trainer"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "task.py").write_text(TRAINER_TASK)
    return package


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def server_process(home: Path) -> Iterator[str]:
    """A real ``mlengine server start --foreground`` on 127.0.0.1 with its own home."""
    home.mkdir(parents=True, exist_ok=True)
    port = free_port()
    env = {**os.environ, "MLENGINE_HOME": str(home), "OMP_NUM_THREADS": "1"}
    env.pop("MLENGINE_SERVER", None)
    env.setdefault("MLENGINE_SCHEDULER_INTERVAL", "0.2")
    log_path = home / "server.log"
    with log_path.open("w") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mlengine.cli",
                "server",
                "start",
                "--foreground",
                "--port",
                str(port),
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(url, proc, log_path)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path) -> None:
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited with {proc.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(url + "/v1/projects/mlengine/jobs", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    pytest.fail(f"server at {url} not ready after 90 s:\n{log_path.read_text()}")


def new_job_id(prefix: str = "job") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def wait_for(predicate: Callable[[], bool], timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


# -- fake transport: exact wire behaviour -------------------------------------------------

Handler = Callable[[httpx.Request], httpx.Response]


def fake_client(handler: Handler, **kwargs: Any) -> Client:
    settings = Settings(home=Path("/nonexistent"), server_url="http://fake:1", project="p")
    return Client(settings=settings, transport=httpx.MockTransport(handler), **kwargs)


def envelope(status: int, code: str, message: str, field: str | None = None) -> httpx.Response:
    error: dict[str, Any] = {"code": status, "message": message, "status": code}
    if field:
        error["details"] = [
            {
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "fieldViolations": [{"field": field, "description": message}],
            }
        ]
    return httpx.Response(status, json={"error": error})


def test_errors_are_rebuilt_with_class_message_and_field() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path.endswith("/jobs/missing"):
            return envelope(404, "NOT_FOUND", "Job missing was not found.")
        if request.method == "POST":
            return envelope(400, "INVALID_ARGUMENT", "bad tier", "trainingInput.scaleTier")
        if request.method == "PATCH":
            return envelope(409, "ABORTED", "etag mismatch", "etag")
        return envelope(400, "FAILED_PRECONDITION", "already ended", "name")

    client = fake_client(handler)
    with pytest.raises(NotFound, match="Job missing was not found"):
        client.get_job("missing")
    with pytest.raises(InvalidArgument) as bad:
        client.create_job({"jobId": "x"})
    assert bad.value.field == "trainingInput.scaleTier"
    assert bad.value.exit_code == 2
    with pytest.raises(MlEngineError) as aborted:
        client.update_job_labels("j", {"a": "b"}, etag="e")
    assert aborted.value.code is Code.ABORTED
    with pytest.raises(FailedPrecondition):
        client.get_job("ended")


def test_non_envelope_errors_map_by_http_status() -> None:
    client = fake_client(lambda r: httpx.Response(503, text="<html>bad gateway</html>"))
    with pytest.raises(Unavailable, match="503"):
        client.get_job("j")
    flat = fake_client(lambda r: httpx.Response(400, json={"error": "model failed"}))
    with pytest.raises(InvalidArgument, match="model failed"):
        flat.get_job("j")


def test_requests_carry_token_project_and_wire_parameters() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(200, json={"labels": {"a": "1"}})

    client = fake_client(handler, project="proj", token="s3cret")
    client.update_job_labels("j1", {"a": "1"}, etag="abc=")
    client.update_job_labels("j1", {"a": "1"})
    client.cancel_job("j1")
    first, second, cancel = seen
    assert first.headers["authorization"] == "Bearer s3cret"
    assert first.method == "PATCH" and first.url.path == "/v1/projects/proj/jobs/j1"
    assert first.url.params["updateMask"] == "labels,etag"
    assert json.loads(first.content) == {"labels": {"a": "1"}, "etag": "abc="}
    assert second.url.params["updateMask"] == "labels"
    assert cancel.url.path == "/v1/projects/proj/jobs/j1:cancel"


def test_relabel_retries_when_the_etag_moved_and_skips_no_ops() -> None:
    patches: list[dict[str, Any]] = []
    etags = iter(["e1", "e2", "e3"])

    def handler(request: httpx.Request) -> httpx.Response:
        if request.method == "GET":
            return httpx.Response(
                200, json={"jobId": "j", "labels": {"a": "1", "b": "2"}, "etag": next(etags)}
            )
        patches.append(json.loads(request.content))
        if len(patches) == 1:
            return envelope(409, "ABORTED", "etag mismatch", "etag")
        return httpx.Response(200, json={"jobId": "j", **patches[-1]})

    client = fake_client(handler)
    job, changed = client.relabel_job("j", update={"c": "3"}, remove=["a"])
    assert changed and job["labels"] == {"b": "2", "c": "3"}
    assert [p["etag"] for p in patches] == ["e1", "e2"]
    _, changed = client.relabel_job("j", update={"b": "2"})
    assert not changed and len(patches) == 2


def test_list_jobs_walks_every_page() -> None:
    pages = {
        None: {"jobs": [{"jobId": "a"}, {"jobId": "b"}], "nextPageToken": "t1"},
        "t1": {"jobs": [{"jobId": "c"}], "nextPageToken": "t2"},
        "t2": {},
    }

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.params.get("filter") == "state=FAILED"
        return httpx.Response(200, json=pages[request.url.params.get("pageToken")])

    client = fake_client(handler)
    assert [j["jobId"] for j in client.list_jobs(filter="state=FAILED")] == ["a", "b", "c"]


def test_follow_logs_loses_nothing_and_stops_after_end_and_an_empty_read() -> None:
    """Lines appear across polls; the job ends while lines remain unread."""
    log = [{"seq": str(i), "message": f"m{i}"} for i in range(1, 8)]
    polls: list[int] = []

    def handler(request: httpx.Request) -> httpx.Response:
        after = int(request.url.params["after"])
        polls.append(after)
        visible = {1: 2, 2: 5}.get(len(polls), 7)  # lines written so far
        ended = len(polls) >= 3
        entries = [e for e in log[:visible] if int(e["seq"]) > after][:2]
        job = {"jobId": "j", "state": "SUCCEEDED" if ended else "RUNNING"}
        if ended:
            job["endTime"] = "2024-01-01T00:00:00Z"
        return httpx.Response(200, json={"job": job, "entries": entries})

    client = fake_client(handler)
    got = [e["message"] for e in client.follow_logs("j", poll_interval=0)]
    assert got == [f"m{i}" for i in range(1, 8)]
    assert polls[-1] == 7  # the final, empty read came after the last line


def test_wait_operation_returns_the_result_or_raises_its_error() -> None:
    calls = {"n": 0}

    def handler(request: httpx.Request) -> httpx.Response:
        assert request.url.path == "/v1/projects/p/operations/op1"
        calls["n"] += 1
        if calls["n"] < 3:
            return httpx.Response(200, json={"name": "projects/p/operations/op1"})
        return httpx.Response(
            200,
            json={"name": "projects/p/operations/op1", "done": True, "response": {"name": "v1"}},
        )

    assert fake_client(handler).wait_operation("op1", poll_interval=0)["response"] == {"name": "v1"}

    failed = {
        "name": "projects/p/operations/op2",
        "done": True,
        "error": {"code": 5, "message": "model gone"},
    }
    client = fake_client(lambda r: httpx.Response(200, json=failed))
    with pytest.raises(NotFound, match="projects/p/operations/op2 failed: model gone"):
        client.wait_operation("projects/p/operations/op2", poll_interval=0)

    pending = fake_client(lambda r: httpx.Response(200, json={"name": "projects/p/operations/o"}))
    with pytest.raises(MlEngineError) as late:
        pending.wait_operation("o", timeout=0.05, poll_interval=0.01)
    assert late.value.code is Code.DEADLINE_EXCEEDED


def test_trials_dataframe_and_html_repr() -> None:
    job = {
        "jobId": "hp",
        "state": "SUCCEEDED",
        "trainingOutput": {
            "trials": [
                {
                    "trialId": "2",
                    "hyperparameters": {"lr": "0.1", "layers": "3"},
                    "finalMetric": {"trainingStep": "100", "objectiveValue": 0.9},
                    "state": "SUCCEEDED",
                },
                {
                    "trialId": "1",
                    "hyperparameters": {"lr": "0.5", "layers": "<b>"},
                    "finalMetric": {"trainingStep": "90", "objectiveValue": 0.7},
                    "state": "SUCCEEDED",
                },
            ]
        },
    }
    client = fake_client(lambda r: httpx.Response(200, json=job))
    frame = client.trials_dataframe("hp")
    assert list(frame["trialId"]) == ["2", "1"]
    assert list(frame["objectiveValue"]) == [0.9, 0.7]
    assert list(frame["trainingStep"]) == [100, 90]
    assert {"lr", "layers"} <= set(frame.columns)
    view = client.job("hp")
    assert isinstance(view, JobView) and view.state == "SUCCEEDED"
    page = view._repr_html_()
    assert "<table>" in page and "0.9" in page and "&lt;b&gt;" in page


def test_connection_refused_names_the_url_and_the_fix() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, project="p") as client, pytest.raises(Unavailable) as err:
        client.get_job("j")
    assert url in err.value.message
    assert "mlengine server start" in err.value.message
    assert "MLENGINE_SERVER" in err.value.message


def test_client_is_a_lazy_attribute_of_the_package() -> None:
    code = (
        "import sys, mlengine; assert 'httpx' not in sys.modules; "
        "from mlengine import Client; assert 'httpx' in sys.modules; print(Client.__name__)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Client"


# -- a real server ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with server_process(tmp_path_factory.mktemp("sdk-server") / "home") as url:
        yield url


@pytest.fixture(scope="module")
def package_uri(server: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    from mlengine.client.packaging import build_package

    root = tmp_path_factory.mktemp("sdk-trainer")
    archive = build_package(write_trainer(root), out_dir=root / "dist")
    with Client(server, project="sdk") as client:
        return client.upload_package(archive)


def training_job(job_id: str, package_uri: str, *args: str) -> dict[str, Any]:
    return {
        "jobId": job_id,
        "labels": {"suite": "sdk"},
        "trainingInput": {
            "scaleTier": "BASIC",
            "region": "local",
            "pythonModule": "trainer.task",
            "packageUris": [package_uri],
            "args": list(args),
        },
    }


@pytest.mark.timeout(180)
def test_a_job_runs_and_its_log_is_complete(server: str, package_uri: str) -> None:
    with Client(server, project="sdk") as client:
        job_id = new_job_id()
        created = client.create_job(training_job(job_id, package_uri, "--lines", "5"))
        assert created["jobId"] == job_id and created["state"] == "QUEUED"
        entries = []
        deadline = time.monotonic() + 120  # follow_logs itself waits as long as the job runs
        for entry in client.follow_logs(job_id, poll_interval=0.2):
            entries.append(entry)
            assert time.monotonic() < deadline, f"job still logging after 120 s: {entries[-5:]}"
        messages = [e["message"] for e in entries if e["taskName"] == "master-replica-0"]
        assert [m for m in messages if m.startswith("line ")] == [f"line {i}" for i in range(5)]
        assert messages[-1] == "LAST LINE exit=0"
        seqs = [int(e["seq"]) for e in entries]
        assert seqs == sorted(set(seqs))
        done = client.wait_job(job_id, poll_interval=0.2, timeout=60)
        assert done["state"] == "SUCCEEDED" and done.get("endTime")
        assert job_id in {j["jobId"] for j in client.list_jobs(page_size=1)}


def test_labels_update_with_etag_and_stale_etag_is_refused(server: str, package_uri: str) -> None:
    with Client(server, project="sdk") as client:
        job_id = new_job_id()
        client.create_job(training_job(job_id, package_uri, "--lines", "0"))
        relabelled, changed = client.relabel_job(job_id, update={"a": "1"}, remove=["suite"])
        assert changed and relabelled["labels"] == {"a": "1"}  # retried while the job moved on
        client.wait_job(job_id, poll_interval=0.2, timeout=60)
        current = client.get_job(job_id)
        updated = client.update_job_labels(job_id, {"team": "a"}, etag=current["etag"])
        assert updated["labels"] == {"team": "a"}
        with pytest.raises(MlEngineError) as stale:
            client.update_job_labels(job_id, {"team": "b"}, etag=current["etag"])
        assert stale.value.code is Code.ABORTED
        assert client.get_job(job_id)["labels"] == {"team": "a"}


def test_cancel_a_running_job_then_cancel_again_fails(server: str, package_uri: str) -> None:
    with Client(server, project="sdk") as client:
        job_id = new_job_id()
        client.create_job(training_job(job_id, package_uri, "--sleep", "60"))
        wait_for(lambda: client.get_job(job_id)["state"] == "RUNNING", what="RUNNING")
        client.cancel_job(job_id)
        done = client.wait_job(job_id, poll_interval=0.2, timeout=60)
        assert done["state"] == "CANCELLED"
        with pytest.raises(FailedPrecondition):
            client.cancel_job(job_id)


def test_server_errors_reach_the_caller(server: str) -> None:
    with Client(server, project="sdk") as client:
        with pytest.raises(NotFound):
            client.get_job("no_such_job")
        with pytest.raises(InvalidArgument) as bad:
            client.create_job({"jobId": "bad-id", "trainingInput": {}})
        assert bad.value.field
        with pytest.raises(NotFound):
            client.get_operation("no_such_operation")
        assert list(client.list_operations()) == []
