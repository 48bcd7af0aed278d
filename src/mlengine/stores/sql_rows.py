"""Rows of the SQL metadata store ↔ the store's dataclasses.

A job row keeps the Job's wire form (``Job.to_api()``) in ``body`` and copies the columns that
queries need (state, priority, create time, labels) out of it; :func:`job_values` is the one
place that decides those copies, so inserts and updates can never disagree.  Models and
versions follow the same rule with :func:`model_values` and :func:`version_values`; their
bodies never hold the derived ``defaultVersion`` / ``isDefault``.
"""

from __future__ import annotations

import base64
import os
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import orjson
from sqlalchemy import Row

from mlengine.domain.errors import Internal, InvalidArgument
from mlengine.domain.resources import Job, JobState, Model, Version, VersionState
from mlengine.stores.base import (
    JobRuntime,
    LogEntry,
    StoredJob,
    StoredModel,
    StoredVersion,
    TrialRun,
    VersionRuntime,
)

_ETAG_BYTES = 9
#: A result row of any shape (SQLAlchemy types rows by their column types).
AnyRow = Row[*tuple[Any, ...]]


def new_etag(previous: bytes | None = None) -> bytes:
    """Random bytes for ``Job.etag``, never equal to ``previous``."""
    while True:
        etag = os.urandom(_ETAG_BYTES)
        if etag != previous:
            return etag


def job_values(job: Job, runtime: JobRuntime) -> dict[str, Any]:
    """The column values of a job row (everything but project, job_id and seq)."""
    scheduling = job.training_input.scheduling if job.training_input else None
    priority = scheduling.priority if scheduling and scheduling.priority is not None else 0
    return {
        "state": (job.state or JobState.STATE_UNSPECIFIED).value,
        "priority": priority,
        "create_time": job.create_time,
        "labels": dict(job.labels or {}),
        "body": job.to_api(),
        "runtime": runtime_to_json(runtime),
        "etag": base64.b64encode(job.etag or b"").decode("ascii"),
    }


def stored_job(row: AnyRow) -> StoredJob:
    """A StoredJob from a row with the project, seq, body and runtime columns."""
    return StoredJob(
        project=row.project,
        job=Job.model_validate(row.body),
        seq=row.seq,
        runtime=runtime_from_json(row.runtime),
    )


def state_counts(rows: Iterable[tuple[str, int]]) -> dict[JobState, int]:
    """``(state column, count)`` rows → a count for every JobState, zero where none."""
    counts = dict.fromkeys(JobState, 0)
    for state, count in rows:
        counts[JobState(state)] += int(count)
    return counts


def runtime_to_json(runtime: JobRuntime) -> dict[str, Any]:
    return {
        "attempt": runtime.attempt,
        "run": None if runtime.run is None else dict(runtime.run),
        "logCursor": dict(runtime.log_cursor),
        "python": runtime.python,
        "cancelRequested": runtime.cancel_requested,
        "cpuSeconds": runtime.cpu_seconds,
        "notes": list(runtime.notes),
        "trials": {key: _trial_to_json(trial) for key, trial in runtime.trials.items()},
    }


def _trial_to_json(trial: TrialRun) -> dict[str, Any]:
    return {
        "runId": trial.run_id,
        "handle": None if trial.handle is None else dict(trial.handle),
        "active": trial.active,
        "logCursor": dict(trial.log_cursor),
        "cpuSeconds": trial.cpu_seconds,
        "metricTime": trial.metric_time,
        "stderrTail": list(trial.stderr_tail),
        "error": trial.error,
    }


def _trial_from_json(data: Mapping[str, Any]) -> TrialRun:
    return TrialRun(
        run_id=str(data["runId"]),
        handle=data.get("handle"),
        active=bool(data.get("active", True)),
        log_cursor=data.get("logCursor") or {},
        cpu_seconds=float(data.get("cpuSeconds", 0.0)),
        metric_time=float(data.get("metricTime", 0.0)),
        stderr_tail=tuple(data.get("stderrTail") or ()),
        error=data.get("error"),
    )


def runtime_from_json(data: Mapping[str, Any]) -> JobRuntime:
    """The inverse of :func:`runtime_to_json`; ``notes`` come back as a tuple."""
    return JobRuntime(
        attempt=int(data.get("attempt", 0)),
        run=data.get("run"),
        log_cursor=data.get("logCursor") or {},
        python=data.get("python"),
        cancel_requested=bool(data.get("cancelRequested", False)),
        cpu_seconds=float(data.get("cpuSeconds", 0.0)),
        notes=tuple(data.get("notes") or ()),
        trials={str(k): _trial_from_json(v) for k, v in (data.get("trials") or {}).items()},
    )


def log_values(
    project: str, job_id: str, first_seq: int, entries: Sequence[LogEntry]
) -> list[dict[str, Any]]:
    """Rows for ``entries``, numbered from ``first_seq`` (their own ``seq`` is ignored).

    NUL characters, which PostgreSQL text cannot hold, become U+FFFD on every backend.
    """
    return [
        {
            "project": project,
            "job_id": job_id,
            "seq": first_seq + offset,
            "time": entry.time,
            "task_name": entry.task_name,
            "trial_id": entry.trial_id,
            "stream": entry.stream,
            "severity": entry.severity,
            "message": entry.message.replace("\x00", "\ufffd"),
        }
        for offset, entry in enumerate(entries)
    ]


def log_entry(row: AnyRow) -> LogEntry:
    return LogEntry(
        time=row.time,
        task_name=row.task_name,
        message=row.message,
        stream=row.stream,
        severity=row.severity,
        trial_id=row.trial_id,
        seq=row.seq,
    )


def check_same_job(before: StoredJob, after: StoredJob) -> None:
    """``update_job``'s change must not move the job to another id, project or seq."""
    if (after.project, after.job_id, after.seq) != (before.project, before.job_id, before.seq):
        raise Internal(
            f"update_job of projects/{before.project}/jobs/{before.job_id} returned "
            f"projects/{after.project}/jobs/{after.job_id} (seq {after.seq}); a change may "
            "not alter a job's identity."
        )


def json_copy(value: Mapping[str, Any]) -> dict[str, Any]:
    """A deep copy in JSON form: what is stored is exactly what is returned."""
    copied = orjson.loads(orjson.dumps(dict(value)))
    assert isinstance(copied, dict)
    return copied


def check_operation(project: str, operation: Mapping[str, Any]) -> str:
    """The operation's name, which must be ``projects/{project}/operations/{id}``."""
    name = operation.get("name")
    prefix = f"projects/{project}/operations/"
    if not isinstance(name, str) or not name.startswith(prefix) or name == prefix:
        raise InvalidArgument(
            f"An operation stored under project {project!r} needs a name of the form "
            f"'{prefix}{{id}}', not {name!r}.",
            field="name",
        )
    return name


# --- models and versions ---------------------------------------------------------------------


def model_values(model: Model, default_version: str | None) -> dict[str, Any]:
    """The column values of a model row (everything but project, name and seq)."""
    return {
        "default_version": default_version,
        "labels": dict(model.labels or {}),
        "body": model.model_copy(update={"default_version": None}).to_api(),
        "etag": base64.b64encode(model.etag or b"").decode("ascii"),
    }


def stored_model(row: AnyRow) -> StoredModel:
    """A StoredModel from a row with seq, project, body, default_version and default_body."""
    default_body = row.default_body
    return StoredModel(
        project=row.project,
        model=Model.model_validate(row.body),
        seq=row.seq,
        default_version=row.default_version,
        default=None if default_body is None else Version.model_validate(default_body),
    )


def version_values(version: Version, runtime: VersionRuntime) -> dict[str, Any]:
    """The column values of a version row (everything but project, model, name and seq)."""
    return {
        "state": (version.state or VersionState.UNKNOWN).value,
        "create_time": version.create_time,
        "labels": dict(version.labels or {}),
        "body": version.model_copy(update={"is_default": None}).to_api(),
        "runtime": {
            "operation": runtime.operation,
            "artifact": runtime.artifact,
            "sha256": runtime.sha256,
            "framework": runtime.framework,
            "packages": list(runtime.packages),
        },
        "etag": base64.b64encode(version.etag or b"").decode("ascii"),
    }


def stored_version(row: AnyRow, *, is_default: bool) -> StoredVersion:
    """A StoredVersion from a row with seq, project, model, body and runtime."""
    runtime = row.runtime or {}
    return StoredVersion(
        project=row.project,
        model_id=row.model,
        version=Version.model_validate(row.body),
        seq=row.seq,
        runtime=VersionRuntime(
            operation=runtime.get("operation"),
            artifact=runtime.get("artifact"),
            sha256=runtime.get("sha256"),
            framework=runtime.get("framework"),
            packages=tuple(runtime.get("packages") or ()),
        ),
        is_default=is_default,
    )


def version_state_counts(rows: Iterable[tuple[str, int]]) -> dict[VersionState, int]:
    """``(state column, count)`` rows → a count for every VersionState, zero where none."""
    counts = dict.fromkeys(VersionState, 0)
    for state, count in rows:
        counts[VersionState(state)] += int(count)
    return counts


def check_same_version(before: StoredVersion, after: StoredVersion) -> None:
    """``update_version``'s change must not move the version to another name or seq."""
    key = (before.project, before.model_id, before.version_id, before.seq)
    if (after.project, after.model_id, after.version_id, after.seq) != key:
        raise Internal(
            f"update_version of {before.version.name} returned {after.version.name} "
            f"(seq {after.seq}); a change may not alter a version's identity."
        )


def check_same_model(before: StoredModel, after: StoredModel) -> None:
    """A change must not move the model to another name, project or seq."""
    if (after.project, after.model.name, after.seq) != (
        before.project,
        before.model.name,
        before.seq,
    ):
        raise Internal(
            f"A change of {before.model.name} returned {after.model.name} (seq {after.seq}); "
            "a change may not alter a model's identity."
        )
