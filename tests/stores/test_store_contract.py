"""The MetadataStore contract (``mlengine/stores/base.py``), checked on SQLite and PostgreSQL.

One suite, :class:`TestMetadataStoreContract`, runs against every backend through the
``store``/``open_store`` fixtures (``conftest.py``); what only one backend has (SQLite pragmas,
``:memory:``, locking) follows in plain functions.
"""

from __future__ import annotations

import base64
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, text

from mlengine.domain.errors import (
    AlreadyExists,
    FailedPrecondition,
    Internal,
    InvalidArgument,
    NotFound,
    Unavailable,
)
from mlengine.domain.job_filter import JobQuery, parse_job_filter
from mlengine.domain.resources import Job, JobState, parse_job
from mlengine.stores.base import JobRuntime, LogEntry, StoredJob, TrialRun
from mlengine.stores.sql import SqlMetadataStore
from mlengine.stores.sql_engine import normalise_url
from mlengine.stores.sql_schema import metadata
from tests.stores.conftest import OpenStore

T0 = datetime(2024, 3, 1, 10, 0, 0, 123456, tzinfo=UTC)
ALL = JobQuery()


def training_job(job_id: str, **fields: Any) -> Job:
    """A realistic job body, as the service stores it after validation."""
    body: dict[str, Any] = {
        "jobId": job_id,
        "labels": {"team": "vision", "owner": "alice"},
        "trainingInput": {
            "scaleTier": "CUSTOM",
            "masterType": "n1-standard-8",
            "workerType": "n1-standard-4",
            "workerCount": "2",
            "packageUris": ["gs://bucket/trainer-0.1.tar.gz"],
            "pythonModule": "trainer.task",
            "args": ["--epochs", "3"],
            "region": "us-central1",
            "scheduling": {"maxRunningTime": "7200s", "priority": 5},
        },
        "createTime": "2024-03-01T10:00:00.123456Z",
        "state": "QUEUED",
    }
    return parse_job(body).model_copy(update=fields)


def with_state(state: JobState) -> Callable[[StoredJob], StoredJob]:
    def change(stored: StoredJob) -> StoredJob:
        return StoredJob(stored.project, stored.job.model_copy(update={"state": state}), stored.seq)

    return change


def list_all(
    store: SqlMetadataStore, project: str, query: JobQuery = ALL, page_size: int = 100
) -> list[StoredJob]:
    found: list[StoredJob] = []
    token = None
    while True:
        page, token = store.list_jobs(project, query, page_size=page_size, page_token=token)
        found.extend(page)
        if token is None:
            return found


def ids(jobs: list[StoredJob]) -> list[str]:
    return [stored.job_id for stored in jobs]


def log_lines(count: int, *, task: str = "master-replica-0", start: int = 0) -> list[LogEntry]:
    return [
        LogEntry(time=T0 + timedelta(microseconds=i), task_name=task, message=f"line {i}")
        for i in range(start, start + count)
    ]


def operation(project: str, op_id: str, **fields: Any) -> dict[str, Any]:
    return {
        "name": f"projects/{project}/operations/{op_id}",
        "metadata": {"@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"},
        "done": False,
        **fields,
    }


class TestMetadataStoreContract:
    # --- create / get ----------------------------------------------------------------

    def test_create_assigns_seq_and_etag_and_keeps_every_other_field(
        self, store: SqlMetadataStore
    ) -> None:
        job = training_job("census_1")
        stored = store.create_job("proj", job)
        assert stored.project == "proj" and stored.job_id == "census_1" and stored.seq > 0
        assert isinstance(stored.job.etag, bytes) and stored.job.etag
        assert stored.job.model_copy(update={"etag": None}) == job
        assert stored.runtime == JobRuntime()
        assert stored.state is JobState.QUEUED

    def test_create_leaves_state_and_times_to_the_service(self, store: SqlMetadataStore) -> None:
        stored = store.create_job("proj", Job(job_id="bare"))
        assert stored.job.state is None and stored.job.create_time is None
        assert stored.state is JobState.STATE_UNSPECIFIED
        assert store.get_job("proj", "bare") == stored

    def test_get_round_trips_exactly(self, store: SqlMetadataStore) -> None:
        created = store.create_job("proj", training_job("census_1"))
        fetched = store.get_job("proj", "census_1")
        assert fetched == created
        assert fetched.job.create_time == T0 and fetched.job.create_time.tzinfo is not None
        assert fetched.job.to_api() == created.job.to_api()

    def test_seq_strictly_increases_across_projects(self, store: SqlMetadataStore) -> None:
        seqs = [store.create_job(f"p{i % 3}", Job(job_id=f"j{i}")).seq for i in range(9)]
        assert seqs == sorted(seqs) and len(set(seqs)) == 9

    def test_job_ids_are_never_reused_in_a_project(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="census_1"))
        store.update_job("proj", "census_1", with_state(JobState.SUCCEEDED))
        with pytest.raises(AlreadyExists) as caught:
            store.create_job("proj", training_job("census_1"))
        assert (
            caught.value.field == "jobId" and "projects/proj/jobs/census_1" in caught.value.message
        )
        other = store.create_job("other", Job(job_id="census_1"))
        assert other.project == "other"
        assert store.get_job("proj", "census_1").state is JobState.SUCCEEDED

    def test_missing_job_is_not_found(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="census_1"))
        with pytest.raises(NotFound, match="projects/proj/jobs/nope"):
            store.get_job("proj", "nope")
        with pytest.raises(NotFound, match="projects/other/jobs/census_1"):
            store.get_job("other", "census_1")

    def test_a_job_without_id_is_refused(self, store: SqlMetadataStore) -> None:
        with pytest.raises(InvalidArgument) as caught:
            store.create_job("proj", Job())
        assert caught.value.field == "jobId"

    # --- update ----------------------------------------------------------------------

    def test_update_persists_job_and_runtime_and_changes_the_etag(
        self, store: SqlMetadataStore
    ) -> None:
        created = store.create_job("proj", training_job("census_1"))
        runtime = JobRuntime(
            attempt=2,
            run={"pid": 123, "hosts": ["a", "b"]},
            log_cursor={"master-replica-0": 42},
            python="/venvs/run/bin/python",
            cancel_requested=True,
            cpu_seconds=12.5,
            notes=("retried after preemption",),
            trials={
                "1": TrialRun(run_id="proj/census_1/2/1", active=False, error="exit 3"),
                "2": TrialRun(
                    run_id="proj/census_1/2/2",
                    handle={"executor": "local", "replicas": [{"pid": 7}]},
                    log_cursor={"master-replica-0": 9},
                    cpu_seconds=1.5,
                    metric_time=1764288000.25,
                    stderr_tail=("a", "b"),
                ),
            },
        )
        started = T0 + timedelta(seconds=5)

        def change(stored: StoredJob) -> StoredJob:
            assert stored == created
            job = stored.job.model_copy(update={"state": JobState.RUNNING, "start_time": started})
            return StoredJob(stored.project, job, stored.seq, runtime)

        updated = store.update_job("proj", "census_1", change)
        assert updated.seq == created.seq and updated.runtime == runtime
        assert updated.state is JobState.RUNNING and updated.job.start_time == started
        assert updated.job.etag != created.job.etag
        assert store.get_job("proj", "census_1") == updated

    def test_etag_changes_on_every_update_and_callers_cannot_set_it(
        self, store: SqlMetadataStore
    ) -> None:
        etags = [store.create_job("proj", Job(job_id="j")).job.etag]
        for _ in range(5):
            etags.append(store.update_job("proj", "j", lambda stored: stored).job.etag)
        forced = store.update_job(
            "proj",
            "j",
            lambda s: StoredJob(s.project, s.job.model_copy(update={"etag": b"mine"}), s.seq),
        )
        etags.append(forced.job.etag)
        assert len(set(etags)) == len(etags) and b"mine" not in etags
        assert store.get_job("proj", "j").job.etag == forced.job.etag

    def test_update_of_a_missing_job_is_not_found(self, store: SqlMetadataStore) -> None:
        with pytest.raises(NotFound, match="projects/proj/jobs/nope"):
            store.update_job("proj", "nope", lambda stored: stored)

    def test_whatever_change_raises_aborts_the_update(self, store: SqlMetadataStore) -> None:
        created = store.create_job("proj", Job(job_id="j", state=JobState.SUCCEEDED))

        def refuse(stored: StoredJob) -> StoredJob:
            raise FailedPrecondition("job is finished")

        with pytest.raises(FailedPrecondition, match="job is finished"):
            store.update_job("proj", "j", refuse)
        assert store.get_job("proj", "j") == created

    def test_change_may_not_alter_identity(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        with pytest.raises(Internal):
            store.update_job(
                "proj",
                "j",
                lambda s: StoredJob(s.project, s.job.model_copy(update={"job_id": "k"}), s.seq),
            )
        with pytest.raises(Internal):
            store.update_job("proj", "j", lambda s: StoredJob("elsewhere", s.job, s.seq))

    # --- jobs_in_states --------------------------------------------------------------

    def test_jobs_in_states_spans_projects_in_queue_order(self, store: SqlMetadataStore) -> None:
        for i in range(6):
            store.create_job(f"p{i % 2}", Job(job_id=f"j{i}", state=JobState.QUEUED))
        store.update_job("p1", "j1", with_state(JobState.RUNNING))
        store.update_job("p0", "j4", with_state(JobState.CANCELLED))
        queued = store.jobs_in_states([JobState.QUEUED])
        assert ids(queued) == ["j0", "j2", "j3", "j5"]
        assert [s.seq for s in queued] == sorted(s.seq for s in queued)
        active = store.jobs_in_states({JobState.QUEUED, JobState.RUNNING})
        assert ids(active) == ["j0", "j1", "j2", "j3", "j5"]
        assert store.jobs_in_states([]) == []
        assert store.jobs_in_states([JobState.FAILED]) == []

    # --- count_jobs_by_state ---------------------------------------------------------

    def test_count_jobs_by_state_names_every_state_even_when_empty(
        self, store: SqlMetadataStore
    ) -> None:
        assert store.count_jobs_by_state() == dict.fromkeys(JobState, 0)

    def test_count_jobs_by_state_spans_projects_and_follows_updates(
        self, store: SqlMetadataStore
    ) -> None:
        for i in range(7):
            store.create_job(f"p{i % 3}", Job(job_id=f"j{i}", state=JobState.QUEUED))
        store.create_job("p0", Job(job_id="unset"))  # no state: stored as STATE_UNSPECIFIED
        store.update_job("p1", "j1", with_state(JobState.RUNNING))
        store.update_job("p2", "j2", with_state(JobState.RUNNING))
        store.update_job("p0", "j3", with_state(JobState.SUCCEEDED))

        counts = store.count_jobs_by_state()

        expected = dict.fromkeys(JobState, 0)
        expected.update(
            {
                JobState.QUEUED: 4,
                JobState.RUNNING: 2,
                JobState.SUCCEEDED: 1,
                JobState.STATE_UNSPECIFIED: 1,
            }
        )
        assert counts == expected
        every_job = store.jobs_in_states(list(JobState))
        assert sum(counts.values()) == len(every_job) == 8
        assert all(counts[state] == len(store.jobs_in_states([state])) for state in JobState)

    # --- list_jobs -------------------------------------------------------------------

    def test_list_is_newest_first_and_scoped_to_the_project(self, store: SqlMetadataStore) -> None:
        for i in range(5):
            store.create_job("proj", training_job(f"j{i}"))
            store.create_job("other", Job(job_id=f"x{i}"))
        page, token = store.list_jobs("proj", ALL, page_size=100, page_token=None)
        assert ids(page) == ["j4", "j3", "j2", "j1", "j0"] and token is None
        assert page[0] == store.get_job("proj", "j4")
        assert store.list_jobs("nobody", ALL, page_size=10, page_token=None) == ([], None)

    def test_pages_cover_everything_once(self, store: SqlMetadataStore) -> None:
        for i in range(25):
            store.create_job("proj", Job(job_id=f"j{i:02d}"))
        sizes = []
        token = None
        seen: list[str] = []
        while True:
            page, token = store.list_jobs("proj", ALL, page_size=10, page_token=token)
            sizes.append(len(page))
            seen += ids(page)
            if token is None:
                break
            assert isinstance(token, str) and token
        assert sizes == [10, 10, 5]
        assert seen == [f"j{i:02d}" for i in reversed(range(25))]

    def test_a_full_last_page_has_no_token(self, store: SqlMetadataStore) -> None:
        for i in range(10):
            store.create_job("proj", Job(job_id=f"j{i}"))
        first, token = store.list_jobs("proj", ALL, page_size=5, page_token=None)
        second, token = store.list_jobs("proj", ALL, page_size=5, page_token=token)
        assert len(first) == len(second) == 5 and token is None

    def test_paging_is_stable_while_jobs_are_created(self, store: SqlMetadataStore) -> None:
        for i in range(6):
            store.create_job("proj", Job(job_id=f"old{i}"))
        first, token = store.list_jobs("proj", ALL, page_size=3, page_token=None)
        for i in range(4):
            store.create_job("proj", Job(job_id=f"new{i}"))
        second, token = store.list_jobs("proj", ALL, page_size=3, page_token=token)
        assert ids(first) == ["old5", "old4", "old3"]
        assert ids(second) == ["old2", "old1", "old0"] and token is None
        assert ids(list_all(store, "proj"))[:4] == ["new3", "new2", "new1", "new0"]

    def test_states_and_job_id_prefix_select_in_the_database(self, store: SqlMetadataStore) -> None:
        names = ["census_1", "census_2", "censusX", "Census_3", "rnn_1", "census%1"]
        for name in names:
            store.create_job("proj", Job(job_id=name, state=JobState.QUEUED))
        store.update_job("proj", "census_2", with_state(JobState.FAILED))
        store.update_job("proj", "rnn_1", with_state(JobState.FAILED))
        by_prefix = list_all(store, "proj", JobQuery(job_id_prefix="census_"))
        # '_' and '%' are not wildcards, and the match is case-sensitive.
        assert ids(by_prefix) == ["census_2", "census_1"]
        assert ids(list_all(store, "proj", JobQuery(job_id_prefix="census%"))) == ["census%1"]
        failed = list_all(store, "proj", JobQuery(states=frozenset({JobState.FAILED})))
        assert ids(failed) == ["rnn_1", "census_2"]
        both = JobQuery(states=frozenset({JobState.FAILED}), job_id_prefix="census")
        assert ids(list_all(store, "proj", both)) == ["census_2"]
        assert store.list_jobs(
            "proj", JobQuery(states=frozenset()), page_size=10, page_token=None
        ) == ([], None)

    def test_labels_select_in_the_database(self, store: SqlMetadataStore) -> None:
        labelled = {
            "a": {"team": "x", "cost-center": "r-d"},
            "b": {"team": "x", "cost-center": ""},
            "c": {"team": "y", "cost-center": "r-d"},
            "d": {"team": "X"},
            "e": {},
        }
        for job_id, labels in labelled.items():
            store.create_job("proj", Job(job_id=job_id, labels=labels or None))

        def select(**labels: str) -> list[str]:
            return ids(list_all(store, "proj", JobQuery(labels=labels)))

        assert select(team="x") == ["b", "a"]
        assert select(**{"team": "x", "cost-center": "r-d"}) == ["a"]
        assert select(**{"cost-center": ""}) == ["b"]
        assert select(team="nope") == []

    def test_predicate_pages_are_full(self, store: SqlMetadataStore) -> None:
        for i in range(60):
            store.create_job("proj", Job(job_id=f"j{i:02d}", labels={"n": str(i)}))
        query = JobQuery(predicate=lambda job: int((job.labels or {})["n"]) % 7 == 0)
        pages: list[list[StoredJob]] = []
        token = None
        while True:
            page, token = store.list_jobs("proj", query, page_size=3, page_token=token)
            pages.append(page)
            if token is None:
                break
        found = [job for page in pages for job in page]
        assert ids(found) == [f"j{i:02d}" for i in (56, 49, 42, 35, 28, 21, 14, 7, 0)]
        assert all(len(page) == 3 for page in pages[:3])
        assert all(not page for page in pages[3:])

    def test_a_parsed_filter_selects_what_its_predicate_selects(
        self, store: SqlMetadataStore
    ) -> None:
        teams = ["x", "y", "z"]
        for i in range(30):
            job = Job(job_id=f"job{i}", labels={"team": teams[i % 3]}, state=JobState.QUEUED)
            store.create_job("proj", job)
            if i % 4 == 0:
                store.update_job("proj", f"job{i}", with_state(JobState.SUCCEEDED))
        query = parse_job_filter("labels.team=x AND state=SUCCEEDED jobId:job*")
        assert query.labels and query.states and query.job_id_prefix  # all pushed down
        found = ids(list_all(store, "proj", query, page_size=2))
        assert found == [f"job{i}" for i in reversed(range(30)) if i % 3 == 0 and i % 4 == 0]

    @pytest.mark.parametrize("token", ["garbage", "!!!!", "AAAA", "ééé", "A" * 20, "a b"])
    def test_garbage_page_tokens_are_invalid_arguments(
        self, store: SqlMetadataStore, token: str
    ) -> None:
        store.create_job("proj", Job(job_id="j"))
        with pytest.raises(InvalidArgument) as caught:
            store.list_jobs("proj", ALL, page_size=1, page_token=token)
        assert caught.value.field == "pageToken"
        with pytest.raises(InvalidArgument) as caught:
            store.list_operations("proj", page_size=1, page_token=token)
        assert caught.value.field == "pageToken"

    def test_tampered_or_foreign_page_tokens_are_invalid_arguments(
        self, store: SqlMetadataStore
    ) -> None:
        for i in range(3):
            store.create_job("proj", Job(job_id=f"j{i}"))
            store.create_operation("proj", operation("proj", f"op{i}"))
        _, token = store.list_jobs("proj", ALL, page_size=1, page_token=None)
        _, op_token = store.list_operations("proj", page_size=1, page_token=None)
        assert token is not None and op_token is not None
        raw = bytearray(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        raw[7] ^= 1  # the seq's last byte
        tampered = base64.urlsafe_b64encode(bytes(raw)).decode().rstrip("=")
        for bad in (tampered, token[:-1], token + "A", token + "=="):
            with pytest.raises(InvalidArgument):
                store.list_jobs("proj", ALL, page_size=1, page_token=bad)
        with pytest.raises(InvalidArgument):
            store.list_jobs("other", ALL, page_size=1, page_token=token)
        with pytest.raises(InvalidArgument):
            store.list_jobs("proj", ALL, page_size=1, page_token=op_token)
        with pytest.raises(InvalidArgument):
            store.list_operations("proj", page_size=1, page_token=token)

    def test_an_empty_page_token_means_the_first_page(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        assert ids(store.list_jobs("proj", ALL, page_size=5, page_token="")[0]) == ["j"]

    # --- logs ------------------------------------------------------------------------

    def test_logs_get_consecutive_seqs_and_round_trip(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        entries = [
            LogEntry(T0, "master-replica-0", "hello", seq=99),
            LogEntry(T0 + timedelta(microseconds=1), "worker-replica-1", "oops", "stderr", "ERROR"),
            LogEntry(T0, "master-replica-0", "trial", trial_id="3", severity="WARNING"),
            LogEntry(T0, "service", "Job started. ünïcode ✓", stream="service"),
        ]
        store.append_logs("proj", "j", entries[:2])
        store.append_logs("proj", "j", entries[2:])
        read = store.read_logs("proj", "j")
        assert [entry.seq for entry in read] == [1, 2, 3, 4]
        expected = [
            LogEntry(e.time, e.task_name, e.message, e.stream, e.severity, e.trial_id, seq=i + 1)
            for i, e in enumerate(entries)
        ]
        assert read == expected
        assert all(entry.time.tzinfo is not None for entry in read)

    def test_read_logs_after_task_name_and_limit(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        store.create_job("proj", Job(job_id="k"))
        lines = [*log_lines(5, task="master-replica-0"), *log_lines(5, task="worker-replica-0")]
        store.append_logs("proj", "j", lines)
        store.append_logs("proj", "k", log_lines(2))
        assert [e.seq for e in store.read_logs("proj", "j", after=7)] == [8, 9, 10]
        worker = store.read_logs("proj", "j", task_name="worker-replica-0", after=6)
        assert [e.seq for e in worker] == [7, 8, 9, 10]
        assert [e.seq for e in store.read_logs("proj", "j", after=2, limit=3)] == [3, 4, 5]
        assert store.read_logs("proj", "j", after=10) == []
        assert [e.seq for e in store.read_logs("proj", "k")] == [1, 2]

    def test_logs_of_a_missing_job_are_not_found(self, store: SqlMetadataStore) -> None:
        with pytest.raises(NotFound, match="projects/proj/jobs/nope"):
            store.append_logs("proj", "nope", log_lines(1))
        with pytest.raises(NotFound, match="projects/proj/jobs/nope"):
            store.read_logs("proj", "nope")
        with pytest.raises(NotFound):
            store.append_logs("proj", "nope", [])

    def test_nul_characters_in_log_lines_are_replaced(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        store.append_logs("proj", "j", [LogEntry(T0, "master-replica-0", "a\x00b")])
        assert store.read_logs("proj", "j")[0].message == "a\ufffdb"

    def test_appending_nothing_is_fine(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        store.append_logs("proj", "j", [])
        store.append_logs("proj", "j", log_lines(2))
        assert [e.seq for e in store.read_logs("proj", "j")] == [1, 2]

    def test_bulk_appends(self, store: SqlMetadataStore) -> None:
        store.create_job("proj", Job(job_id="j"))
        store.append_logs("proj", "j", log_lines(5000))
        read = store.read_logs("proj", "j", after=4990, limit=100)
        assert [e.message for e in read] == [f"line {i}" for i in range(4990, 5000)]

    def test_concurrent_appenders_never_collide(self, open_store: OpenStore) -> None:
        stores = [open_store(), open_store()]
        stores[0].create_job("proj", Job(job_id="j"))
        errors: list[BaseException] = []

        def append(worker: int) -> None:
            try:
                for batch in range(20):
                    task = f"worker-replica-{worker}"
                    lines = log_lines(3, task=task, start=batch * 3)
                    stores[worker % 2].append_logs("proj", "j", lines)
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=append, args=(w,)) for w in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        read = stores[0].read_logs("proj", "j", limit=10_000)
        assert [e.seq for e in read] == list(range(1, 241))
        for worker in range(4):
            mine = [e.message for e in read if e.task_name == f"worker-replica-{worker}"]
            assert mine == [f"line {i}" for i in range(60)]  # each batch stays in order

    # --- operations ------------------------------------------------------------------

    def test_operations_round_trip(self, store: SqlMetadataStore) -> None:
        body = operation("proj", "create_census_v1-1", metadata={"a": [1, 2.5, None, "x"]})
        assert store.create_operation("proj", body) == body
        assert store.get_operation(body["name"]) == body
        with pytest.raises(AlreadyExists):
            store.create_operation("proj", body)
        with pytest.raises(NotFound, match="projects/proj/operations/nope"):
            store.get_operation("projects/proj/operations/nope")

    def test_operation_names_must_belong_to_the_project(self, store: SqlMetadataStore) -> None:
        for name in ("projects/other/operations/x", "x", None, "projects/proj/operations/"):
            with pytest.raises(InvalidArgument):
                store.create_operation("proj", {"name": name, "done": False})

    def test_operations_list_newest_first_with_pages(self, store: SqlMetadataStore) -> None:
        for i in range(5):
            store.create_operation("proj", operation("proj", f"op{i}"))
            store.create_operation("other", operation("other", f"op{i}"))
        names: list[str] = []
        token = None
        while True:
            page, token = store.list_operations("proj", page_size=2, page_token=token)
            names += [body["name"].rsplit("/", 1)[1] for body in page]
            if token is None:
                break
        assert names == ["op4", "op3", "op2", "op1", "op0"]
        assert store.list_operations("nobody", page_size=5, page_token=None) == ([], None)

    def test_update_operation(self, store: SqlMetadataStore) -> None:
        body = store.create_operation("proj", operation("proj", "op"))
        response = {"@type": "type.googleapis.com/google.cloud.ml.v1.Version", "name": "v1"}

        def finish(current: Mapping[str, Any]) -> Mapping[str, Any]:
            assert current == body
            return {**current, "done": True, "response": response}

        done = store.update_operation(body["name"], finish)
        assert done == {**body, "done": True, "response": response}
        assert store.get_operation(body["name"]) == done
        with pytest.raises(NotFound):
            store.update_operation("projects/proj/operations/nope", finish)
        with pytest.raises(InvalidArgument):
            store.update_operation(body["name"], lambda c: {**c, "name": "projects/proj/x"})

        def refuse(current: Mapping[str, Any]) -> Mapping[str, Any]:
            raise FailedPrecondition("no")

        with pytest.raises(FailedPrecondition):
            store.update_operation(body["name"], refuse)
        assert store.get_operation(body["name"]) == done

    # --- concurrency, persistence, migrations ----------------------------------------

    def test_concurrent_updates_lose_nothing(self, open_store: OpenStore) -> None:
        stores = [open_store(), open_store()]
        stores[0].create_job("proj", Job(job_id="counter"))
        threads_count, increments = 6, 25
        errors: list[BaseException] = []

        def bump(stored: StoredJob) -> StoredJob:
            runtime = JobRuntime(attempt=stored.runtime.attempt + 1)
            return StoredJob(stored.project, stored.job, stored.seq, runtime)

        def work(worker: int) -> None:
            try:
                for _ in range(increments):
                    stores[worker % 2].update_job("proj", "counter", bump)
            except BaseException as error:  # reported below, in the test's thread
                errors.append(error)

        threads = [threading.Thread(target=work, args=(w,)) for w in range(threads_count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert errors == []
        final = stores[0].get_job("proj", "counter")
        assert final.runtime.attempt == threads_count * increments

    def test_racing_creates_of_one_id_admit_exactly_one(self, open_store: OpenStore) -> None:
        stores = [open_store(), open_store()]
        outcomes: list[str] = []

        def create(worker: int) -> None:
            try:
                stores[worker % 2].create_job("proj", Job(job_id="same"))
                outcomes.append("created")
            except AlreadyExists:
                outcomes.append("exists")

        threads = [threading.Thread(target=create, args=(w,)) for w in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(outcomes) == ["created"] + ["exists"] * 5

    def test_two_processes_lose_nothing(self, store_url: str, open_store: OpenStore) -> None:
        store = open_store()
        store.create_job("proj", Job(job_id="counter"))
        increments = 100
        workers = [
            subprocess.Popen(
                [sys.executable, "-c", _INCREMENTER, store_url, str(increments)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(2)
        ]
        for worker in workers:
            _, stderr = worker.communicate(timeout=120)
            assert worker.returncode == 0, stderr
        assert store.get_job("proj", "counter").runtime.attempt == 2 * increments

    def test_everything_survives_close_and_reopen(self, open_store: OpenStore) -> None:
        first = open_store()
        created = first.create_job("proj", training_job("census_1"))
        first.append_logs("proj", "census_1", log_lines(3))
        body = first.create_operation("proj", operation("proj", "op"))
        first.close()
        again = open_store()
        assert again.get_job("proj", "census_1") == created
        assert [e.message for e in again.read_logs("proj", "census_1")] == [
            "line 0",
            "line 1",
            "line 2",
        ]
        assert again.get_operation(body["name"]) == body
        assert again.create_job("proj", Job(job_id="next")).seq > created.seq

    def test_migrations_are_idempotent_and_match_the_schema(
        self, store_url: str, open_store: OpenStore
    ) -> None:
        open_store().create_job("proj", Job(job_id="j"))
        second = open_store()
        assert second.get_job("proj", "j").job_id == "j"
        engine = create_engine(normalise_url(store_url))
        try:
            with engine.connect() as connection:
                versions = connection.execute(text("SELECT version_num FROM alembic_version"))
                assert versions.scalars().all() == ["0002_models"]
                diff = compare_metadata(MigrationContext.configure(connection), metadata)
        finally:
            engine.dispose()
        assert diff == []

    def test_unreachable_databases_are_unavailable(self) -> None:
        with pytest.raises(Unavailable) as caught:
            SqlMetadataStore("postgresql://someone:s3cret@127.0.0.1:1/mlengine")
        assert "127.0.0.1:1/mlengine" in caught.value.message
        assert "s3cret" not in caught.value.message


# A separate process that increments the counter job ``count`` times.
_INCREMENTER = """
import sys
from mlengine.stores.base import JobRuntime, StoredJob
from mlengine.stores.sql import SqlMetadataStore

def bump(stored):
    return StoredJob(stored.project, stored.job, stored.seq,
                     JobRuntime(attempt=stored.runtime.attempt + 1))

store = SqlMetadataStore(sys.argv[1])
for _ in range(int(sys.argv[2])):
    store.update_job("proj", "counter", bump)
store.close()
"""


# --- backend specifics ---------------------------------------------------------------------


def test_sqlite_connections_use_wal_busy_timeout_and_foreign_keys(tmp_path: Path) -> None:
    store = SqlMetadataStore(f"sqlite:///{tmp_path}/a/b/mlengine.db", busy_timeout=12)
    try:
        engine = store._db.engine  # the pragmas are per connection, so look at one
        with engine.connect() as connection:
            pragma = {
                name: connection.exec_driver_sql(f"PRAGMA {name}").scalar()
                for name in ("journal_mode", "busy_timeout", "foreign_keys", "synchronous")
            }
    finally:
        store.close()
    assert pragma == {
        "journal_mode": "wal",
        "busy_timeout": 12000,
        "foreign_keys": 1,
        "synchronous": 1,
    }
    assert (tmp_path / "a" / "b" / "mlengine.db").is_file()


def test_sqlite_in_memory_works_across_threads() -> None:
    store = SqlMetadataStore("sqlite:///:memory:")
    try:
        store.create_job("proj", Job(job_id="counter"))

        def bump(stored: StoredJob) -> StoredJob:
            runtime = JobRuntime(attempt=stored.runtime.attempt + 1)
            return StoredJob(stored.project, stored.job, stored.seq, runtime)

        def work() -> None:
            for _ in range(20):
                store.update_job("proj", "counter", bump)

        threads = [threading.Thread(target=work) for _ in range(4)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert store.get_job("proj", "counter").runtime.attempt == 80
    finally:
        store.close()


def test_sqlite_locked_beyond_the_busy_timeout_is_unavailable(tmp_path: Path) -> None:
    path = tmp_path / "mlengine.db"
    store = SqlMetadataStore(f"sqlite:///{path}", busy_timeout=0.2)
    store.create_job("proj", Job(job_id="j"))
    blocker = sqlite3.connect(path, isolation_level=None)
    try:
        blocker.execute("BEGIN IMMEDIATE")
        with pytest.raises(Unavailable) as caught:
            store.update_job("proj", "j", lambda stored: stored)
        assert str(path) in caught.value.message and "locked" in caught.value.message
        assert store.get_job("proj", "j").job_id == "j"  # readers are not blocked (WAL)
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
        store.close()


@pytest.mark.parametrize(
    ("url", "driver"),
    [
        ("postgresql://u@h/db", "postgresql+psycopg"),
        ("postgres://u@h/db", "postgresql+psycopg"),
        ("postgresql+psycopg://u@h/db", "postgresql+psycopg"),
        ("sqlite:///x.db", "sqlite"),
    ],
)
def test_database_urls_map_to_our_drivers(url: str, driver: str) -> None:
    assert normalise_url(url).drivername == driver


@pytest.mark.parametrize("url", ["mysql://u@h/db", "not a url", "postgresql+asyncpg://u@h/db"])
def test_unsupported_database_urls_are_invalid(url: str) -> None:
    with pytest.raises(InvalidArgument):
        SqlMetadataStore(url)
