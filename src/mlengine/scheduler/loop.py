"""The scheduler loop: QUEUED → PREPARING → RUNNING → SUCCEEDED | FAILED, and cancels.

One :meth:`Scheduler.tick` looks at every active job once; the server calls it every
``scheduler_interval`` seconds on one thread, tests call it by hand. All state is in the
store, so a restarted server's first tick simply carries on: running jobs are re-attached
through their stored executor handle, PREPARING jobs are prepared again (nothing of theirs
ran yet), QUEUED jobs wait their turn. Nothing runs twice: a run's id is recorded before its
replicas start, and after a crash the executor is asked whether that run exists
(``find_run``) before anything is started again.

Placement: a job leaves the queue (in priority, then submission order, with backfilling)
when the executor says its plan fits next to the running ones. A plan that can never fit
fails at once with the executor's reason. Package installation happens in PREPARING on a
small thread pool so a slow ``pip install`` never stalls the loop.
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from mlengine.domain.durations import format_duration
from mlengine.domain.errors import MlEngineError
from mlengine.domain.replicas import ReplicaPlan
from mlengine.domain.resources import JobState
from mlengine.domain.training_plans import plan_for_training_input
from mlengine.executors.base import Executor, RunHandle, RunSpec, RunStatus
from mlengine.executors.cluster_env import RunIdentity
from mlengine.scheduler.records import line_severity as line_severity
from mlengine.scheduler.records import log_entry, with_units
from mlengine.scheduler.tuning import TuningRunner, active_handles, is_tuning_job
from mlengine.services.jobs import queue_order, utc_now
from mlengine.services.run_preparation import PreparedRun, RunPreparer
from mlengine.stores.base import LogEntry, MetadataStore, StoredJob

LOG = logging.getLogger(__name__)
SERVICE = "service"
ACTIVE = (JobState.QUEUED, JobState.PREPARING, JobState.RUNNING, JobState.CANCELLING)
#: scheduling.maxRunningTime when the job sets none (the v1 default: 7 days).
DEFAULT_MAX_RUNNING_TIME = timedelta(days=7)


@dataclass(frozen=True)
class _Key:
    project: str
    job_id: str


class Scheduler:
    """Moves jobs through their states. Not thread-safe: call :meth:`tick` from one thread."""

    def __init__(
        self,
        store: MetadataStore,
        executor: Executor,
        preparer: RunPreparer,
        *,
        clock: Callable[[], datetime] = utc_now,
        prepare_workers: int = 2,
        base_env: dict[str, str] | None = None,
    ) -> None:
        self._store = store
        self._executor = executor
        self._preparer = preparer
        self._clock = clock
        self._base_env = dict(base_env or {})
        self._pool = (
            cf.ThreadPoolExecutor(max_workers=prepare_workers, thread_name_prefix="prepare")
            if prepare_workers
            else None
        )
        self._preparing: dict[_Key, cf.Future[PreparedRun]] = {}
        self._tuning = TuningRunner(
            store, executor, clock=clock, base_env=self._base_env, log=self._log
        )

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    # -- the loop ---------------------------------------------------------------------------

    def tick(self) -> None:
        """One pass over every active job. Errors on one job never stop the others."""
        jobs = self._store.jobs_in_states(ACTIVE)
        for stored in jobs:
            self._guard(stored, self._advance)
        self._admit([j for j in jobs if j.state is JobState.QUEUED])

    def _guard(self, stored: StoredJob, step: Callable[[StoredJob], None]) -> None:
        try:
            step(stored)
        except MlEngineError as exc:
            self._fail(stored, exc.message)
        except Exception as exc:  # a bug or an I/O error must not take the loop down
            LOG.exception("scheduler step failed for %s/%s", stored.project, stored.job_id)
            self._fail(stored, f"Internal error while running the job: {exc}")

    def _advance(self, stored: StoredJob) -> None:
        state = stored.state
        if state is JobState.CANCELLING:
            self._finish_cancel(stored)
        elif state is JobState.RUNNING and is_tuning_job(stored):
            self._watch_tuning(stored)
        elif state is JobState.RUNNING:
            self._watch(stored)
        elif state is JobState.PREPARING:
            self._continue_preparing(stored)
        elif state is JobState.QUEUED:
            self._check_wait_deadline(stored)

    # -- QUEUED → PREPARING ------------------------------------------------------------------

    def _admit(self, queued: Sequence[StoredJob]) -> None:
        running = self._running_handles()
        pending = [_plan(j) for j in self._pending_starts()]
        for stored in queue_order(queued):
            current = self._store.get_job(stored.project, stored.job_id)
            if current.state is not JobState.QUEUED:
                continue
            plan = _plan(current)
            reason = self._executor.unplaceable_reason(plan)
            if reason:
                self._fail(current, f"The job can never run on this executor: {reason}")
                continue
            if not self._executor.fits(plan, running, pending):
                self._note_waiting(current)
                continue
            started = self._begin_preparing(current)
            handle = _handle(started)
            if handle is not None:
                running.append(handle)
            elif started.state is JobState.PREPARING:
                pending.append(plan)

    def _pending_starts(self) -> list[StoredJob]:
        return [j for j in self._store.jobs_in_states([JobState.PREPARING]) if not j.runtime.run]

    def _running_handles(self) -> list[RunHandle]:
        rows = self._store.jobs_in_states([JobState.RUNNING, JobState.CANCELLING])
        handles = [handle for handle in map(_handle, rows) if handle is not None]
        return handles + [h for row in rows for h in active_handles(row)]

    def _note_waiting(self, stored: StoredJob) -> None:
        note = "waiting for resources"
        if note in stored.runtime.notes:
            return
        self._log(
            stored,
            "Waiting for resources: the job's replicas do not fit next to the running jobs yet.",
        )
        self._update(
            stored, lambda s: replace(s, runtime=replace(s.runtime, notes=(*s.runtime.notes, note)))
        )

    def _begin_preparing(self, stored: StoredJob) -> StoredJob:
        now = self._clock()

        def change(s: StoredJob) -> StoredJob:
            if s.state is not JobState.QUEUED:
                return s
            job = s.job.model_copy(
                update={"state": JobState.PREPARING, "start_time": now, "job_position": None}
            )
            return replace(s, job=job, runtime=replace(s.runtime, attempt=s.runtime.attempt + 1))

        updated = self._update(stored, change)
        if updated.state is JobState.PREPARING:
            self._log(updated, "Preparing the job: installing its packages.")
            self._guard(updated, self._continue_preparing)
        return self._store.get_job(stored.project, stored.job_id)

    # -- PREPARING → RUNNING ------------------------------------------------------------------

    def _continue_preparing(self, stored: StoredJob) -> None:
        if self._check_wait_deadline(stored):
            return
        run = stored.runtime.run or {}
        if run.get("run_id"):
            self._resume_start(stored, str(run["run_id"]))
            return
        key = _Key(stored.project, stored.job_id)
        future = self._preparing.get(key)
        if future is None:
            future = self._submit_prepare(stored)
            self._preparing[key] = future
        if not future.done():
            return
        del self._preparing[key]
        self._start(stored, future.result())  # raises the preparation's error, if any

    def _submit_prepare(self, stored: StoredJob) -> cf.Future[PreparedRun]:
        ti = stored.job.training_input
        assert ti is not None
        args = (stored.project, stored.job_id, stored.runtime.attempt, ti)
        if self._pool is None:
            future: cf.Future[PreparedRun] = cf.Future()
            try:
                future.set_result(self._preparer.prepare(*args))
            except Exception as exc:  # delivered through the future like the pooled path
                future.set_exception(exc)
            return future
        return self._pool.submit(self._preparer.prepare, *args)

    def _start(self, stored: StoredJob, prepared: PreparedRun) -> None:
        plan = _plan(stored)
        run_id = f"{stored.project}/{stored.job_id}/{stored.runtime.attempt}"
        if is_tuning_job(stored):
            started = self._tuning.begin(stored, run_id, prepared.python, prepared.workdir)
            if started.state is JobState.RUNNING:
                self._guard(started, self._watch_tuning)
            return
        # Record the run id first: after a crash between start() and the next write, the
        # executor can find the run by id and nothing is started twice.
        stored = self._update(
            stored,
            lambda s: replace(
                s, runtime=replace(s.runtime, run={"run_id": run_id}, python=prepared.python)
            ),
        )
        if stored.state is not JobState.PREPARING:
            return
        spec = self._spec(stored, plan, run_id, prepared)
        handle = self._executor.start(spec, self._running_handles())
        self._mark_running(stored, run_id, handle, plan)

    def _resume_start(self, stored: StoredJob, run_id: str) -> None:
        handle = self._executor.find_run(run_id)
        if handle is not None:
            self._log(stored, f"Re-attached to run {run_id} after a restart.")
            self._mark_running(stored, run_id, handle, _plan(stored))
            return
        self._update(stored, lambda s: replace(s, runtime=replace(s.runtime, run=None)))

    def _mark_running(
        self, stored: StoredJob, run_id: str, handle: RunHandle, plan: ReplicaPlan
    ) -> None:
        def change(s: StoredJob) -> StoredJob:
            runtime = replace(s.runtime, run={"run_id": run_id, "handle": dict(handle)})
            if s.state is JobState.PREPARING:
                return replace(
                    s, job=s.job.model_copy(update={"state": JobState.RUNNING}), runtime=runtime
                )
            return replace(s, runtime=runtime)  # cancelled meanwhile: the next tick stops it

        self._update(stored, change)
        names = ", ".join(r.name for r in plan.replicas())
        cpus = self._executor.capacity().cpus
        self._log(
            stored,
            f"Started {len(plan.replicas())} replica(s): {names}. On the local "
            f"executor CPU and memory requests are soft: the replicas share this "
            f"machine's {cpus:g} CPUs.",
        )

    def _spec(
        self, stored: StoredJob, plan: ReplicaPlan, run_id: str, prepared: PreparedRun
    ) -> RunSpec:
        ti = stored.job.training_input
        assert ti is not None and ti.python_module
        args = list(ti.args or [])
        if ti.job_dir:
            args += ["--job-dir", ti.job_dir]
        job_doc = ti.model_dump(mode="json", exclude_none=True)
        identity = RunIdentity(job_id=stored.job_id, job=job_doc)
        return RunSpec(
            run_id=run_id,
            plan=plan,
            python=prepared.python,
            module=ti.python_module,
            args=args,
            workdir=prepared.workdir,
            identity=identity,
            base_env=self._base_env,
        )

    # -- RUNNING → SUCCEEDED | FAILED ---------------------------------------------------------

    def _watch(self, stored: StoredJob) -> None:
        handle = _handle(stored)
        if handle is None:
            self._fail(stored, "The job's run record is missing; it cannot be watched.")
            return
        status = self._executor.poll(handle)
        stored = self._ship_logs(stored, handle, status)
        if status.ended:
            self._finish(stored, handle, status)
        elif self._running_too_long(stored):
            limit = format_duration(_max_running(stored))
            final = self._executor.stop(handle)
            stored = self._ship_logs(stored, handle, final)
            self._end(
                stored,
                handle,
                final,
                JobState.CANCELLED,
                f"Job cancelled: it ran longer than scheduling.maxRunningTime ({limit}).",
            )

    def _watch_tuning(self, stored: StoredJob) -> None:
        if self._running_too_long(stored):
            limit = format_duration(_max_running(stored))
            reason = f"Job cancelled: it ran longer than scheduling.maxRunningTime ({limit})."
            self._end(stored, None, None, JobState.CANCELLED, reason)
            return
        outcome = self._tuning.advance(stored, self._running_handles())
        if outcome is not None:
            state, message = outcome
            current = self._store.get_job(stored.project, stored.job_id)
            self._end(current, None, None, state, message)

    def _ship_logs(self, stored: StoredJob, handle: RunHandle, status: RunStatus) -> StoredJob:
        lines, cursor = self._executor.read_logs(handle, stored.runtime.log_cursor)
        if lines:
            self._store.append_logs(stored.project, stored.job_id, [log_entry(x) for x in lines])
        cpu = max(status.cpu_seconds, stored.runtime.cpu_seconds)
        if not lines and cpu == stored.runtime.cpu_seconds:
            return stored

        def change(s: StoredJob) -> StoredJob:
            runtime = replace(s.runtime, log_cursor=dict(cursor), cpu_seconds=cpu)
            return replace(s, job=with_units(s.job, cpu), runtime=runtime)

        return self._update(stored, change)

    def _finish(self, stored: StoredJob, handle: RunHandle, status: RunStatus) -> None:
        if status.exit_code == 0:
            self._end(stored, handle, status, JobState.SUCCEEDED, None)
            return
        message = status.reason or f"The primary replica exited with status {status.exit_code}."
        tail = self._stderr_tail(stored, status.failed_replica)
        self._end(stored, handle, status, JobState.FAILED, f"{message}\n{tail}".strip())

    def _stderr_tail(self, stored: StoredJob, replica: str | None, lines: int = 8) -> str:
        if replica is None:
            return ""
        entries = self._store.read_logs(
            stored.project, stored.job_id, task_name=replica, limit=10000
        )
        errors = [e.message for e in entries if e.stream == "stderr"][-lines:]
        return ("Last lines on stderr:\n" + "\n".join(errors)) if errors else ""

    # -- cancels, deadlines, failures ---------------------------------------------------------

    def _finish_cancel(self, stored: StoredJob) -> None:
        key = _Key(stored.project, stored.job_id)
        future = self._preparing.pop(key, None)
        if future is not None:
            future.cancel()
        handle = _handle(stored)
        if handle is None and (stored.runtime.run or {}).get("run_id"):
            handle = self._executor.find_run(str((stored.runtime.run or {})["run_id"]))
        if handle is None:
            self._end(stored, None, None, JobState.CANCELLED, "Job cancelled by the user.")
            return
        final = self._executor.stop(handle)
        stored = self._ship_logs(stored, handle, final)
        self._end(stored, handle, final, JobState.CANCELLED, "Job cancelled by the user.")

    def _check_wait_deadline(self, stored: StoredJob) -> bool:
        ti = stored.job.training_input
        wait = ti.scheduling.max_wait_time if ti and ti.scheduling else None
        created = stored.job.create_time
        if not wait or created is None or stored.runtime.run:
            return False
        if self._clock() - created <= wait:
            return False
        self._end(
            stored,
            None,
            None,
            JobState.CANCELLED,
            "Job cancelled: it did not start within scheduling.maxWaitTime "
            f"({format_duration(wait)}).",
        )
        return True

    def _running_too_long(self, stored: StoredJob) -> bool:
        started = stored.job.start_time
        return started is not None and self._clock() - started > _max_running(stored)

    def _fail(self, stored: StoredJob, message: str) -> None:
        handle = _handle(stored)
        status = self._executor.stop(handle) if handle is not None else None
        if handle is not None and status is not None:
            stored = self._ship_logs(stored, handle, status)
        self._end(stored, handle, status, JobState.FAILED, message)

    def _end(
        self,
        stored: StoredJob,
        handle: RunHandle | None,
        status: RunStatus | None,
        state: JobState,
        message: str | None,
    ) -> None:
        if stored.runtime.trials and any(t.active for t in stored.runtime.trials.values()):
            reason = message or f"the job ended ({state.value})"
            stored = self._tuning.stop_all(stored, reason.splitlines()[0])
        self._tuning.forget(stored)
        now = self._clock()
        cpu = max(status.cpu_seconds if status else 0.0, stored.runtime.cpu_seconds)

        def change(s: StoredJob) -> StoredJob:
            if s.state.is_terminal():
                return s
            update: dict[str, object] = {"state": state, "end_time": now, "error_message": message}
            job = with_units(s.job.model_copy(update=update), cpu)
            return replace(s, job=job, runtime=replace(s.runtime, cpu_seconds=cpu))

        ended = self._update(stored, change)
        verdict = {JobState.SUCCEEDED: "Job completed successfully."}.get(
            state, f"Job {state.value.lower()}: {message}"
        )
        self._log(ended, verdict, severity="INFO" if state is JobState.SUCCEEDED else "ERROR")
        if handle is not None:
            self._executor.cleanup(handle)

    # -- store helpers -----------------------------------------------------------------------

    def _update(self, stored: StoredJob, change: Callable[[StoredJob], StoredJob]) -> StoredJob:
        return self._store.update_job(stored.project, stored.job_id, change)

    def _log(
        self,
        stored: StoredJob,
        message: str,
        severity: str = "INFO",
        trial_id: str | None = None,
    ) -> None:
        entry = LogEntry(
            time=self._clock(),
            task_name=SERVICE,
            message=message,
            severity=severity,
            trial_id=trial_id,
        )
        self._store.append_logs(stored.project, stored.job_id, [entry])


def _plan(stored: StoredJob) -> ReplicaPlan:
    ti = stored.job.training_input
    assert ti is not None
    return plan_for_training_input(ti)


def _handle(stored: StoredJob) -> RunHandle | None:
    run = stored.runtime.run or {}
    handle = run.get("handle")
    return handle if isinstance(handle, dict) and handle else None


def _max_running(stored: StoredJob) -> timedelta:
    ti = stored.job.training_input
    limit = ti.scheduling.max_running_time if ti and ti.scheduling else None
    return limit or DEFAULT_MAX_RUNNING_TIME
