"""``projects.jobs`` of the v1 API, the job-log extra, and the package upload extra.

=======  ==============================================  ================================
POST     /v1/projects/{project}/jobs                     jobs.create (Job → Job)
GET      /v1/projects/{project}/jobs                     jobs.list (filter, pageSize, pageToken)
GET      /v1/projects/{project}/jobs/{job}               jobs.get
PATCH    /v1/projects/{project}/jobs/{job}               jobs.patch (updateMask)
POST     /v1/projects/{project}/jobs/{job}:cancel        jobs.cancel ({} → {})
GET      /v1/projects/{project}/jobs/{job}/logs          extra: log lines after a sequence number
POST     /upload/v1/projects/{project}/packages          extra: stage a trainer archive
=======  ==============================================  ================================

Each handler parses, calls one service method and renders.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies from the
# annotations, and the ``Annotated`` aliases built inside the router functions can only be
# resolved while the signatures are evaluated eagerly.
from typing import IO, Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from mlengine.api.rendering import (
    Query,
    json_body,
    list_page,
    query_params,
    reject_fields,
    spooled_body,
)
from mlengine.domain.durations import format_timestamp
from mlengine.domain.errors import InvalidArgument
from mlengine.domain.names import validate_project_id
from mlengine.services.jobs import JobService
from mlengine.services.packages import PackageService
from mlengine.stores.base import LogEntry

JOBS = "/v1/projects/{project:segment}/jobs"
JOB = JOBS + "/{job:segment}"
PACKAGES = "/upload/v1/projects/{project:segment}/packages"
#: Log lines per call when ``limit`` is not given.
LOG_LIMIT = 1000

# The query parameters each method takes besides the standard ones.
CreateQuery = Annotated[Query, Depends(query_params("jobs.create"))]
ListQuery = Annotated[Query, Depends(query_params("jobs.list", "filter", "pageSize", "pageToken"))]
GetQuery = Annotated[Query, Depends(query_params("jobs.get"))]
PatchQuery = Annotated[Query, Depends(query_params("jobs.patch", "updateMask"))]
CancelQuery = Annotated[Query, Depends(query_params("jobs.cancel"))]
LogsQuery = Annotated[Query, Depends(query_params("jobs.logs", "after", "taskName", "limit"))]
UploadQuery = Annotated[Query, Depends(query_params("packages.upload", "filename"))]


def jobs_router(jobs: JobService, *, max_body_bytes: int) -> APIRouter:
    """The v1 job methods and the log extra over ``jobs``."""
    router = APIRouter()
    Body = Annotated[dict[str, Any], Depends(json_body(max_body_bytes))]
    OptionalBody = Annotated[dict[str, Any], Depends(json_body(max_body_bytes, required=False))]

    @router.post(JOBS)
    def create(project: str, body: Body, q: CreateQuery) -> Response:
        return q.render(jobs.create(validate_project_id(project, field="parent"), body).to_api())

    @router.get(JOBS)
    def list_jobs(project: str, q: ListQuery) -> Response:
        found, token = jobs.list_jobs(
            validate_project_id(project, field="parent"),
            filter=q.text("filter"),
            page_size=q.integer("pageSize"),
            page_token=q.text("pageToken"),
        )
        return q.render(list_page("jobs", [job.to_api() for job in found], token))

    @router.get(JOB)
    def get(project: str, job: str, q: GetQuery) -> Response:
        return q.render(jobs.get(validate_project_id(project, field="name"), job).to_api())

    @router.patch(JOB)
    def patch(project: str, job: str, body: Body, q: PatchQuery) -> Response:
        project = validate_project_id(project, field="name")
        return q.render(jobs.patch(project, job, body, q.text("updateMask")).to_api())

    @router.post(JOB + ":cancel")
    def cancel(project: str, job: str, body: OptionalBody, q: CancelQuery) -> Response:
        reject_fields(body, "CancelJobRequest")
        jobs.cancel(validate_project_id(project, field="name"), job)
        return q.render({})

    @router.get(JOB + "/logs")
    def logs(project: str, job: str, q: LogsQuery) -> Response:
        found, entries = jobs.logs(
            validate_project_id(project, field="name"),
            job,
            after=q.integer("after", 0),
            task_name=q.text("taskName") or None,
            limit=q.integer("limit", LOG_LIMIT),
        )
        return q.render({"job": found.to_api(), "entries": [log_entry(e) for e in entries]})

    return router


def packages_router(packages: PackageService, *, max_upload_bytes: int) -> APIRouter:
    """The upload extra: the raw archive as the body, its ``packageUri`` back."""
    router = APIRouter()
    Upload = Annotated[IO[bytes], Depends(spooled_body(max_upload_bytes))]

    @router.post(PACKAGES)
    def upload(project: str, data: Upload, q: UploadQuery) -> Response:
        validate_project_id(project, field="parent")
        filename = q.text("filename")
        if not filename:
            raise InvalidArgument(
                "The query parameter filename (the archive's file name, "
                "e.g. trainer-0.1.tar.gz) is required.",
                field="filename",
            )
        check_not_empty(data)
        return q.render({"packageUri": packages.stage(filename, data)})

    return router


def check_not_empty(data: IO[bytes]) -> None:
    if not data.read(1):
        raise InvalidArgument(
            "The upload is empty: send the archive's bytes as the request "
            "body (Content-Type: application/octet-stream)."
        )
    data.seek(0)


def log_entry(entry: LogEntry) -> dict[str, Any]:
    """One log line in wire form (``seq`` is int64, so a string)."""
    return {
        "seq": str(entry.seq),
        "time": format_timestamp(entry.time),
        "taskName": entry.task_name,
        "trialId": entry.trial_id,
        "stream": entry.stream,
        "severity": entry.severity,
        "message": entry.message,
    }
