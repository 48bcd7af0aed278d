"""A group of replica processes that live and die together.

Each replica runs in its own session (process group), so tearing it down reaches every
process it started (data-loader workers included). Output is read line by line on one
thread per stream and handed to a sink with the replica name and a timestamp; nothing is
dropped, and a last line without a newline is delivered too.

Lifecycle rules (PRODUCT §4.2, §6):

* the group ends when the primary ends; its exit status is the group's;
* a non-primary replica that exits non-zero (or is killed) ends the group at once, naming it,
  so survivors never hang on a collective;
* a non-primary replica that exits 0 just finishes (a parameter server with nothing to do);
* teardown sends ``SIGTERM`` to every process group, waits ``grace_seconds``, then ``SIGKILL``.
"""

from __future__ import annotations

import os
import queue
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import IO

#: ``sink(replica_name, stream, line, unix_time)``; ``stream`` is "stdout" or "stderr".
LineSink = Callable[[str, str, str, float], None]


@dataclass(frozen=True)
class ReplicaLaunch:
    """How to start one replica: argv (never through a shell), environment, working dir."""

    name: str
    argv: Sequence[str]
    env: dict[str, str]
    cwd: str


@dataclass(frozen=True)
class GroupOutcome:
    """How the group ended. ``exit_code`` follows shell conventions (128+N for signal N)."""

    exit_code: int
    failed_replica: str | None = None
    reason: str = ""
    exit_codes: dict[str, int] = field(default_factory=dict)

    @property
    def succeeded(self) -> bool:
        return self.exit_code == 0


def shell_exit_code(returncode: int) -> int:
    return 128 - returncode if returncode < 0 else returncode


def _describe(returncode: int) -> str:
    if returncode < 0:
        try:
            return f"was killed by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"was killed by signal {-returncode}"
    return f"exited with code {returncode}"


class ProcessGroup:
    """Start, watch and tear down the replicas of one run.

    Use :meth:`start`, then :meth:`wait` (blocking) or :meth:`poll` (one tick); call
    :meth:`stop` from anywhere to end it early (Ctrl-C, cancel, timeout).
    """

    def __init__(
        self,
        launches: Sequence[ReplicaLaunch],
        *,
        primary: str,
        sink: LineSink,
        grace_seconds: float = 5.0,
        primary_stdin: bool = False,
    ) -> None:
        if primary not in {launch.name for launch in launches}:
            raise ValueError(f"primary {primary!r} is not among the replicas")
        self._launches = list(launches)
        self._primary = primary
        self._sink = sink
        self._grace = grace_seconds
        self._primary_stdin = primary_stdin
        self._procs: dict[str, subprocess.Popen[bytes]] = {}
        self._pumps: list[threading.Thread] = []
        self._exits: queue.Queue[tuple[str, int]] = queue.Queue()
        self._codes: dict[str, int] = {}
        self._outcome: GroupOutcome | None = None

    @property
    def pids(self) -> dict[str, int]:
        return {name: proc.pid for name, proc in self._procs.items()}

    def start(self) -> None:
        """Start every replica, the primary last (as gcloud does). Stops all on failure."""
        ordered = [x for x in self._launches if x.name != self._primary]
        ordered += [x for x in self._launches if x.name == self._primary]
        try:
            for launch in ordered:
                self._spawn(launch)
        except OSError:
            self._kill_all(signal.SIGKILL)
            raise

    def _spawn(self, launch: ReplicaLaunch) -> None:
        stdin = (
            None if (launch.name == self._primary and self._primary_stdin) else subprocess.DEVNULL
        )
        proc = subprocess.Popen(
            list(launch.argv),
            cwd=launch.cwd,
            env=launch.env,
            stdin=stdin,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._procs[launch.name] = proc
        for stream_name, stream in (("stdout", proc.stdout), ("stderr", proc.stderr)):
            assert stream is not None
            pump = threading.Thread(
                target=self._pump,
                args=(launch.name, stream_name, stream),
                name=f"pump-{launch.name}-{stream_name}",
                daemon=True,
            )
            pump.start()
            self._pumps.append(pump)
        waiter = threading.Thread(target=self._wait_one, args=(launch.name, proc), daemon=True)
        waiter.start()

    def _pump(self, name: str, stream_name: str, stream: IO[bytes]) -> None:
        with stream:
            for raw in iter(stream.readline, b""):
                line = raw.decode("utf-8", errors="replace").rstrip("\r\n")
                self._sink(name, stream_name, line, time.time())

    def _wait_one(self, name: str, proc: subprocess.Popen[bytes]) -> None:
        self._exits.put((name, proc.wait()))

    def poll(self, timeout: float = 0.0) -> GroupOutcome | None:
        """Handle replica exits seen within ``timeout`` seconds; the outcome once ended."""
        deadline = time.monotonic() + timeout
        while self._outcome is None:
            remaining = deadline - time.monotonic()
            try:
                name, code = (
                    self._exits.get(timeout=max(remaining, 0))
                    if remaining > 0
                    else self._exits.get_nowait()
                )
            except queue.Empty:
                return None
            self._on_exit(name, code)
        return self._outcome

    def wait(self) -> GroupOutcome:
        """Block until the group has ended and its output has been delivered."""
        while True:
            outcome = self.poll(timeout=0.5)
            if outcome is not None:
                return outcome

    def _on_exit(self, name: str, code: int) -> None:
        self._codes[name] = code
        if name == self._primary:
            self._finish(
                shell_exit_code(code),
                None if code == 0 else name,
                "" if code == 0 else f"{name} {_describe(code)}.",
            )
        elif code != 0:
            reason = f"{name} {_describe(code)}; stopping the other replicas."
            self._finish(shell_exit_code(code) or 1, name, reason)

    def _finish(self, exit_code: int, failed: str | None, reason: str) -> None:
        self._teardown()
        self._outcome = GroupOutcome(exit_code, failed, reason, dict(self._codes))

    def stop(self, reason: str = "stopped", sig: signal.Signals = signal.SIGTERM) -> GroupOutcome:
        """End the group now (``sig`` first, then SIGKILL after the grace period)."""
        if self._outcome is None:
            self._teardown(sig)
            self._outcome = GroupOutcome(128 + int(sig), None, reason, dict(self._codes))
        return self._outcome

    def _teardown(self, sig: signal.Signals = signal.SIGTERM) -> None:
        self._kill_all(sig)
        deadline = time.monotonic() + self._grace
        for proc in self._procs.values():
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.01))
            except subprocess.TimeoutExpired:
                pass
        self._kill_all(signal.SIGKILL)
        for name, proc in self._procs.items():
            self._codes.setdefault(name, proc.wait())
        for pump in self._pumps:
            pump.join(timeout=self._grace)

    def _kill_all(self, sig: signal.Signals) -> None:
        """Signal each replica's whole process group, including children it left behind."""
        for proc in self._procs.values():
            try:
                os.killpg(proc.pid, sig)
            except (ProcessLookupError, PermissionError):
                pass
