"""Training jobs: create, read, list, cancel, relabel, and read their logs.

The REST routes and the CLI call these methods and nothing else. Running jobs is the
scheduler's business (``mlengine.scheduler``); this service only records intent in the store
(a cancel sets CANCELLING and ``cancel_requested``; the scheduler stops the replicas).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from mlengine.artifacts.paths import validate_user_local_path
from mlengine.domain.errors import (
    Code,
    FailedPrecondition,
    InvalidArgument,
    MlEngineError,
    NotFound,
)
from mlengine.domain.job_filter import parse_job_filter
from mlengine.domain.names import validate_labels, validate_resource_id
from mlengine.domain.resources import Job, JobState, parse_job
from mlengine.domain.training_plans import plan_for_training_input
from mlengine.domain.validation import validate_job
from mlengine.stores.base import JobQuery, LogEntry, MetadataStore, StoredJob

Clock = Callable[[], datetime]

DEFAULT_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
PATCHABLE_FIELDS = frozenset({"labels", "etag"})


def utc_now() -> datetime:
    return datetime.now(UTC)


def page_size_of(value: int | None) -> int:
    """The v1 rule: default 20, at most 100; zero or negative is an error."""
    if value is None or value == 0:
        return DEFAULT_PAGE_SIZE
    if value < 0:
        raise InvalidArgument(f"pageSize must be positive, got {value}.", field="pageSize")
    return min(value, MAX_PAGE_SIZE)


class JobService:
    """Use cases on ``projects/{project}/jobs``. ``packages`` checks packageUris at submit."""

    def __init__(
        self,
        store: MetadataStore,
        *,
        clock: Clock = utc_now,
        check_packages: Callable[[Sequence[str]], None] | None = None,
    ) -> None:
        self._store = store
        self._clock = clock
        self._check_packages = check_packages

    def create(self, project: str, body: Mapping[str, Any]) -> Job:
        """Validate ``body`` (a Job in wire form) and queue it. Output-only fields are ignored.

        Raises InvalidArgument naming the field, AlreadyExists for a used id, and
        UNIMPLEMENTED for kinds of job this release cannot run yet.
        """
        job = validate_job(parse_job(body).without_output_only())
        self._check_runnable(project, job)
        queued = job.model_copy(update={"state": JobState.QUEUED, "create_time": self._clock()})
        return self._store.create_job(project, queued).job

    def _check_runnable(self, project: str, job: Job) -> None:
        if job.prediction_input is not None:
            raise MlEngineError(
                "Batch prediction jobs (predictionInput) are not supported by this release yet; "
                "use online prediction or submit a training job.",
                field="predictionInput",
                code=Code.UNIMPLEMENTED,
            )
        ti = job.training_input
        assert ti is not None  # validate_job guarantees one of the two inputs
        if ti.hyperparameters is not None:
            self._check_resume(project, ti.hyperparameters.resume_previous_job_id)
        if ti.master_config is not None and ti.master_config.image_uri:
            raise MlEngineError(
                "Custom containers (masterConfig.imageUri) are not supported by the local "
                "executor; give packageUris and pythonModule instead.",
                field="trainingInput.masterConfig.imageUri",
                code=Code.UNIMPLEMENTED,
            )
        if not ti.package_uris:
            raise InvalidArgument(
                "trainingInput.packageUris is required: upload your trainer package (the CLI "
                "does this for --package-path) and list its URI.",
                field="trainingInput.packageUris",
            )
        plan_for_training_input(ti)  # unknown machine types fail now, not when scheduled
        _check_job_dir(ti.job_dir)
        if self._check_packages is not None:
            self._check_packages(ti.package_uris)

    def _check_resume(self, project: str, previous_id: str | None) -> None:
        """``resumePreviousJobId`` must name a finished tuning job of the same project."""
        if not previous_id:
            return
        field = "trainingInput.hyperparameters.resumePreviousJobId"
        try:
            previous = self._store.get_job(project, previous_id)
        except NotFound:
            raise InvalidArgument(
                f"'{field}' names job {previous_id!r}, which does not exist in project "
                f"{project!r}; give the id of an earlier hyperparameter tuning job.",
                field=field,
            ) from None
        ti = previous.job.training_input
        if ti is None or ti.hyperparameters is None:
            raise InvalidArgument(
                f"'{field}': job {previous_id!r} is not a hyperparameter tuning job, so there "
                "are no trials to resume from.",
                field=field,
            )
        if not previous.state.is_terminal():
            raise FailedPrecondition(
                f"'{field}': job {previous_id!r} is still {previous.state.value}; resume from "
                "it once it has finished (or cancel it first).",
                field=field,
            )

    def get(self, project: str, job_id: str) -> Job:
        """The job, with ``jobPosition`` filled in while it is QUEUED."""
        validate_resource_id(job_id, field="name", kind="job")
        stored = self._store.get_job(project, job_id)
        return self._with_positions([stored])[0]

    def list_jobs(
        self,
        project: str,
        *,
        filter: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Job], str | None]:
        """Newest first; ``filter`` as in gcloud (``jobId:census*``, ``state=FAILED`` …)."""
        query: JobQuery = parse_job_filter(filter)
        rows, token = self._store.list_jobs(
            project, query, page_size=page_size_of(page_size), page_token=page_token or None
        )
        return self._with_positions(rows), token

    def _with_positions(self, rows: Sequence[StoredJob]) -> list[Job]:
        if not any(r.state is JobState.QUEUED for r in rows):
            return [r.job for r in rows]
        queue = queue_order(self._store.jobs_in_states([JobState.QUEUED]))
        position = {(s.project, s.job_id): i + 1 for i, s in enumerate(queue)}
        out = []
        for row in rows:
            if row.state is JobState.QUEUED:
                where = position.get((row.project, row.job_id), 0)
                out.append(row.job.model_copy(update={"job_position": where}))
            else:
                out.append(row.job)
        return out

    def cancel(self, project: str, job_id: str) -> None:
        """Ask for the job to stop: QUEUED ends CANCELLED at once; PREPARING and RUNNING go
        CANCELLING until the scheduler has stopped every replica. FAILED_PRECONDITION for a
        job that already ended."""
        validate_resource_id(job_id, field="name", kind="job")
        now = self._clock()

        def change(stored: StoredJob) -> StoredJob:
            state = stored.state
            if state.is_terminal():
                raise FailedPrecondition(
                    f"Job {job_id} has already ended ({state.value}); only QUEUED, PREPARING "
                    "or RUNNING jobs can be cancelled.",
                    field="name",
                )
            if state is JobState.CANCELLING:
                return stored
            if state is JobState.QUEUED:
                job = stored.job.model_copy(
                    update={
                        "state": JobState.CANCELLED,
                        "end_time": now,
                        "error_message": "Job cancelled by the user before it started.",
                    }
                )
                return replace(stored, job=job)
            job = stored.job.model_copy(
                update={
                    "state": JobState.CANCELLING,
                    "error_message": "Cancellation requested by the user.",
                }
            )
            return replace(stored, job=job, runtime=replace(stored.runtime, cancel_requested=True))

        self._store.update_job(project, job_id, change)

    def patch(
        self, project: str, job_id: str, body: Mapping[str, Any], update_mask: str | None
    ) -> Job:
        """jobs.patch: only ``labels`` can change; with ``etag`` in the mask it must match."""
        validate_resource_id(job_id, field="name", kind="job")
        fields = _mask_fields(update_mask)
        patch = Job.from_api(body)
        labels = dict(patch.labels or {})
        validate_labels(labels, field="labels")

        def change(stored: StoredJob) -> StoredJob:
            if "etag" in fields and patch.etag != stored.job.etag:
                raise MlEngineError(
                    f"The etag of job {job_id} does not match: it was changed since you read "
                    "it. Read the job again and retry with its current etag.",
                    field="etag",
                    code=Code.ABORTED,
                )
            return replace(stored, job=stored.job.model_copy(update={"labels": labels or None}))

        return self._store.update_job(project, job_id, change).job

    def logs(
        self,
        project: str,
        job_id: str,
        *,
        after: int = 0,
        task_name: str | None = None,
        limit: int = 1000,
    ) -> tuple[Job, list[LogEntry]]:
        """The job (to know when to stop following) and its log lines after ``after``."""
        job = self.get(project, job_id)
        if limit < 1 or limit > 10000:
            raise InvalidArgument(f"limit must be between 1 and 10000, got {limit}.", field="limit")
        entries = self._store.read_logs(
            project, job_id, after=after, task_name=task_name, limit=limit
        )
        return job, entries


def queue_order(queued: Sequence[StoredJob]) -> list[StoredJob]:
    """Scheduling order: higher ``scheduling.priority`` first, then submission order."""

    def key(stored: StoredJob) -> tuple[int, int]:
        ti = stored.job.training_input
        priority = ti.scheduling.priority if ti and ti.scheduling and ti.scheduling.priority else 0
        return (-int(priority), stored.seq)

    return sorted(queued, key=key)


def _mask_fields(update_mask: str | None) -> set[str]:
    if not update_mask:
        raise InvalidArgument(
            "updateMask is required; jobs.patch can update 'labels' (and check 'etag').",
            field="updateMask",
        )
    fields = {f.strip() for f in update_mask.split(",") if f.strip()}
    unknown = sorted(fields - PATCHABLE_FIELDS)
    if unknown:
        raise InvalidArgument(
            f"updateMask names fields that cannot be updated: {unknown}; "
            "only 'labels' and 'etag' can.",
            field="updateMask",
        )
    return fields


def _check_job_dir(job_dir: str | None) -> None:
    """A URI (gs://, s3://, …) is left to the trainer; a server path goes through the one
    containment check (absolute, no '..', no control characters)."""
    if not job_dir:
        return
    scheme = job_dir.split("://", 1)[0] if "://" in job_dir else ""
    if scheme and scheme != "file":
        if "\x00" in job_dir:
            raise InvalidArgument(
                "trainingInput.jobDir must not contain NUL bytes.", field="trainingInput.jobDir"
            )
        return
    validate_user_local_path(job_dir, field="trainingInput.jobDir", must_exist=False)
