"""The executor contract: run a replica plan somewhere, survive the server's restarts.

An executor starts the replicas of one run and returns a JSON-serialisable *handle*, which
the scheduler stores with the job. Every other call takes that handle, so a freshly started
server can keep polling, reading logs from and stopping runs started by its predecessor:
re-attaching is just calling :meth:`Executor.poll` with the stored handle. Executors keep no
state a restart would lose.

Group rules (the same as ``local train``): the run ends when the primary ends (its exit code
is the run's); a non-primary replica that exits non-zero — or disappears — ends the run at
once, naming it, and the executor stops every other replica; one that exits 0 just finishes.
A replica whose supervisor vanished without recording an exit code (it was SIGKILLed, the
machine rebooted) counts as failed with a reason saying so.

Implementations: :class:`~mlengine.executors.local.LocalProcessExecutor` (processes on this
machine); a Ray executor later. One contract test suite runs against each.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mlengine.domain.machine_types import Resources
from mlengine.domain.replicas import ReplicaPlan
from mlengine.executors.cluster_env import RunIdentity

#: A stored handle: plain JSON (dicts, lists, strings, numbers).
RunHandle = Mapping[str, Any]


@dataclass(frozen=True)
class RunSpec:
    """Everything needed to start one attempt of a training run (or of one trial).

    ``run_id`` is unique per attempt (``{project}/{job}/{attempt}`` or with a trial suffix);
    ``args`` are the trainer's complete arguments (user args, hyperparameter flags,
    ``--job-dir``); ``workdir`` is every replica's working directory.
    """

    run_id: str
    plan: ReplicaPlan
    python: str
    module: str
    args: Sequence[str]
    workdir: str
    identity: RunIdentity
    base_env: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class ReplicaStatus:
    """One replica as last seen. ``exit_code`` is None while it runs."""

    name: str
    running: bool
    exit_code: int | None = None
    cpu_seconds: float = 0.0


@dataclass(frozen=True)
class RunStatus:
    """The run as last seen. ``ended`` once the group rules say so; then ``exit_code`` is
    the run's status (0 = success) and ``reason`` names the replica at fault, if any."""

    replicas: Sequence[ReplicaStatus]
    ended: bool = False
    exit_code: int | None = None
    failed_replica: str | None = None
    reason: str = ""

    @property
    def cpu_seconds(self) -> float:
        return sum(r.cpu_seconds for r in self.replicas)


@dataclass(frozen=True)
class LogLine:
    """One line a replica printed, as captured by the executor."""

    time: datetime
    replica: str
    stream: str
    message: str


class Executor(Protocol):
    """See the module docstring."""

    def capacity(self) -> Resources:
        """What this executor can run at once (CPUs, memory, GPUs)."""
        ...

    def unplaceable_reason(self, plan: ReplicaPlan) -> str | None:
        """Why ``plan`` can never run here (e.g. it asks for 2 GPUs on a machine with 0),
        or None. Jobs with a reason fail at once instead of queueing forever."""
        ...

    def fits(
        self,
        plan: ReplicaPlan,
        running: Sequence[RunHandle],
        pending: Sequence[ReplicaPlan] = (),
    ) -> bool:
        """Whether ``plan`` can start now next to the ``running`` runs and the ``pending``
        plans (admitted, still preparing, not started yet: their resources are reserved)."""
        ...

    def start(self, spec: RunSpec, running: Sequence[RunHandle]) -> RunHandle:
        """Start every replica (the primary last) and return the run's handle."""
        ...

    def poll(self, handle: RunHandle) -> RunStatus:
        """Observe the run and apply the group rules (stopping survivors when it ends)."""
        ...

    def stop(self, handle: RunHandle, *, grace_seconds: float = 5.0) -> RunStatus:
        """Stop every replica (SIGTERM, then SIGKILL after the grace) and their children."""
        ...

    def read_logs(
        self, handle: RunHandle, cursor: Mapping[str, Any]
    ) -> tuple[list[LogLine], Mapping[str, Any]]:
        """Lines printed since ``cursor`` (``{}`` = from the start) and the new cursor.
        A last line without a newline is returned once the replica has ended."""
        ...

    def read_metrics(self, handle: RunHandle) -> str:
        """The text of the primary replica's ``CLOUD_ML_HP_METRIC_FILE`` ("" when it wrote
        none yet): what a tuning trial reported, read while it runs and once it ended (before
        :meth:`cleanup`)."""
        ...

    def find_run(self, run_id: str) -> RunHandle | None:
        """The handle of a run started with ``run_id``, rebuilt from the executor's own
        records, or None if no replica of it was ever started. Lets a restarted server
        re-attach to a run whose handle it had not recorded yet (so nothing runs twice)."""
        ...

    def cleanup(self, handle: RunHandle) -> None:
        """Release what the run left on disk once its logs have been read (idempotent)."""
        ...
