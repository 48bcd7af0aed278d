"""Starting, finding and stopping servers; health, readiness and metrics."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from mlengine.api.app import create_app
from mlengine.client.local_server import (
    ensure_local_server,
    read_state,
    running_server,
    stop_server,
)
from mlengine.composition import build_runtime
from mlengine.config import Settings
from mlengine.domain.errors import Unavailable
from mlengine.server import SchedulerThread
from tests.api.conftest import (
    ServerProcess,
    new_job_id,
    server_environment,
    start_server_process,
    training_job,
    wait_for_job,
)


def mlengine(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = server_environment(home, {"MLENGINE_PORT": "0"})
    return subprocess.run(
        [sys.executable, "-m", "mlengine.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def home(tmp_path: Path) -> Iterator[Path]:
    path = tmp_path / "home"
    yield path
    state = read_state(path / "server.json")  # never leave a server behind
    if state is not None:
        stop_server(Settings(home=path))


def test_start_status_stop_in_the_background(home: Path) -> None:
    started = mlengine(home, "server", "start")
    assert started.returncode == 0, started.stderr
    state = read_state(home / "server.json")
    assert state is not None and state.url in started.stdout and str(state.pid) in started.stdout
    assert httpx.get(state.url + "/healthz").json()["status"] == "ok"

    again = mlengine(home, "server", "start")
    status = mlengine(home, "server", "status")
    stopped = mlengine(home, "server", "stop")
    after = mlengine(home, "server", "status")

    assert again.returncode == 0 and "already running" in again.stdout
    assert status.returncode == 0
    for value in ("running", state.url, str(state.pid), state.version):
        assert value in status.stdout
    assert stopped.returncode == 0 and "stopped" in stopped.stdout
    assert (after.returncode, after.stdout.strip()) == (3, "mlengine server: not running")
    assert not (home / "server.json").exists()
    with pytest.raises(httpx.TransportError):
        httpx.get(state.url + "/healthz")
    assert "starting mlengine server" in (home / "server.log").read_text()


def test_a_stale_state_file_is_noticed_and_replaced(home: Path) -> None:
    home.mkdir(parents=True)
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (home / "server.json").write_text(
        json.dumps({"pid": int(dead), "url": "http://127.0.0.1:9", "started": "x", "version": "0"})
    )

    status = mlengine(home, "server", "status")
    assert status.returncode == 3 and f"stale state file of pid {dead}" in status.stdout
    assert not (home / "server.json").exists()
    (home / "server.json").write_text("{not json")
    os.utime(home / "server.json", (0, 0))
    started = mlengine(home, "server", "start")

    assert started.returncode == 0, started.stderr
    assert mlengine(home, "server", "stop").returncode == 0


def test_a_killed_server_leaves_a_stale_file_that_start_replaces(home: Path) -> None:
    running = start_server_process(home)
    running.process.kill()
    running.process.wait()
    assert (home / "server.json").exists()

    assert running_server(Settings(home=home)) is None
    assert not (home / "server.json").exists()
    assert mlengine(home, "server", "start").returncode == 0
    assert mlengine(home, "server", "stop").returncode == 0


def test_ensure_local_server_starts_one_and_says_so(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for key, value in server_environment(home).items():
        monkeypatch.setenv(key, value)
    settings = Settings(home=home, port=0)

    url = ensure_local_server(settings)
    first = capsys.readouterr().err
    again = ensure_local_server(settings)
    second = capsys.readouterr().err
    state = read_state(home / "server.json")

    assert state is not None and url == state.url
    assert first.strip() == (
        f"Started a local mlengine server at {url} (pid {state.pid}); "
        "stop it with: mlengine server stop"
    )
    assert again == url and second == ""
    assert httpx.get(url + "/v1/projects/p/jobs").status_code == 200
    assert ensure_local_server(dataclasses.replace(settings, server_url="http://x:1/")) == (
        "http://x:1"
    )
    stopped, killed = stop_server(settings)
    assert stopped is not None and stopped.pid == state.pid and not killed
    assert stop_server(settings) == (None, False)


def test_start_failures_carry_the_servers_own_error(home: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = server_environment(home, {"MLENGINE_PORT": str(port)})
        result = subprocess.run(
            [sys.executable, "-m", "mlengine.cli", "server", "start"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )

    assert result.returncode == 9, result.stderr  # UNAVAILABLE
    assert f"Cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "server.log" in result.stderr


def test_one_server_per_home(server: ServerProcess) -> None:
    second = subprocess.run(
        [sys.executable, "-m", "mlengine.server", "--port", "0"],
        env=server_environment(server.home),
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert second.returncode == 6
    assert "Another mlengine server is already running" in second.stderr
    assert server.url in second.stderr
    assert read_state(server.home / "server.json") is not None  # the first one's file stays


def test_foreground_start_keeps_the_pid_and_stops_cleanly_on_sigterm(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = server_environment(home)
    process = subprocess.Popen(
        [sys.executable, "-m", "mlengine.cli", "server", "start", "--foreground", "--port", "0"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        state = None
        for _ in range(600):
            state = read_state(home / "server.json")
            if state is not None:
                break
            assert process.poll() is None
            asyncio.run(asyncio.sleep(0.1))
        assert state is not None and state.pid == process.pid
    finally:
        process.terminate()
        assert process.wait(timeout=30) == 0
    assert not (home / "server.json").exists()


# -- observability -------------------------------------------------------------------------


def test_metrics_count_requests_by_route_template_and_jobs_by_state(
    api: httpx.Client, project: str, trainer_uri: str
) -> None:
    job_id = new_job_id()
    api.post(f"/v1/projects/{project}/jobs", json=training_job(job_id, trainer_uri))
    wait_for_job(api, project, job_id)
    api.get(f"/v1/projects/{project}/jobs/nosuchjob")

    text = api.get("/metrics").text

    assert (
        'mlengine_http_requests_total{method="GET",'
        'route="/v1/projects/{project}/jobs/{job}",status="404"}'
    ) in text
    assert 'route="/v1/projects/{project}/jobs",status="200"' in text
    assert "mlengine_http_request_duration_seconds_bucket" in text
    assert job_id not in text and project not in text
    succeeded = next(
        line for line in text.splitlines() if line.startswith('mlengine_jobs{state="SUCCEEDED"}')
    )
    assert float(succeeded.split()[-1]) >= 1
    assert 'mlengine_jobs{state="QUEUED"}' in text


def test_readyz_answers_while_the_store_does(api: httpx.Client) -> None:
    assert api.get("/readyz").json() == {"status": "ready"}
    assert api.get("/healthz").json()["status"] == "ok"


class _UnreachableStore:
    def __getattr__(self, name: str) -> object:
        def fail(*args: object, **kwargs: object) -> None:
            raise Unavailable("could not connect to server: Connection refused")

        return fail


def test_readyz_is_503_when_the_store_is_unreachable(tmp_path: Path) -> None:
    runtime = build_runtime(Settings(home=tmp_path / "home"))
    try:
        app = create_app(dataclasses.replace(runtime, store=_UnreachableStore()))  # type: ignore[arg-type]

        async def probe() -> tuple[httpx.Response, httpx.Response, httpx.Response]:
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
                return (
                    await client.get("/readyz"),
                    await client.get("/healthz"),
                    await client.get("/metrics"),
                )

        ready, healthy, metrics = asyncio.run(probe())
    finally:
        runtime.close()

    assert ready.status_code == 503
    assert ready.json()["error"]["status"] == "UNAVAILABLE"
    assert "Connection refused" in ready.json()["error"]["message"]
    assert healthy.status_code == 200
    assert metrics.status_code == 200 and "mlengine_jobs{" not in metrics.text
    assert "mlengine_versions{" not in metrics.text


class _FailingLoop:
    def tick(self) -> None:
        raise RuntimeError("the database went away")


class _CountingLoop:
    def __init__(self) -> None:
        self.ticks = 0
        self.enough = threading.Event()

    def tick(self) -> None:
        self.ticks += 1
        if self.ticks >= 3:
            self.enough.set()


def test_the_scheduler_thread_ticks_every_loop_even_when_one_fails(
    caplog: pytest.LogCaptureFixture,
) -> None:
    counting = _CountingLoop()
    with SchedulerThread([_FailingLoop(), counting], 0.01):
        assert counting.enough.wait(10)
    failures = [r for r in caplog.records if "_FailingLoop tick failed" in r.getMessage()]
    assert len(failures) == 1  # the same failure again is not logged again at once
