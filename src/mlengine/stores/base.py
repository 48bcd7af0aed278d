"""The metadata store contract.

Everything the server knows lives in a :class:`MetadataStore`; nothing lives only in process
memory, so a restarted server resumes every job and operation from it (PRODUCT §6).

Contract (every implementation, checked by one shared test suite in ``tests/stores``):

* **Jobs** are identified by ``(project, jobId)``. Ids are never reused: creating a job whose
  id exists in the project — in any state — raises :class:`AlreadyExists`.
* A :class:`StoredJob` is an immutable snapshot. ``seq`` is assigned at creation, strictly
  increasing across the store; it orders the queue (FIFO among equal priority) and pages.
* :meth:`MetadataStore.update_job` is an atomic read-modify-write: ``change`` receives the
  current snapshot inside one write transaction and returns the new one; whatever it raises
  aborts the transaction and propagates. Concurrent writers (several threads, or a server
  and a CLI on the same SQLite file) never lose an update.
* ``job.etag`` changes on every update (the store sets it; callers never do).
* :meth:`MetadataStore.count_jobs_by_state` counts the jobs of every project by state
  without reading them: one entry per :class:`JobState`, zero where no job is in it, summing
  to the number of jobs stored. It is what ``/metrics`` reads on every scrape.
* **Logs** are append-only per job; each entry gets a ``seq`` strictly increasing within the
  job, so a reader that asks for ``after=<last seq seen>`` never misses or repeats a line.
* **Operations** (google.longrunning.Operation in wire form) are identified by their full name
  ``projects/{p}/operations/{id}``.
* Missing things raise :class:`NotFound` naming the resource; nothing else is raised for
  well-formed calls except :class:`Unavailable` when the database cannot be reached or stays
  locked beyond the busy timeout.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from mlengine.domain.job_filter import JobQuery as JobQuery  # re-exported for the stores
from mlengine.domain.resources import Job, JobState


@dataclass(frozen=True)
class TrialRun:
    """Scheduler bookkeeping for one trial of a tuning job (its API view is in
    ``trainingOutput.trials``).

    ``run_id`` is recorded before the trial's replicas start (so a restart finds or starts
    it, never both); ``handle`` once they have; ``active`` until the run has ended and its
    logs and metrics were read. ``metric_time`` is the timestamp of the last metric record
    taken from the trial's metric file (the file keeps only recent records);
    ``stderr_tail`` the last lines its primary printed on stderr; ``error`` why it failed.
    """

    run_id: str
    handle: Mapping[str, Any] | None = None
    active: bool = True
    log_cursor: Mapping[str, Any] = field(default_factory=dict)
    cpu_seconds: float = 0.0
    metric_time: float = 0.0
    stderr_tail: Sequence[str] = ()
    error: str | None = None


@dataclass(frozen=True)
class JobRuntime:
    """Scheduler bookkeeping for a job, never shown through the API.

    ``run`` is the executor's JSON handle of the current attempt (set from PREPARING on);
    ``log_cursor`` is the executor's read position in that run's output; ``python`` the
    interpreter prepared for the run; ``cancel_requested`` is set by jobs.cancel and acted on
    by the scheduler; ``cpu_seconds`` accumulates consumed CPU time (→ consumedMLUnits).
    A tuning job's ``run`` holds its prepared working folder and ``trials`` its trials' runs,
    keyed by trial id.
    """

    attempt: int = 0
    run: Mapping[str, Any] | None = None
    log_cursor: Mapping[str, Any] = field(default_factory=dict)
    python: str | None = None
    cancel_requested: bool = False
    cpu_seconds: float = 0.0
    notes: Sequence[str] = ()
    trials: Mapping[str, TrialRun] = field(default_factory=dict)


@dataclass(frozen=True)
class StoredJob:
    """A job as stored: the API resource plus its project, queue order and runtime."""

    project: str
    job: Job
    seq: int
    runtime: JobRuntime = field(default_factory=JobRuntime)

    @property
    def job_id(self) -> str:
        return str(self.job.job_id)

    @property
    def state(self) -> JobState:
        return self.job.state or JobState.STATE_UNSPECIFIED


@dataclass(frozen=True)
class LogEntry:
    """One captured line. ``task_name`` is the replica (``worker-replica-1``) or ``service``."""

    time: datetime
    task_name: str
    message: str
    stream: str = "stdout"
    severity: str = "INFO"
    trial_id: str | None = None
    seq: int = 0


class MetadataStore(Protocol):
    """See the module docstring for the contract."""

    def create_job(self, project: str, job: Job) -> StoredJob: ...

    def get_job(self, project: str, job_id: str) -> StoredJob: ...

    def list_jobs(
        self, project: str, query: JobQuery, *, page_size: int, page_token: str | None
    ) -> tuple[list[StoredJob], str | None]:
        """Newest first (descending ``seq``); the token is opaque; ``None`` = last page."""
        ...

    def update_job(
        self, project: str, job_id: str, change: Callable[[StoredJob], StoredJob]
    ) -> StoredJob: ...

    def jobs_in_states(self, states: Collection[JobState]) -> list[StoredJob]:
        """Jobs of every project in ``states``, ascending ``seq``."""
        ...

    def count_jobs_by_state(self) -> dict[JobState, int]:
        """How many jobs of every project are in each state; every state is a key."""
        ...

    def append_logs(self, project: str, job_id: str, entries: Sequence[LogEntry]) -> None: ...

    def read_logs(
        self,
        project: str,
        job_id: str,
        *,
        after: int = 0,
        task_name: str | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]: ...

    def create_operation(self, project: str, operation: Mapping[str, Any]) -> Mapping[str, Any]: ...

    def get_operation(self, name: str) -> Mapping[str, Any]: ...

    def list_operations(
        self, project: str, *, page_size: int, page_token: str | None
    ) -> tuple[list[Mapping[str, Any]], str | None]: ...

    def update_operation(
        self, name: str, change: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    ) -> Mapping[str, Any]: ...

    def close(self) -> None: ...
