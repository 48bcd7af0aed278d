"""A real server process for the API tests, a tiny trainer package, and polling helpers.

``server`` is started once per session (``python -m mlengine.server --port 0`` with its own
MLENGINE_HOME); each test works in its own project (``project``), so listings never see
another test's jobs. ``trainer_uri`` is a hand-made sdist staged through the upload route.
"""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import tarfile
import textwrap
import time
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlengine.client.local_server import read_state
from tests.registry import predictor_available, sklearn_model_dir

TERMINAL = ("SUCCEEDED", "FAILED", "CANCELLED")
START_TIMEOUT = 90.0
JOB_TIMEOUT = 180.0

TRAINER_TASK = textwrap.dedent('''\
    """Prints numbered lines, maybe sleeps, then a last line; exits with --exit-code."""
    import argparse
    import sys
    import time

    parser = argparse.ArgumentParser()
    parser.add_argument("--lines", type=int, default=3)
    parser.add_argument("--sleep", type=float, default=0.0)
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--marker", default="")
    args, _ = parser.parse_known_args()
    for i in range(args.lines):
        print(f"line {i}", flush=True)
    if args.sleep:
        time.sleep(args.sleep)
    if args.exit_code:
        print(f"failing with {args.exit_code} on purpose", file=sys.stderr, flush=True)
    sys.stdout.write("last line")
    sys.stdout.flush()
    sys.exit(args.exit_code)
''')
SETUP_PY = (
    "from setuptools import setup\nsetup(name='apitrainer', version='0.1', packages=['trainer'])\n"
)


@dataclass
class ServerProcess:
    """A running ``python -m mlengine.server`` and where it keeps its state."""

    url: str
    home: Path
    process: subprocess.Popen[bytes]
    log: Path

    def stop(self, timeout: float = 30.0) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        try:
            return self.process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
            raise

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""


def server_environment(home: Path, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLENGINE_")}
    env.update(
        {"MLENGINE_HOME": str(home), "MLENGINE_SCHEDULER_INTERVAL": "0.2", "OMP_NUM_THREADS": "1"}
    )
    env.update(extra or {})
    return env


def start_server_process(
    home: Path, *, env: Mapping[str, str] | None = None, args: tuple[str, ...] = ()
) -> ServerProcess:
    """Start a server on 127.0.0.1 and a free port; return once /healthz answers."""
    home.mkdir(parents=True, exist_ok=True)
    log = home / "test-server.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [sys.executable, "-m", "mlengine.server", "--host", "127.0.0.1", "--port", "0", *args],
            env=server_environment(home, env),
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"the server exited with {process.returncode}:\n{log.read_text()}")
        state = read_state(home / "server.json")
        if state is not None and state.pid == process.pid and _healthy(state.url):
            return ServerProcess(state.url, home, process, log)
        time.sleep(0.1)
    process.kill()
    pytest.fail(f"the server did not answer within {START_TIMEOUT} s:\n{log.read_text()}")


def _healthy(url: str) -> bool:
    try:
        return httpx.get(url + "/healthz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def model_check_environment() -> dict[str, str]:
    """Versions are validated by loading them (the real subprocess checker) whenever
    ``mlengine.serving.predictor`` is importable; only without it does the server use the
    TEST-ONLY file-name stand-in (``MLENGINE_MODEL_CHECK=files``)."""
    return {} if predictor_available() else {"MLENGINE_MODEL_CHECK": "files"}


@pytest.fixture(scope="session")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    running = start_server_process(
        tmp_path_factory.mktemp("api-server") / "home", env=model_check_environment()
    )
    yield running
    assert running.stop() == 0, running.log_text()[-3000:]


#: Tokens of ``auth_server``: two from MLENGINE_AUTH_TOKENS, one from the tokens file.
AUTH_TOKENS = ("env-token-1", "env-token-2", "from-file-token")


@pytest.fixture(scope="session")
def auth_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """A second server, with bearer tokens configured."""
    home = tmp_path_factory.mktemp("auth-server") / "home"
    token_file = home.parent / "tokens.txt"
    token_file.write_text(f"# operators\n{AUTH_TOKENS[2]}\n\n")
    running = start_server_process(
        home,
        env={
            "MLENGINE_AUTH_TOKENS": ",".join(AUTH_TOKENS[:2]),
            "MLENGINE_AUTH_TOKENS_FILE": str(token_file),
        },
    )
    yield running
    assert running.stop() == 0, running.log_text()[-3000:]


@pytest.fixture
def api(server: ServerProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30) as client:
        yield client


@pytest.fixture
def project() -> str:
    """A project of this test's own."""
    return f"t{uuid.uuid4().hex[:12]}"


def new_job_id(prefix: str = "job") -> str:
    return f"{prefix}_{uuid.uuid4().hex[:10]}"


def build_trainer_sdist() -> bytes:
    """``apitrainer-0.1.tar.gz``: setup.py, PKG-INFO and the trainer package, made by hand."""
    files = {
        "setup.py": SETUP_PY,
        "PKG-INFO": "Metadata-Version: 2.1\nName: apitrainer\nVersion: 0.1\n",
        "trainer/__init__.py": "",
        "trainer/task.py": TRAINER_TASK,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"apitrainer-0.1/{name}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@pytest.fixture(scope="session")
def trainer_uri(server: ServerProcess) -> str:
    response = httpx.post(
        f"{server.url}/upload/v1/projects/uploads/packages",
        params={"filename": "apitrainer-0.1.tar.gz"},
        content=build_trainer_sdist(),
        headers={"Content-Type": "application/octet-stream"},
        timeout=60,
    )
    assert response.status_code == 200, response.text
    return str(response.json()["packageUri"])


def training_job(job_id: str, uri: str, *args: str, **training_input: Any) -> dict[str, Any]:
    """A Job body running the test trainer with ``args``."""
    spec = {
        "packageUris": [uri],
        "pythonModule": "trainer.task",
        "region": "local",
        "args": list(args),
        **training_input,
    }
    return {"jobId": job_id, "trainingInput": spec}


def wait_for_job(
    api: httpx.Client,
    project: str,
    job_id: str,
    states: tuple[str, ...] = TERMINAL,
    timeout: float = JOB_TIMEOUT,
) -> dict[str, Any]:
    """Poll jobs.get until the job is in one of ``states``; return it."""
    deadline = time.monotonic() + timeout
    job: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/v1/projects/{project}/jobs/{job_id}")
        assert response.status_code == 200, response.text
        job = response.json()
        if job.get("state") in states:
            return job
        time.sleep(0.2)
    pytest.fail(f"job {job_id} did not reach {states} within {timeout} s; last: {job}")


def all_logs(api: httpx.Client, project: str, job_id: str) -> list[dict[str, Any]]:
    """Every log entry of a job, read in pages of 2 through ``after``."""
    entries: list[dict[str, Any]] = []
    after = 0
    while True:
        response = api.get(
            f"/v1/projects/{project}/jobs/{job_id}/logs", params={"after": after, "limit": 2}
        )
        assert response.status_code == 200, response.text
        page = response.json()["entries"]
        if not page:
            return entries
        entries += page
        after = int(page[-1]["seq"])


@pytest.fixture(scope="session")
def model_origin(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A deploymentUri every model API test can use (versions copy it; nobody changes it)."""
    return str(sklearn_model_dir(tmp_path_factory.mktemp("model-origin") / "census"))


def wait_for_operation(
    api: httpx.Client, name: str, timeout: float = JOB_TIMEOUT
) -> dict[str, Any]:
    """Poll operations.get until the operation is done; return it."""
    deadline = time.monotonic() + timeout
    operation: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = api.get(f"/v1/{name}")
        assert response.status_code == 200, response.text
        operation = response.json()
        if operation.get("done"):
            return operation
        time.sleep(0.1)
    pytest.fail(f"operation {name} did not finish within {timeout} s; last: {operation}")


def error_of(response: httpx.Response) -> dict[str, Any]:
    """The ``error`` object of an envelope (asserting the envelope's shape)."""
    body = response.json()
    assert set(body) == {"error"}, body
    error: dict[str, Any] = body["error"]
    assert error["code"] == response.status_code
    assert {"code", "message", "status"} <= set(error)
    return error
