"""The local server: find it, start it in the background, stop it.

A running server records itself in ``settings.server_state_file``
(``$MLENGINE_HOME/server.json``)::

    {"pid": 4242, "url": "http://127.0.0.1:8570", "started": "2024-05-01T09:30:00Z",
     "version": "0.1.0"}

written atomically once it listens, removed when it stops cleanly. This module owns that
format: the server (``mlengine.server``) writes it with :func:`write_state`, the CLI and the
SDK read it. A file whose pid is gone (a crash, a reboot) is *stale*: it is removed and
treated as "not running".

Starting in the background runs ``python -m mlengine.server`` detached (its own session, so
Ctrl-C in the terminal does not reach it) with its output appended to
``$MLENGINE_HOME/server.log``, then waits until ``/healthz`` answers. Failures quote the
end of that log.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

import httpx

from mlengine import __version__
from mlengine.config import Settings
from mlengine.domain.errors import Code, MlEngineError, Unavailable, error_for_code

DEFAULT_START_TIMEOUT = 60.0
DEFAULT_STOP_TIMEOUT = 30.0
LOG_TAIL_LINES = 25
_POLL_SECONDS = 0.1
#: How ``python -m mlengine.server`` reports a start-up failure (see ``cli/errors.py``).
_ERROR_LINE = re.compile(rf"^ERROR: \((?P<code>{'|'.join(Code)})\) (?P<message>.*)$")


@dataclass(frozen=True)
class ServerState:
    """What ``server.json`` records about a running server."""

    pid: int
    url: str
    started: str
    version: str = __version__

    @classmethod
    def now(cls, url: str) -> ServerState:
        started = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return cls(pid=os.getpid(), url=url, started=started)


def write_state(path: Path, state: ServerState) -> None:
    """Replace the state file atomically (a reader never sees half of it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temporary.write_text(json.dumps(asdict(state), indent=2) + "\n", encoding="utf-8")
    os.replace(temporary, path)


def read_state(path: Path) -> ServerState | None:
    """The recorded server, or None when there is no readable state file."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return ServerState(
            pid=int(data["pid"]),
            url=str(data["url"]),
            started=str(data.get("started", "")),
            version=str(data.get("version", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def remove_state(path: Path, *, pid: int | None = None) -> None:
    """Remove the state file; with ``pid``, only if it still records that process."""
    state = read_state(path)
    if pid is not None and state is not None and state.pid != pid:
        return
    path.unlink(missing_ok=True)


def pid_alive(pid: int) -> bool:
    """True while ``pid`` runs (a child of ours that exited is reaped, so it is not)."""
    try:
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    except ChildProcessError:
        pass  # not our child: ask the kernel below
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return _looks_like_server(pid)


def _looks_like_server(pid: int) -> bool:
    """Guards against a recycled pid: on Linux the command line must mention mlengine."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    try:
        return b"mlengine" in cmdline.read_bytes()
    except FileNotFoundError:
        return not Path("/proc/self").exists()  # no procfs: trust the pid
    except OSError:
        return True


def is_healthy(url: str, *, timeout: float = 2.0) -> bool:
    """True when ``url``/healthz answers 200."""
    try:
        return httpx.get(f"{url.rstrip('/')}/healthz", timeout=timeout).status_code == 200
    except httpx.HTTPError:
        return False


def running_server(settings: Settings) -> ServerState | None:
    """The recorded server if its process is alive; a stale state file is removed."""
    path = settings.server_state_file
    state = read_state(path)
    if state is None:
        if path.exists() and time.time() - path.stat().st_mtime > 5:
            path.unlink(missing_ok=True)  # unreadable and not being written right now
        return None
    if not pid_alive(state.pid):
        remove_state(path, pid=state.pid)
        return None
    return state


def server_log_path(settings: Settings) -> Path:
    return settings.home / "server.log"


def wait_until_healthy(url: str, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if is_healthy(url):
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)


def start_server(
    settings: Settings,
    *,
    insecure: bool = False,
    timeout: float = DEFAULT_START_TIMEOUT,
) -> tuple[ServerState, bool]:
    """Start a background server for ``settings`` (host, port, home) unless one runs.

    Returns the server's state and whether this call started it. Raises
    :class:`Unavailable`, quoting the server log, when it exits or does not answer in time.
    """
    existing = running_server(settings)
    if existing is not None:
        return existing, False
    log_path = server_log_path(settings)
    settings.home.mkdir(parents=True, exist_ok=True)
    with log_path.open("ab") as log:
        log.write(
            f"---- {datetime.now(UTC):%Y-%m-%dT%H:%M:%SZ} starting mlengine server "
            f"on {settings.host}:{settings.port}\n".encode()
        )
        offset = log.tell()
        process = subprocess.Popen(
            _server_command(settings, insecure=insecure),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_server_environment(settings),
            start_new_session=True,
            close_fds=True,
        )
    return _wait_for_start(settings, process, log_path, offset, timeout)


def _server_command(settings: Settings, *, insecure: bool) -> list[str]:
    command = [
        sys.executable,
        "-m",
        "mlengine.server",
        "--host",
        settings.host,
        "--port",
        str(settings.port),
    ]
    return [*command, "--insecure"] if insecure or settings.insecure else command


def _server_environment(settings: Settings) -> dict[str, str]:
    env = dict(os.environ)
    env["MLENGINE_HOME"] = str(settings.home)
    env.pop("MLENGINE_SERVER", None)  # the server serves; it never looks for another one
    return env


def _wait_for_start(
    settings: Settings,
    process: subprocess.Popen[bytes],
    log_path: Path,
    offset: int,
    timeout: float,
) -> tuple[ServerState, bool]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            other = running_server(settings)  # lost a race with another start?
            if other is not None and wait_until_healthy(other.url, timeout=5):
                return other, False
            raise _startup_error(process.returncode, log_path, offset)
        state = read_state(settings.server_state_file)
        if state is not None and state.pid == process.pid and is_healthy(state.url):
            return state, True
        time.sleep(_POLL_SECONDS)
    process.terminate()
    raise Unavailable(
        f"The mlengine server did not answer /healthz within {timeout:g} s; "
        f"it was stopped.\n{_log_tail(log_path, offset)}"
    )


def _startup_error(returncode: int, log_path: Path, offset: int) -> MlEngineError:
    """The server's own ``ERROR: (CODE) message`` when it printed one, else UNAVAILABLE."""
    for line in reversed(_log_lines(log_path, offset)):
        match = _ERROR_LINE.match(line)
        if match:
            return error_for_code(match["code"], f"{match['message']} (server log: {log_path})")
    return Unavailable(
        f"The mlengine server exited with status {returncode} while starting."
        f"\n{_log_tail(log_path, offset)}"
    )


def _log_lines(log_path: Path, offset: int) -> list[str]:
    try:
        with log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode("utf-8", "replace").splitlines()
    except OSError:
        return []


def _log_tail(log_path: Path, offset: int) -> str:
    lines = _log_lines(log_path, offset)[-LOG_TAIL_LINES:]
    body = "\n".join(f"  {line}" for line in lines) or "  (empty)"
    return f"Last lines of {log_path}:\n{body}"


def stop_server(
    settings: Settings, *, timeout: float = DEFAULT_STOP_TIMEOUT
) -> tuple[ServerState | None, bool]:
    """SIGTERM the recorded server and wait for it to exit; SIGKILL after ``timeout``.

    Returns the stopped server (None if none was running) and whether it had to be killed.
    Running training jobs are not stopped: their replicas run on, and the next server
    re-attaches to them.
    """
    state = running_server(settings)
    if state is None:
        return None, False
    _signal(state.pid, signal.SIGTERM)
    killed = not _wait_for_exit(state.pid, timeout)
    if killed:
        _signal(state.pid, signal.SIGKILL)
        _wait_for_exit(state.pid, 5)
    remove_state(settings.server_state_file, pid=state.pid)
    return state, killed


def _signal(pid: int, signum: signal.Signals) -> None:
    try:
        os.kill(pid, signum)
    except ProcessLookupError:
        pass


def _wait_for_exit(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while pid_alive(pid):
        if time.monotonic() >= deadline:
            return False
        time.sleep(_POLL_SECONDS)
    return True


def ensure_local_server(settings: Settings) -> str:
    """The URL of the server to talk to, starting a local one if needed.

    ``settings.server_url`` (``MLENGINE_SERVER``) wins. Otherwise the server recorded in
    the state file is used once ``/healthz`` answers, and when none runs one is started in
    the background, which is announced on stderr.
    """
    if settings.server_url:
        return settings.server_url.rstrip("/")
    state = running_server(settings)
    if state is not None:
        if wait_until_healthy(state.url, timeout=DEFAULT_START_TIMEOUT):
            return state.url
        raise Unavailable(
            f"The local mlengine server (pid {state.pid}) at {state.url} does not answer "
            f"/healthz; see {server_log_path(settings)}, or restart it with: "
            "mlengine server stop && mlengine server start"
        )
    state, started = start_server(settings)
    if started:
        print(
            f"Started a local mlengine server at {state.url} (pid {state.pid}); stop it "
            "with: mlengine server stop",
            file=sys.stderr,
        )
    return state.url
