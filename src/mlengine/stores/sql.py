"""The metadata store on SQLAlchemy Core: SQLite (embedded default) or PostgreSQL.

``SqlMetadataStore("sqlite:///~/.mlengine/mlengine.db")`` or
``SqlMetadataStore("postgresql://user@host/mlengine")`` opens the database, runs the Alembic
migrations up to the newest revision, and implements :class:`~mlengine.stores.base.MetadataStore`
(see its docstring for the contract).  Tables: :mod:`mlengine.stores.sql_schema`; connections,
SQLite pragmas and error translation: :mod:`mlengine.stores.sql_engine`; models and versions:
:mod:`mlengine.stores.sql_registry` (mixed in); the full story: ``docs/metadata-store.md``.

How the contract's guarantees are met:

* read-modify-writes (``update_job``, ``update_operation``, ``append_logs``) run in one write
  transaction that locks first: ``BEGIN IMMEDIATE`` on SQLite, ``SELECT … FOR UPDATE`` (or an
  ``UPDATE`` of the job's log head) on PostgreSQL;
* ``seq`` comes from the database (AUTOINCREMENT / identity), log seqs from the job's row in
  ``job_log_heads``, bumped by the number of lines appended;
* ``list_jobs`` pushes ``states``, ``job_id_prefix`` and ``labels`` into SQL and applies the
  predicate in Python, fetching growing chunks until the page is full.  With a predicate, a
  returned page token means "rows remain to be examined", so the next page may be empty.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

from sqlalchemy import ColumnElement, Connection, exc, func, insert, select, update

from mlengine.domain.errors import AlreadyExists, InvalidArgument, NotFound
from mlengine.domain.job_filter import JobQuery
from mlengine.domain.resources import Job, JobState
from mlengine.stores.base import JobRuntime, LogEntry, StoredJob
from mlengine.stores.page_tokens import decode_page_token, encode_page_token
from mlengine.stores.sql_engine import DEFAULT_BUSY_TIMEOUT, SqlDatabase
from mlengine.stores.sql_registry import SqlModelRegistry
from mlengine.stores.sql_rows import (
    check_operation,
    check_same_job,
    job_values,
    json_copy,
    log_entry,
    log_values,
    new_etag,
    runtime_from_json,
    state_counts,
    stored_job,
)
from mlengine.stores.sql_schema import job_log_heads, job_logs, jobs, operations

#: Rows fetched per query while a predicate filters a page; the first chunk is page_size + 1.
MAX_CHUNK = 1000
_JOB_COLUMNS = (jobs.c.seq, jobs.c.project, jobs.c.body, jobs.c.runtime)


class SqlMetadataStore(SqlModelRegistry):
    """A :class:`~mlengine.stores.base.MetadataStore` on SQLite or PostgreSQL.

    ``url`` is ``sqlite:///path`` (the folder is created), ``sqlite:///:memory:``, or
    ``postgresql[+psycopg]://user:password@host:port/database``.  ``busy_timeout`` is how long
    SQLite waits for another writer before raising :class:`Unavailable`.  Opening runs the
    migrations; it raises :class:`Unavailable` when the database cannot be reached.
    """

    def __init__(
        self, url: str, *, echo: bool = False, busy_timeout: float = DEFAULT_BUSY_TIMEOUT
    ) -> None:
        self._db = SqlDatabase(url, echo=echo, busy_timeout=busy_timeout)
        try:
            self._db.migrate()
        except BaseException:
            self._db.close()
            raise

    @property
    def url(self) -> str:
        """The database URL with any password masked."""
        return self._db.shown_url

    @property
    def dialect(self) -> str:
        """``"sqlite"`` or ``"postgresql"``."""
        return self._db.dialect

    # --- jobs --------------------------------------------------------------------------

    def create_job(self, project: str, job: Job) -> StoredJob:
        if not job.job_id:
            raise InvalidArgument("A job needs a jobId to be stored.", field="jobId")
        job = job.model_copy(update={"etag": new_etag()})
        values = {"project": project, "job_id": job.job_id, **job_values(job, JobRuntime())}
        try:
            with self._db.transaction(write=True) as connection:
                key = connection.execute(insert(jobs).values(values)).inserted_primary_key
                assert key is not None
                connection.execute(
                    insert(job_log_heads).values(project=project, job_id=job.job_id, last_seq=0)
                )
        except exc.IntegrityError:
            raise AlreadyExists(
                f"Job 'projects/{project}/jobs/{job.job_id}' already exists; job ids are never "
                "reused, even after the job ends: choose another jobId.",
                field="jobId",
            ) from None
        return StoredJob(project=project, job=job, seq=int(key[0]))

    def get_job(self, project: str, job_id: str) -> StoredJob:
        with self._db.transaction(write=False) as connection:
            row = connection.execute(
                select(*_JOB_COLUMNS).where(*_job_key(project, job_id))
            ).one_or_none()
        if row is None:
            raise _job_not_found(project, job_id)
        return stored_job(row)

    def list_jobs(
        self, project: str, query: JobQuery, *, page_size: int, page_token: str | None
    ) -> tuple[list[StoredJob], str | None]:
        after = decode_page_token(page_token, "jobs", project)
        if query.states is not None and not query.states:
            return [], None
        conditions = _job_conditions(project, query)
        with self._db.transaction(write=False) as connection:
            return self._job_page(connection, conditions, query.predicate, page_size, after)

    def _job_page(
        self,
        connection: Connection,
        conditions: list[ColumnElement[bool]],
        predicate: Callable[[Job], bool] | None,
        page_size: int,
        after: int | None,
    ) -> tuple[list[StoredJob], str | None]:
        page: list[StoredJob] = []
        chunk = page_size + 1
        while True:
            bound = [] if after is None else [jobs.c.seq < after]
            statement = (
                select(*_JOB_COLUMNS)
                .where(*conditions, *bound)
                .order_by(jobs.c.seq.desc())
                .limit(chunk)
            )
            rows = connection.execute(statement).all()
            for index, row in enumerate(rows):
                after = row.seq
                job = Job.model_validate(row.body)
                if predicate is not None and not predicate(job):
                    continue
                page.append(StoredJob(row.project, job, row.seq, runtime_from_json(row.runtime)))
                if len(page) == page_size:
                    more = index < len(rows) - 1 or (predicate is not None and len(rows) == chunk)
                    return page, encode_page_token("jobs", row.project, row.seq) if more else None
            if len(rows) < chunk:
                return page, None
            chunk = min(chunk * 2, MAX_CHUNK)

    def update_job(
        self, project: str, job_id: str, change: Callable[[StoredJob], StoredJob]
    ) -> StoredJob:
        with self._db.transaction(write=True) as connection:
            row = connection.execute(
                select(*_JOB_COLUMNS).where(*_job_key(project, job_id)).with_for_update()
            ).one_or_none()
            if row is None:
                raise _job_not_found(project, job_id)
            current = stored_job(row)
            changed = change(current)
            check_same_job(current, changed)
            job = changed.job.model_copy(update={"etag": new_etag(current.job.etag)})
            connection.execute(
                update(jobs)
                .where(jobs.c.seq == current.seq)
                .values(job_values(job, changed.runtime))
            )
        return StoredJob(project=project, job=job, seq=current.seq, runtime=changed.runtime)

    def jobs_in_states(self, states: Collection[JobState]) -> list[StoredJob]:
        if not states:
            return []
        statement = (
            select(*_JOB_COLUMNS)
            .where(jobs.c.state.in_(sorted(JobState(s).value for s in states)))
            .order_by(jobs.c.seq)
        )
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement).all()
        return [stored_job(row) for row in rows]

    def count_jobs_by_state(self) -> dict[JobState, int]:
        # One GROUP BY over the (state, seq) index; no job body is read.
        statement = select(jobs.c.state, func.count()).group_by(jobs.c.state)
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement).all()
        return state_counts(rows)

    # --- logs --------------------------------------------------------------------------

    def append_logs(self, project: str, job_id: str, entries: Sequence[LogEntry]) -> None:
        key = (job_log_heads.c.project == project, job_log_heads.c.job_id == job_id)
        with self._db.transaction(write=True) as connection:
            # The UPDATE locks the job's head row: concurrent appenders take turns here.
            last = connection.execute(
                update(job_log_heads)
                .where(*key)
                .values(last_seq=job_log_heads.c.last_seq + len(entries))
                .returning(job_log_heads.c.last_seq)
            ).scalar_one_or_none()
            if last is None:
                raise _job_not_found(project, job_id)
            if entries:
                first = last - len(entries) + 1
                connection.execute(insert(job_logs), log_values(project, job_id, first, entries))

    def read_logs(
        self,
        project: str,
        job_id: str,
        *,
        after: int = 0,
        task_name: str | None = None,
        limit: int = 1000,
    ) -> list[LogEntry]:
        conditions = [
            job_logs.c.project == project,
            job_logs.c.job_id == job_id,
            job_logs.c.seq > after,
        ]
        if task_name is not None:
            conditions.append(job_logs.c.task_name == task_name)
        statement = select(job_logs).where(*conditions).order_by(job_logs.c.seq)
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement.limit(max(limit, 0))).all()
            if not rows and not _job_exists(connection, project, job_id):
                raise _job_not_found(project, job_id)
        return [log_entry(row) for row in rows]

    # --- operations --------------------------------------------------------------------

    def create_operation(self, project: str, operation: Mapping[str, Any]) -> Mapping[str, Any]:
        name = check_operation(project, operation)
        body = json_copy(operation)
        values = {"name": name, "project": project, "done": bool(body.get("done")), "body": body}
        try:
            with self._db.transaction(write=True) as connection:
                connection.execute(insert(operations).values(values))
        except exc.IntegrityError:
            raise AlreadyExists(f"Operation '{name}' already exists.", field="name") from None
        return json_copy(body)

    def get_operation(self, name: str) -> Mapping[str, Any]:
        with self._db.transaction(write=False) as connection:
            body = connection.execute(
                select(operations.c.body).where(operations.c.name == name)
            ).scalar_one_or_none()
        if body is None:
            raise _operation_not_found(name)
        return dict(body)

    def list_operations(
        self, project: str, *, page_size: int, page_token: str | None
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        after = decode_page_token(page_token, "operations", project)
        conditions = [operations.c.project == project]
        if after is not None:
            conditions.append(operations.c.seq < after)
        statement = (
            select(operations.c.seq, operations.c.body)
            .where(*conditions)
            .order_by(operations.c.seq.desc())
            .limit(page_size + 1)
        )
        with self._db.transaction(write=False) as connection:
            rows = connection.execute(statement).all()
        page = rows[:page_size]
        token = None
        if len(rows) > page_size:
            token = encode_page_token("operations", project, page[-1].seq)
        return [dict(row.body) for row in page], token

    def update_operation(
        self, name: str, change: Callable[[Mapping[str, Any]], Mapping[str, Any]]
    ) -> Mapping[str, Any]:
        with self._db.transaction(write=True) as connection:
            row = connection.execute(
                select(operations.c.seq, operations.c.project, operations.c.body)
                .where(operations.c.name == name)
                .with_for_update()
            ).one_or_none()
            if row is None:
                raise _operation_not_found(name)
            body = json_copy(change(dict(row.body)))
            if check_operation(row.project, body) != name:
                raise InvalidArgument(
                    f"update_operation of {name!r} may not rename it to {body['name']!r}.",
                    field="name",
                )
            connection.execute(
                update(operations)
                .where(operations.c.seq == row.seq)
                .values(done=bool(body.get("done")), body=body)
            )
        return json_copy(body)

    def close(self) -> None:
        """Close every pooled connection (an in-memory database is gone afterwards)."""
        self._db.close()


def _job_key(project: str, job_id: str) -> tuple[ColumnElement[bool], ColumnElement[bool]]:
    return jobs.c.project == project, jobs.c.job_id == job_id


def _job_conditions(project: str, query: JobQuery) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [jobs.c.project == project]
    if query.states is not None:
        conditions.append(jobs.c.state.in_(sorted(state.value for state in query.states)))
    if query.job_id_prefix:
        # substr, not LIKE: exact and case-sensitive on both backends, no escaping of _ and %.
        prefix = query.job_id_prefix
        conditions.append(func.substr(jobs.c.job_id, 1, len(prefix)) == prefix)
    for key, value in sorted((query.labels or {}).items()):
        conditions.append(jobs.c.labels[key].as_string() == value)
    return conditions


def _job_exists(connection: Connection, project: str, job_id: str) -> bool:
    found = connection.execute(select(jobs.c.seq).where(*_job_key(project, job_id))).first()
    return found is not None


def _job_not_found(project: str, job_id: str) -> NotFound:
    return NotFound(
        f"Job 'projects/{project}/jobs/{job_id}' was not found; check the project and job id "
        "(list jobs to see them)."
    )


def _operation_not_found(name: str) -> NotFound:
    return NotFound(f"Operation '{name}' was not found.")
