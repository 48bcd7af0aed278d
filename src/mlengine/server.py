"""The server process: the REST app under uvicorn plus the scheduler loop, on one runtime.

Run as ``python -m mlengine.server [--host H] [--port P] [--insecure]`` — which is what
``mlengine server start`` does, in the background or (``--foreground``) in place. Settings
come from the environment and config file (``mlengine.config``); the flags override them.

Start-up, in order (any failure exits with ``ERROR: (CODE) message`` and a non-zero status):

1. refuse a non-loopback host without auth tokens or ``--insecure`` (``api/auth.py``);
2. take ``$MLENGINE_HOME/server.lock`` — one server per home, since two schedulers on one
   database would run jobs twice (the lock dies with the process, ``kill -9`` included);
3. bind the socket (port 0 picks a free port), build the runtime, write the state file;
4. serve; a thread calls ``runtime.scheduler.tick()`` (jobs) and ``runtime.deployer.tick()``
   (model versions) every ``scheduler_interval`` seconds.

SIGTERM or SIGINT stops it cleanly: uvicorn drains requests, the scheduler finishes its
tick, the store closes, the state file is removed. Running replicas are left alone; the
next server re-attaches to them (``scheduler/loop.py``).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from types import FrameType
from typing import Protocol

import uvicorn

from mlengine.api.app import create_app
from mlengine.api.auth import BearerTokens, check_bind_address
from mlengine.client.local_server import ServerState, read_state, remove_state, write_state
from mlengine.composition import build_runtime
from mlengine.config import Settings
from mlengine.domain.errors import FailedPrecondition, MlEngineError, Unavailable

LOG = logging.getLogger("mlengine.server")
#: How long shutdown waits for an in-flight scheduler tick before leaving it behind.
SCHEDULER_JOIN_SECONDS = 30.0
#: A scheduler failure that repeats is logged again after this many seconds.
REPEATED_FAILURE_SECONDS = 60.0
#: How long uvicorn lets open requests finish on shutdown.
GRACEFUL_SHUTDOWN_SECONDS = 10


class Loop(Protocol):
    """Something the scheduler thread advances one step at a time."""

    def tick(self) -> None: ...


class SchedulerThread:
    """Calls ``tick()`` on each of ``loops`` every ``interval`` seconds until stopped.

    A failing tick is logged and the thread goes on (with the next loop, then the next
    round); the same failure of a loop again is logged with its traceback only once a
    minute, so a persistent fault does not flood the log. Used as a context manager:
    entering starts the thread, leaving stops it and waits for the current round.
    """

    def __init__(self, loops: Sequence[Loop], interval: float) -> None:
        self._loops = [(loop, _FailureLog(type(loop).__name__, interval)) for loop in loops]
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="scheduler", daemon=True)

    def _loop(self) -> None:
        while not self._stop.is_set():
            for loop, failures in self._loops:
                try:
                    loop.tick()
                    failures.clear()
                except Exception as exc:
                    failures.log(exc)
            self._stop.wait(self._interval)

    def __enter__(self) -> SchedulerThread:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stop.set()
        self._thread.join(SCHEDULER_JOIN_SECONDS)
        if self._thread.is_alive():
            LOG.warning(
                "the scheduler tick did not finish within %.0f s; leaving it behind",
                SCHEDULER_JOIN_SECONDS,
            )


class _StopSignals:
    """SIGTERM/SIGINT outside uvicorn's own handling (start-up, and after it returns).

    A signal that lands between building the uvicorn server and uvicorn installing its
    own handlers is passed on through ``should_exit``, which uvicorn checks after start-up;
    without that the server would miss the signal and run on.
    """

    def __init__(self) -> None:
        self.requested = False
        self.server: uvicorn.Server | None = None

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        self.requested = True
        if self.server is not None:
            self.server.should_exit = True

    def install(self) -> None:
        if threading.current_thread() is not threading.main_thread():
            return  # embedded (tests): signals belong to the host program
        for signum in (signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self)


def serve(settings: Settings) -> None:
    """Run the server until SIGTERM/SIGINT (see the module docstring for the steps)."""
    tokens = BearerTokens.from_settings(settings)
    check_bind_address(settings.host, tokens=tokens, insecure=settings.insecure)
    stop = _StopSignals()
    stop.install()
    settings.home.mkdir(parents=True, exist_ok=True)
    with _single_server(settings), _bound_socket(settings.host, settings.port) as sock:
        runtime = build_runtime(settings)
        try:
            server = uvicorn.Server(
                uvicorn.Config(
                    create_app(runtime, tokens=tokens),
                    log_level="info",
                    lifespan="off",
                    timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
                )
            )
            stop.server = server
            if stop.requested:
                server.should_exit = True
            url = _url_of(settings.host, sock)
            with (
                SchedulerThread([runtime.scheduler, runtime.deployer], settings.scheduler_interval),
                _state_file(settings.server_state_file, url),
            ):
                LOG.info(
                    "mlengine server at %s (auth %s); state in %s",
                    url,
                    "on" if tokens.enabled else "off",
                    settings.home,
                )
                if not stop.requested:
                    server.run(sockets=[sock])
        finally:
            runtime.close()
    LOG.info("mlengine server stopped")


class _FailureLog:
    """Logs one loop's failures; the same failure again only once a minute."""

    def __init__(self, name: str, interval: float) -> None:
        self._name = name
        self._interval = interval
        self._last_failure = ""
        self._last_logged = 0.0
        self._repeats = 0

    def clear(self) -> None:
        self._last_failure = ""

    def log(self, exc: Exception) -> None:
        failure = f"{type(exc).__name__}: {exc}"
        now = time.monotonic()
        if failure == self._last_failure and now - self._last_logged < REPEATED_FAILURE_SECONDS:
            self._repeats += 1
            return
        repeats = f" (failed {self._repeats} more times since)" if self._repeats else ""
        LOG.exception(
            "%s tick failed%s; trying again every %.1f s", self._name, repeats, self._interval
        )
        self._last_failure, self._last_logged, self._repeats = failure, now, 0


@contextlib.contextmanager
def _single_server(settings: Settings) -> Iterator[None]:
    lock_path = settings.home / "server.lock"
    with lock_path.open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = read_state(settings.server_state_file)
            where = f" at {other.url} (pid {other.pid})" if other else ""
            raise FailedPrecondition(
                f"Another mlengine server is already running for {settings.home}{where}. "
                "Use it, stop it with 'mlengine server stop', or give this one its own "
                "MLENGINE_HOME."
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


@contextlib.contextmanager
def _bound_socket(host: str, port: int) -> Iterator[socket.socket]:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
    except OSError as exc:
        sock.close()
        raise Unavailable(
            f"Cannot listen on {host}:{port}: {exc.strerror or exc}. Choose another port with "
            "--port (or MLENGINE_PORT), or stop what is using it."
        ) from None
    with sock:
        yield sock


def _url_of(host: str, sock: socket.socket) -> str:
    """The URL local clients use: a wildcard host is reached through loopback."""
    port = sock.getsockname()[1]
    shown = {"0.0.0.0": "127.0.0.1", "::": "::1", "[::]": "::1"}.get(host, host.strip("[]"))
    return f"http://[{shown}]:{port}" if ":" in shown else f"http://{shown}:{port}"


@contextlib.contextmanager
def _state_file(path: Path, url: str) -> Iterator[None]:
    state = ServerState.now(url)
    write_state(path, state)
    try:
        yield
    finally:
        remove_state(path, pid=state.pid)


def main(argv: list[str] | None = None) -> int:
    """``python -m mlengine.server``: returns the exit status."""
    parser = argparse.ArgumentParser(
        prog="python -m mlengine.server", description="Run the mlengine server in the foreground."
    )
    parser.add_argument("--host", help="address to listen on (default 127.0.0.1)")
    parser.add_argument("--port", type=int, help="port (default 8570; 0 picks a free one)")
    parser.add_argument(
        "--insecure",
        action="store_true",
        default=None,
        help="allow a non-loopback host without auth tokens",
    )
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        settings = Settings.from_env(host=args.host, port=args.port, insecure=args.insecure)
        serve(settings)
    except MlEngineError as exc:
        print(f"ERROR: ({exc.code.value}) {exc.message}", file=sys.stderr)
        return exc.exit_code
    except (ValueError, FileNotFoundError) as exc:  # a bad config file or variable
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
