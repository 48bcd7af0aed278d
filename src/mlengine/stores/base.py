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
* **Models** are identified by ``(project, model id)`` and **versions** by
  ``(project, model id, version id)``; creating one that exists raises :class:`AlreadyExists`.
  A deleted model's or version's id may be used again.  Snapshots are immutable; ``seq``
  orders pages (newest first); the store sets ``etag`` on every write that changes a row.
* A model's default version is one column of the model (``StoredModel.default_version``), the
  single source of truth for ``Model.defaultVersion`` and ``Version.isDefault``: reads derive
  ``StoredModel.default`` and ``StoredVersion.is_default`` from it in the same statement, so
  the two can never disagree.  It always names an existing version of the model or is None:
  a write that points it elsewhere raises :class:`Internal`, and deleting the default version
  clears it.
* A version belongs to an existing model: creating one under a missing model raises
  :class:`NotFound`; deleting a model that still has versions raises
  :class:`FailedPrecondition` naming them.
* :meth:`MetadataStore.update_model` and :meth:`MetadataStore.update_version` are atomic
  read-modify-writes like ``update_job``; ``update_version``'s change sees the model and the
  version (locked together, model first) and may change both — the model only in its default
  version — so "make this version the default if it is READY" is one transaction.
* ``create_version``, ``update_version`` and ``delete_version`` take an optional
  ``operation``: an Operation body written (inserted, or replacing the one of that name) in
  the same transaction, so a version's state and its operation never disagree after a crash.
  ``update_version`` also takes a function of the written (model, version) returning it.
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
from mlengine.domain.registry_filter import RegistryQuery as RegistryQuery  # re-exported
from mlengine.domain.resources import Job, JobState, Model, Version, VersionState


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
class StoredModel:
    """A model as stored: the resource (full ``name``, no ``defaultVersion``) and its default.

    ``default_version`` is the id of the default version (None: none yet); it is what writes
    change.  ``default`` is that version's resource, read with the model; writes ignore it.
    """

    project: str
    model: Model
    seq: int
    default_version: str | None = None
    default: Version | None = None

    @property
    def model_id(self) -> str:
        return str(self.model.name).rsplit("/", 1)[-1]


@dataclass(frozen=True)
class VersionRuntime:
    """Bookkeeping for a version, never shown through the API.

    ``operation`` is the name of the operation creating or deleting it; ``artifact`` the
    path of its immutable copy in the artifact store and ``sha256`` that copy's content
    digest; ``framework`` the framework detected when it was validated (e.g. ``SCIKIT_LEARN``,
    ``PYTORCH``, ``ONNX``, ``CUSTOM``; wider than the API's ``Version.framework`` enum);
    ``packages`` the artifact-store paths of its published ``packageUris``, in order
    (``models/…/<version>/packages/<sha256>/<filename>``).
    """

    operation: str | None = None
    artifact: str | None = None
    sha256: str | None = None
    framework: str | None = None
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class StoredVersion:
    """A version as stored: the resource (full ``name``, no ``isDefault``) and its runtime.

    ``is_default`` is derived from the model's default version when read; writes ignore it.
    """

    project: str
    model_id: str
    version: Version
    seq: int
    runtime: VersionRuntime = field(default_factory=VersionRuntime)
    is_default: bool = False

    @property
    def version_id(self) -> str:
        return str(self.version.name).rsplit("/", 1)[-1]

    @property
    def state(self) -> VersionState:
        return self.version.state or VersionState.UNKNOWN


#: ``update_version``'s change: (model, version) in, the new (model, version) out.
VersionChange = Callable[[StoredModel, StoredVersion], tuple[StoredModel, StoredVersion]]
#: An Operation body to write with a version, or a function of the (model, version) as
#: written that returns one (for a response that shows the result, e.g. ``isDefault``).
OperationWrite = Mapping[str, Any] | Callable[[StoredModel, StoredVersion], Mapping[str, Any]]


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

    # --- models and versions ----------------------------------------------------------

    def create_model(self, project: str, model: Model) -> StoredModel:
        """Store ``model`` (its ``name`` the full resource name); AlreadyExists if taken."""
        ...

    def get_model(self, project: str, model_id: str) -> StoredModel: ...

    def list_models(
        self, project: str, query: RegistryQuery, *, page_size: int, page_token: str | None
    ) -> tuple[list[StoredModel], str | None]:
        """Newest first; ``query.states`` is ignored; the token is opaque."""
        ...

    def update_model(
        self, project: str, model_id: str, change: Callable[[StoredModel], StoredModel]
    ) -> StoredModel: ...

    def delete_model(
        self, project: str, model_id: str, *, operation: Mapping[str, Any] | None = None
    ) -> None:
        """FailedPrecondition naming the versions while the model has any."""
        ...

    def create_version(
        self,
        project: str,
        model_id: str,
        version: Version,
        *,
        runtime: VersionRuntime | None = None,
        operation: Mapping[str, Any] | None = None,
    ) -> StoredVersion: ...

    def get_version(self, project: str, model_id: str, version_id: str) -> StoredVersion: ...

    def list_versions(
        self,
        project: str,
        model_id: str,
        query: RegistryQuery,
        *,
        page_size: int,
        page_token: str | None,
    ) -> tuple[list[StoredVersion], str | None]:
        """Newest first; NotFound when the model does not exist."""
        ...

    def update_version(
        self,
        project: str,
        model_id: str,
        version_id: str,
        change: VersionChange,
        *,
        operation: OperationWrite | None = None,
    ) -> tuple[StoredModel, StoredVersion]: ...

    def delete_version(
        self,
        project: str,
        model_id: str,
        version_id: str,
        *,
        operation: Mapping[str, Any] | None = None,
    ) -> None:
        """Remove the version; the model's default is cleared if it was this version."""
        ...

    def versions_in_states(self, states: Collection[VersionState]) -> list[StoredVersion]:
        """Versions of every project in ``states``, ascending ``seq``."""
        ...

    def count_models(self) -> int:
        """How many models there are, in every project."""
        ...

    def count_versions_by_state(self) -> dict[VersionState, int]:
        """How many versions of every project are in each state; every state is a key."""
        ...

    def close(self) -> None: ...
