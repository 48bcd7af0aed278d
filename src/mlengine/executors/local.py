"""The local process executor: every replica is a process on this machine, under a supervisor.

Each replica runs under :mod:`~mlengine.executors.replica_supervisor`, the leader of its own
session, which writes the replica's pid, log and exit records in the run's directory
(``runs_dir/<run id>/``). Everything this executor knows about a run is in those files and in
the JSON handle :meth:`LocalProcessExecutor.start` returns, so a restarted server — a new
executor on the same ``runs_dir`` — polls, reads and stops runs its predecessor started.

Handle (``version`` 1, also stored as ``handle.json`` in the run directory)::

    {"executor": "local", "version": 1, "run_id": "p/j/1", "run_dir": "/abs/path",
     "primary": "master-replica-0", "started_at": 1700000000.0,
     "resources": {"cpus": 8.0, "memory_gib": 30.0, "gpus": 1},
     "replicas": [{"name": "master-replica-0", "pid": 4242, "start": 123456,
                   "gpus": [0], "port": 27400}, …]}

``pid``/``start`` identify the supervisor (``start`` = ``/proc/<pid>/stat`` field 22),
``gpus`` the devices in the replica's ``CUDA_VISIBLE_DEVICES``, ``port`` its cluster port
(None for evaluators and single-replica runs).

Ending a run: the call that sees the group rules of :mod:`~mlengine.executors.base` end it
writes ``run.end`` (first writer wins, so the verdict never changes) and sends SIGTERM to
every supervisor, which relays it once to its trainer and the trainer's children. ``poll``
never blocks for long: it waits at most :data:`SETTLE_SECONDS` for the replicas to go; once
``grace_seconds`` have passed since ``run.end`` a later poll SIGKILLs what is left of each
group but its supervisor (which still records the exit and the last lines), and after
:data:`RECORD_SECONDS` more, the whole group. A run is reported ``ended`` only when none of
its processes is left, so the caller may :meth:`~LocalProcessExecutor.cleanup` it at once.
The processes themselves — spawning, observing, signalling — are
:mod:`~mlengine.executors.local_processes`.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import os
import shutil
import signal
import time
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NamedTuple
from urllib.parse import quote

from mlengine.domain.errors import FailedPrecondition
from mlengine.domain.machine_types import Resources
from mlengine.domain.replicas import ReplicaPlan, ReplicaRole
from mlengine.executors import replica_supervisor as supervisor
from mlengine.executors.base import LogLine, ReplicaStatus, RunHandle, RunSpec, RunStatus
from mlengine.executors.cluster_env import ClusterAddresses, replica_environment
from mlengine.executors.local_placement import (
    assign_gpus,
    detect_gpus,
    free_ports,
    local_handles,
    memory_gib,
    placement_problem,
    ports_of,
    resources_doc,
    resources_of,
)
from mlengine.executors.local_processes import (
    Observation,
    ReplicaEntry,
    alive,
    kill_groups,
    kill_trainers,
    observe,
    reap_children,
    spawn_supervisor,
    terminate,
    wait_gone,
)

#: Where cluster ports are taken from (away from ``local train``'s 27182 and PyTorch's 29500).
DEFAULT_PORT_RANGE = (27400, 28399)
#: SIGTERM → SIGKILL delay when a run ends by the group rules.
DEFAULT_GRACE_SECONDS = 5.0
#: How long the call that ends a run waits for its replicas to go before returning.
SETTLE_SECONDS = 0.2
#: After its trainer is SIGKILLed, how long a supervisor gets to record the exit before it is
#: killed too.
RECORD_SECONDS = 2.0
#: The run's exit code when a replica vanished without an exit record (status unknown).
LOST_EXIT_CODE = 255
#: The run's exit code after :meth:`LocalProcessExecutor.stop` (128 + SIGTERM).
STOPPED_EXIT_CODE = 128 + signal.SIGTERM
#: Bytes of one replica's log read per :meth:`LocalProcessExecutor.read_logs` call (more only
#: when a single record is longer).
MAX_LOG_CHUNK = 1 << 20
#: Longest run directory name (file systems allow 255 bytes).
MAX_DIR_NAME = 200
HANDLE_FILE = "handle.json"
#: Created once the handle is on disk; the replicas' trainers wait for it (exactly-once starts).
GATE_FILE = "start.gate"
END_FILE = "run.end"


class LocalProcessExecutor:
    """Runs replica plans as processes on this machine. See the module docstring.

    ``capacity``/``gpu_ids`` replace what is detected (``os.cpu_count()``, ``/proc/meminfo``,
    ``nvidia-smi -L``); with ``strict_placement`` CPU and memory requests are hard limits too
    (by default they are soft: replicas share the cores, PRODUCT §4.2). GPUs are always hard.
    ``max_replicas`` caps how many replicas run at once under soft placement (default
    ``max(4, 2 × CPUs)``), so 500 queued jobs do not start 500 processes on two cores; a
    plan larger than the cap still runs when nothing else does.
    """

    def __init__(
        self,
        runs_dir: Path,
        *,
        capacity: Resources | None = None,
        strict_placement: bool = False,
        gpu_ids: Sequence[int] | None = None,
        start_port_range: tuple[int, int] = DEFAULT_PORT_RANGE,
        grace_seconds: float = DEFAULT_GRACE_SECONDS,
        max_replicas: int | None = None,
    ) -> None:
        self._runs_dir = Path(runs_dir)
        self._max_replicas = max_replicas
        self._given_capacity = capacity
        self._gpu_ids = None if gpu_ids is None else sorted(gpu_ids)
        self._capacity: Resources | None = None
        self._strict = strict_placement
        self._port_range = start_port_range
        self._grace = grace_seconds

    # -- placement --------------------------------------------------------------------------

    def capacity(self) -> Resources:
        if self._capacity is None:
            if self._gpu_ids is None:
                count = self._given_capacity.gpus if self._given_capacity else None
                self._gpu_ids = list(range(count)) if count is not None else detect_gpus()
            cpus, memory = (
                (self._given_capacity.cpus, self._given_capacity.memory_gib)
                if self._given_capacity
                else (float(os.cpu_count() or 1), memory_gib())
            )
            self._capacity = Resources(cpus, memory, len(self._gpu_ids))
        return self._capacity

    def unplaceable_reason(self, plan: ReplicaPlan) -> str | None:
        return placement_problem(plan, self.capacity(), strict=self._strict)

    def fits(
        self,
        plan: ReplicaPlan,
        running: Sequence[RunHandle],
        pending: Sequence[ReplicaPlan] = (),
    ) -> bool:
        if self.unplaceable_reason(plan) is not None:
            return False
        need = plan.total_resources()
        reserved = Resources(0, 0)
        for other in pending:
            reserved = reserved + other.total_resources()
        if need.gpus + reserved.gpus > len(self._free_gpus(running)):
            return False
        if not self._strict:
            return self._within_replica_cap(plan, running, pending)
        cap, used = self.capacity(), resources_of(running) + reserved
        return used.cpus + need.cpus <= cap.cpus and used.memory_gib + need.memory_gib <= (
            cap.memory_gib
        )

    def _within_replica_cap(
        self, plan: ReplicaPlan, running: Sequence[RunHandle], pending: Sequence[ReplicaPlan]
    ) -> bool:
        cap = self._max_replicas or max(4, 2 * int(self.capacity().cpus))
        busy = sum(len(h.get("replicas", ())) for h in local_handles(running))
        busy += sum(len(p.replicas()) for p in pending)
        return busy == 0 or busy + len(plan.replicas()) <= cap

    def _free_gpus(self, running: Iterable[RunHandle]) -> list[int]:
        self.capacity()
        taken = {
            g for h in local_handles(running) for r in h["replicas"] for g in r.get("gpus", ())
        }
        return [g for g in self._gpu_ids or () if g not in taken]

    # -- start ------------------------------------------------------------------------------

    def find_run(self, run_id: str) -> RunHandle | None:
        """The handle of run ``run_id`` if it was started here (e.g. before a crash)."""
        handle = supervisor.read_json(self._runs_dir / run_dir_name(run_id) / HANDLE_FILE)
        return handle if isinstance(handle, dict) else None

    def start(self, spec: RunSpec, running: Sequence[RunHandle]) -> RunHandle:
        """Start every replica (primary last). Idempotent per ``run_id``: a run already
        started returns its stored handle; a start cut short by a crash (no ``handle.json``)
        has its supervisors killed and is done again — its trainers never ran, because
        supervisors start them only once the handle is on disk (the gate file). Raises
        FailedPrecondition when the plan can never run here, ResourceExhausted when its GPUs
        or ports are taken now."""
        reason = self.unplaceable_reason(spec.plan)
        if reason is not None:
            raise FailedPrecondition(f"Run {spec.run_id} can never run here: {reason}")
        existing = self.find_run(spec.run_id)
        if existing is not None:
            return existing
        run_dir = self._runs_dir / run_dir_name(spec.run_id)
        if run_dir.exists():
            _discard_partial_start(run_dir)
        plan = spec.plan
        gpus = assign_gpus(plan, self._free_gpus(running))
        members = [r.name for r in plan.replicas() if r.role is not ReplicaRole.EVALUATOR]
        members = members if plan.is_distributed else []
        ports = dict(
            zip(members, free_ports(len(members), ports_of(running), self._port_range), strict=True)
        )
        run_dir.mkdir(parents=True)
        entries = self._launch(spec, run_dir.resolve(), gpus, ports)
        handle: dict[str, Any] = {
            "executor": "local",
            "version": 1,
            "run_id": spec.run_id,
            "run_dir": str(run_dir.resolve()),
            "primary": plan.replicas()[0].name,
            "started_at": time.time(),
            "resources": resources_doc(plan.total_resources()),
            "replicas": [entries[r.name].to_json() for r in plan.replicas()],
        }
        supervisor.write_json_atomic(run_dir / HANDLE_FILE, handle, durable=True)
        # Only now may the trainers start: a crash before this line leaves supervisors that
        # never started them (the next start() discards them), after it a run find_run sees.
        supervisor.write_json_atomic(run_dir / GATE_FILE, {"run_id": spec.run_id}, durable=True)
        return handle

    def _launch(
        self, spec: RunSpec, run_dir: Path, gpus: Mapping[str, list[int]], ports: Mapping[str, int]
    ) -> dict[str, ReplicaEntry]:
        replicas = spec.plan.replicas()
        addresses = ClusterAddresses({name: f"localhost:{port}" for name, port in ports.items()})
        base = dict(spec.base_env)
        if "OMP_NUM_THREADS" not in base:
            # Replicas share this machine's cores; oversubscribed OpenMP pools crawl.
            base["OMP_NUM_THREADS"] = str(max(1, int(self.capacity().cpus) // len(replicas)))
        argv = [spec.python, "-m", spec.module, *spec.args]
        entries: dict[str, ReplicaEntry] = {}
        for replica in [*replicas[1:], replicas[0]]:  # the primary starts last
            env = replica_environment(
                spec.plan,
                replica,
                addresses,
                spec.identity,
                metric_file=str(run_dir / f"{replica.name}.metrics"),
                # On a machine with GPUs every replica sees only its own (maybe none).
                gpu_ids=gpus[replica.name] if self.capacity().gpus else None,
                base=base,
            )
            try:
                pid, start = spawn_supervisor(
                    run_dir, replica.name, argv, env, spec.workdir, gate=run_dir / GATE_FILE
                )
            except OSError as exc:
                kill_groups(list(entries.values()))
                shutil.rmtree(run_dir, ignore_errors=True)
                raise FailedPrecondition(
                    f"Cannot start {replica.name} of run {spec.run_id} in {spec.workdir!r}: {exc}"
                ) from exc
            entries[replica.name] = ReplicaEntry(
                replica.name, pid, start, tuple(gpus[replica.name]), ports.get(replica.name)
            )
        return entries

    # -- observe and stop -------------------------------------------------------------------

    def poll(self, handle: RunHandle) -> RunStatus:
        """Observe the run, apply the group rules, stop survivors once it has ended."""
        reap_children()
        run_dir, primary, entries = _parse_handle(handle)
        if not run_dir.is_dir():
            return _vanished(run_dir, entries)
        observations = [observe(run_dir, e) for e in entries]
        end = _read_end(run_dir)
        if end is None:
            decided = decide_end(primary, observations, time.time())
            if decided is None:
                return _status(observations, None)
            end = _write_end(run_dir, decided)
            terminate(run_dir, entries)
            settled = wait_gone(run_dir, entries, SETTLE_SECONDS)
        else:
            settled = self._finish_teardown(run_dir, entries, end)
        if settled:
            observations = [observe(run_dir, e) for e in entries]
        return _status(observations, end if settled else None)

    def _finish_teardown(self, run_dir: Path, entries: Sequence[ReplicaEntry], end: RunEnd) -> bool:
        """One step of the SIGKILL follow-up; True once nothing of the run is left."""
        left = alive(run_dir, entries)
        if not left:
            return True
        elapsed = time.time() - end.time
        if elapsed >= self._grace + RECORD_SECONDS:
            kill_groups(left)
        elif elapsed >= self._grace:
            kill_trainers(left)
        else:
            return False
        return wait_gone(run_dir, left, SETTLE_SECONDS)

    def stop(self, handle: RunHandle, *, grace_seconds: float = 5.0) -> RunStatus:
        """SIGTERM every replica (each supervisor relays it to its trainer and the trainer's
        children), wait up to ``grace_seconds``, then SIGKILL them. Idempotent. A run that
        had already ended keeps its verdict; otherwise it ends with exit code 143."""
        reap_children()
        run_dir, primary, entries = _parse_handle(handle)
        if not run_dir.is_dir():
            return _vanished(run_dir, entries)
        end = _read_end(run_dir)
        if end is None:
            observations = [observe(run_dir, e) for e in entries]
            decided = decide_end(primary, observations, time.time())
            stopped = RunEnd(STOPPED_EXIT_CODE, None, "The run was stopped.", 0.0)
            end = _write_end(run_dir, decided or stopped)
        terminate(run_dir, entries)
        if not wait_gone(run_dir, entries, grace_seconds):
            kill_trainers(alive(run_dir, entries))
            if not wait_gone(run_dir, entries, RECORD_SECONDS):
                kill_groups(entries)
                wait_gone(run_dir, entries, RECORD_SECONDS)
        return _status([observe(run_dir, e) for e in entries], end)

    def read_logs(
        self, handle: RunHandle, cursor: Mapping[str, Any]
    ) -> tuple[list[LogLine], Mapping[str, Any]]:
        """Complete lines since ``cursor`` ({replica: byte offset}), merged by time. Cheap
        when nothing changed: one ``stat`` per replica."""
        run_dir, _, entries = _parse_handle(handle)
        new_cursor = {str(name): int(offset) for name, offset in cursor.items()}
        per_replica = []
        for entry in entries:
            lines, new_cursor[entry.name] = _read_log(
                run_dir, entry.name, new_cursor.get(entry.name, 0)
            )
            per_replica.append(lines)
        return list(heapq.merge(*per_replica, key=lambda line: line.time)), new_cursor

    def metric_file(self, handle: RunHandle, replica: str) -> Path:
        """The ``CLOUD_ML_HP_METRIC_FILE`` of ``replica``."""
        return Path(handle["run_dir"]) / f"{replica}.metrics"

    def read_metrics(self, handle: RunHandle) -> str:
        """The primary's metric file ("" if it has not written one). Undecodable bytes (a
        half-written multi-byte character) are replaced; the parser skips such lines."""
        _, primary, _ = _parse_handle(handle)
        try:
            return self.metric_file(handle, primary).read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def cleanup(self, handle: RunHandle) -> None:
        """Kill anything left of the run and remove its directory. Idempotent."""
        run_dir, _, entries = _parse_handle(handle)
        root = self._runs_dir.resolve()
        if root not in run_dir.resolve().parents:
            raise ValueError(f"run directory {run_dir} is not inside {root}; not removing it")
        kill_groups(entries)
        wait_gone(run_dir, entries, RECORD_SECONDS)
        shutil.rmtree(run_dir, ignore_errors=True)


# -- the run's records ----------------------------------------------------------------------


class RunEnd(NamedTuple):
    """The verdict on a run, written once to ``run.end``."""

    exit_code: int
    failed_replica: str | None
    reason: str
    time: float

    @classmethod
    def from_json(cls, doc: Mapping[str, Any]) -> RunEnd:
        failed = doc.get("failed_replica")
        return cls(
            int(doc["exit_code"]),
            None if failed is None else str(failed),
            str(doc["reason"]),
            float(doc["time"]),
        )


def decide_end(primary: str, observations: Sequence[Observation], now: float) -> RunEnd | None:
    """The group rules: the first decisive event ends the run, or None if none happened yet.

    Decisive: the primary exiting (any code), another replica exiting non-zero, any replica
    lost (counted as happening ``now``). A replica exiting 0 just finishes.
    """
    events = [
        (now if o.lost else o.time, o)
        for o in observations
        if o.lost or (not o.running and (o.name == primary or o.exit_code != 0))
    ]
    if not events:
        return None
    _, first = min(events, key=lambda event: event[0])
    tail = "." if first.name == primary else "; stopping the other replicas."
    if first.lost:
        reason = f"{first.name} disappeared without an exit status (its supervisor was killed)"
        return RunEnd(LOST_EXIT_CODE, first.name, reason + tail, now)
    code = first.exit_code or 0
    if first.name == primary and code == 0:
        return RunEnd(0, None, "", now)
    if first.signal:
        try:
            how = f"was killed by {signal.Signals(first.signal).name}"
        except ValueError:
            how = f"was killed by signal {first.signal}"
    else:
        how = f"exited with code {code}"
    return RunEnd(code or 1, first.name, f"{first.name} {how}{tail}", now)


def run_dir_name(run_id: str) -> str:
    """A file name for ``run_id``, one-to-one: ``p/j/1`` → ``p+j+1``, other bytes %-quoted
    (``..`` too); a name too long for the file system is cut and suffixed with a hash."""
    if not run_id:
        raise ValueError("a run id cannot be empty")
    name = "+".join(quote(part, safe="-_.") for part in run_id.split("/"))
    if name.strip(".") == "":
        name = name.replace(".", "%2E")
    if len(name) > MAX_DIR_NAME:
        name = f"{name[: MAX_DIR_NAME - 17]}-{hashlib.sha256(run_id.encode()).hexdigest()[:16]}"
    return name


def _parse_handle(handle: RunHandle) -> tuple[Path, str, list[ReplicaEntry]]:
    if handle.get("executor") != "local":
        raise ValueError(f"not a local executor handle: {dict(handle)!r}")
    entries = [ReplicaEntry.from_json(r) for r in handle["replicas"]]
    return Path(handle["run_dir"]), str(handle["primary"]), entries


def _read_end(run_dir: Path) -> RunEnd | None:
    document = supervisor.read_json(run_dir / END_FILE)
    return RunEnd.from_json(document) if isinstance(document, dict) else None


def _write_end(run_dir: Path, end: RunEnd) -> RunEnd:
    """Record the verdict unless another call already did; return the one that stands."""
    end = end._replace(time=time.time())
    tmp = run_dir / f".{END_FILE}.{os.getpid()}.{time.monotonic_ns()}"
    supervisor.write_json_atomic(tmp, end._asdict(), durable=True)
    try:
        os.link(tmp, run_dir / END_FILE)  # fails if it exists: the first verdict stands
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return _read_end(run_dir) or end


def _discard_partial_start(run_dir: Path) -> None:
    """Kill the replicas of a start that crashed before its handle was written, and wait for
    them to be gone: the run must not run twice, not even briefly."""
    entries = []
    for pid_file in run_dir.glob(f"*{supervisor.PID_SUFFIX}"):
        sup, _ = supervisor.read_pid_record(pid_file)
        if sup is not None:
            entries.append(ReplicaEntry(pid_file.stem, sup.pid, sup.start))
    kill_groups(entries)
    wait_gone(run_dir, entries, RECORD_SECONDS)
    shutil.rmtree(run_dir, ignore_errors=True)


def _read_log(run_dir: Path, name: str, offset: int) -> tuple[list[LogLine], int]:
    path = run_dir / f"{name}{supervisor.LOG_SUFFIX}"
    try:
        if os.stat(path).st_size <= offset:
            return [], offset
        with open(path, "rb") as log:
            log.seek(offset)
            chunk = log.read(MAX_LOG_CHUNK)
            while b"\n" not in chunk and (more := log.read(MAX_LOG_CHUNK)):
                chunk += more  # one record longer than a chunk: read on to its end
    except OSError:
        return [], offset
    complete = chunk.rfind(b"\n") + 1  # a half-written record waits for the next call
    lines = [_log_line(name, raw) for raw in chunk[:complete].split(b"\n") if raw]
    return lines, offset + complete


def _log_line(name: str, raw: bytes) -> LogLine:
    try:
        doc = json.loads(raw)
        stamp = datetime.fromtimestamp(float(doc["t"]), UTC)
        return LogLine(stamp, name, str(doc["s"]), str(doc["m"]))
    except (ValueError, KeyError, TypeError):  # never expected: keep the bytes visible
        return LogLine(datetime.now(UTC), name, "stderr", raw.decode("utf-8", "replace"))


def _status(observations: Sequence[Observation], end: RunEnd | None) -> RunStatus:
    replicas = [ReplicaStatus(o.name, o.running, o.exit_code, o.cpu_seconds) for o in observations]
    if end is None:
        return RunStatus(replicas)
    return RunStatus(replicas, True, end.exit_code, end.failed_replica, end.reason)


def _vanished(run_dir: Path, entries: Sequence[ReplicaEntry]) -> RunStatus:
    """The run's directory was removed: kill what is left and report the run lost."""
    kill_groups(entries)
    replicas = [ReplicaStatus(e.name, False) for e in entries]
    reason = f"The run's directory {run_dir} is gone; its replicas can no longer be observed."
    return RunStatus(replicas, True, LOST_EXIT_CODE, None, reason)
