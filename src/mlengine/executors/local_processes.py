"""The local executor's processes: one supervisor per replica, seen through ``/proc``.

:class:`~mlengine.executors.local.LocalProcessExecutor` decides *when* to start, observe and
stop a run; this module does it to the processes. :func:`spawn_supervisor` starts a replica's
:mod:`~mlengine.executors.replica_supervisor` as the leader of a new session and
:func:`reap_children` collects the finished ones, so they never linger as zombies.
:func:`observe` turns a replica's files and processes into an :class:`Observation`.
:func:`terminate`, :func:`kill_trainers` and :func:`kill_groups` signal replicas a step
harder each; :func:`wait_gone` waits, bounded, until none of them is left.

Every process is named by pid *and* start time (:class:`ReplicaEntry`), so a recycled pid is
never signalled or taken for one of ours. A replica whose supervisor is gone is reached
through its process group, which :mod:`~mlengine.executors.replica_supervisor` checks is
still ours.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

from mlengine.executors import replica_supervisor as supervisor

# Supervisors are children of this server process; finished ones are reaped here so they do
# not linger as zombies. Process-wide, like the children themselves.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


class ReplicaEntry(NamedTuple):
    """One replica in a handle: its supervisor (pid, start time), GPUs and port."""

    name: str
    pid: int
    start: int
    gpus: tuple[int, ...] = ()
    port: int | None = None

    def to_json(self) -> dict[str, Any]:
        doc = self._asdict()
        doc["gpus"] = list(self.gpus)
        return doc

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> ReplicaEntry:
        port = doc.get("port")
        return cls(
            str(doc["name"]),
            int(doc["pid"]),
            int(doc["start"]),
            tuple(int(g) for g in doc.get("gpus", ())),
            None if port is None else int(port),
        )


class Observation(NamedTuple):
    """A replica as seen now: running, exited (with its record) or lost (no record, no
    supervisor)."""

    name: str
    running: bool
    exit_code: int | None = None
    signal: int | None = None
    cpu_seconds: float = 0.0
    time: float = 0.0
    lost: bool = False


def spawn_supervisor(
    run_dir: Path,
    name: str,
    argv: list[str],
    env: dict[str, str],
    cwd: str,
    gate: Path | None = None,
) -> tuple[int, int]:
    """Start replica ``name``'s supervisor, which runs ``argv`` in ``cwd`` with ``env`` and
    writes its records in ``run_dir``; return its pid and start time. With ``gate`` the
    trainer starts only once that file exists. Raises OSError when it cannot be started
    (e.g. ``cwd`` is missing)."""
    gate_option = ["--gate", str(gate)] if gate is not None else []
    command = [
        sys.executable,
        "-I",  # isolated: the trainer's PYTHON* variables and cwd do not reach the supervisor
        "-S",  # no site-packages: it needs the standard library only, and starts faster
        supervisor.__file__,
        *("--run-dir", str(run_dir), "--name", name, *gate_option, "--"),
        *argv,
    ]
    child = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    _CHILDREN[child.pid] = child
    stat = supervisor.proc_stat(child.pid)  # our child, not reaped yet: /proc still has it
    return child.pid, stat.start if stat else 0


def reap_children() -> None:
    """Collect the exit status of every finished supervisor this process started."""
    for pid, child in list(_CHILDREN.items()):
        if child.poll() is not None:
            _CHILDREN.pop(pid, None)


def observe(run_dir: Path, entry: ReplicaEntry) -> Observation:
    """The replica now: exited if it has an exit record, running (with its trainer's live CPU
    time) while its supervisor runs, else lost."""
    exit_path = run_dir / f"{entry.name}{supervisor.EXIT_SUFFIX}"
    record = supervisor.read_json(exit_path)
    if record is None:
        if supervising(entry):
            return Observation(entry.name, True, cpu_seconds=_live_cpu(run_dir, entry))
        record = supervisor.read_json(exit_path)  # it may have exited since our first look
    if not isinstance(record, dict):
        return Observation(entry.name, False, lost=True)
    return Observation(
        entry.name,
        False,
        int(record["code"]),
        record.get("signal"),
        float(record.get("cpu_seconds", 0.0)),
        float(record.get("time", 0.0)),
    )


def _trainer_of(run_dir: Path, entry: ReplicaEntry) -> supervisor.ProcessRecord | None:
    return supervisor.read_pid_record(run_dir / f"{entry.name}{supervisor.PID_SUFFIX}")[1]


def _live_cpu(run_dir: Path, entry: ReplicaEntry) -> float:
    trainer = _trainer_of(run_dir, entry)
    stat = supervisor.proc_stat(trainer.pid) if trainer else None
    if trainer is None or stat is None or stat.start != trainer.start:
        return 0.0
    return stat.cpu_ticks / os.sysconf("SC_CLK_TCK")


def alive(run_dir: Path, entries: Iterable[ReplicaEntry]) -> list[ReplicaEntry]:
    """The replicas of which some process (supervisor, trainer or its children) is left."""
    return [e for e in entries if supervisor.group_alive(e.pid, e.start, _trainer_of(run_dir, e))]


def supervising(entry: ReplicaEntry) -> bool:
    """Whether the replica's supervisor still runs (same pid *and* start time, no zombie)."""
    stat = supervisor.proc_stat(entry.pid)
    return stat is not None and stat.start == entry.start and not stat.dead


def terminate(run_dir: Path, entries: Sequence[ReplicaEntry]) -> None:
    """SIGTERM through each live supervisor (it relays once); straight to orphaned groups."""
    for entry in alive(run_dir, entries):
        if supervising(entry):
            _kill(entry.pid, signal.SIGTERM)
        else:
            supervisor.signal_group(entry.pid, entry.start, signal.SIGTERM)


def kill_trainers(entries: Sequence[ReplicaEntry]) -> None:
    """SIGKILL every process of each group but its live supervisor, which then still records
    the exit (137) and drains the last lines; orphaned groups are killed whole."""
    for entry in entries:
        if supervising(entry):
            for pid in supervisor.group_members(entry.pid, exclude=entry.pid):
                _kill(pid, signal.SIGKILL)
        else:
            supervisor.signal_group(entry.pid, entry.start, signal.SIGKILL)


def kill_groups(entries: Sequence[ReplicaEntry]) -> None:
    """SIGKILL every process of each replica's group, supervisor included (if still ours)."""
    for entry in entries:
        supervisor.signal_group(entry.pid, entry.start, signal.SIGKILL)


def _kill(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def wait_gone(run_dir: Path, entries: Sequence[ReplicaEntry], seconds: float) -> bool:
    """Wait until no process of ``entries`` is left (True) or ``seconds`` pass (False)."""
    deadline = time.monotonic() + seconds
    while True:
        reap_children()
        entries = alive(run_dir, entries)
        if not entries or time.monotonic() >= deadline:
            return not entries
        time.sleep(0.01)
