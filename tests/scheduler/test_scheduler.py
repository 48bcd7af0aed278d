"""The scheduler with real components: SQLite, the artifact store, real replica processes."""

from __future__ import annotations

import json
import time

from mlengine.domain.machine_types import Resources
from mlengine.domain.resources import JobState
from tests.processes import alive
from tests.scheduler.conftest import PROJECT, build_plane

TERMINAL = JobState.is_terminal


def _messages(plane, job_id, task=None):
    return [e.message for e in plane.store.read_logs(PROJECT, job_id, task_name=task, limit=10000)]


def test_a_job_runs_to_success_with_every_line_logged(plane, tmp_path):
    plane.submit("ok_1", ["--sleep", "0.2"], jobDir=str(tmp_path / "out"))
    assert plane.state("ok_1") is JobState.QUEUED
    job = plane.run_until("ok_1", TERMINAL)
    assert job.state is JobState.SUCCEEDED, job.error_message
    assert job.start_time is not None and job.end_time is not None
    assert job.training_output is not None and job.training_output.consumed_ml_units is not None
    lines = _messages(plane, "ok_1", "master-replica-0")
    assert lines[0] == "master-0 started" and lines[-1] == "master-0 done"
    service = _messages(plane, "ok_1", "service")
    assert any("CPU and memory requests are soft" in m for m in service)
    assert service[-1] == "Job completed successfully."


def test_a_dying_worker_fails_the_job_naming_it(plane):
    plane.submit(
        "bad_1",
        ["--sleep", "60", "--fail-task", "worker:1:3"],
        scaleTier="CUSTOM",
        masterType="n1-standard-4",
        workerType="n1-standard-4",
        workerCount=2,
    )
    started = time.monotonic()
    job = plane.run_until("bad_1", TERMINAL)
    assert time.monotonic() - started < 45
    assert job.state is JobState.FAILED
    assert "worker-replica-1" in job.error_message
    assert "worker-1 failing with 3" in job.error_message  # the stderr tail


def test_cancel_a_running_job_leaves_no_process(plane, tmp_path):
    record = tmp_path / "rec"
    plane.submit("long_1", ["--sleep", "300", "--spawn-child", "--record", str(record)])
    plane.run_until("long_1", lambda s: s is JobState.RUNNING)
    deadline = time.monotonic() + 30
    while not (record / "master-0.json").exists() and time.monotonic() < deadline:
        plane.scheduler.tick()
        time.sleep(0.1)
    pids = json.loads((record / "master-0.json").read_text())["pids"]
    plane.jobs.cancel(PROJECT, "long_1")
    assert plane.state("long_1") is JobState.CANCELLING
    job = plane.run_until("long_1", TERMINAL)
    assert job.state is JobState.CANCELLED
    time.sleep(0.5)
    assert not [p for p in pids if alive(p)]


def test_cancel_a_queued_job_ends_it_at_once(plane):
    plane.submit("q_1", [])
    plane.jobs.cancel(PROJECT, "q_1")
    assert plane.state("q_1") is JobState.CANCELLED


def test_a_plan_that_can_never_fit_fails_with_the_reason(plane):
    plane.submit("gpu_1", [], scaleTier="BASIC_GPU")
    job = plane.run_until("gpu_1", TERMINAL)
    assert job.state is JobState.FAILED
    assert "can never run" in job.error_message and "GPU" in job.error_message


def test_max_running_time_cancels(plane):
    plane.submit("slow_1", ["--sleep", "300"], scheduling={"maxRunningTime": "2s"})
    job = plane.run_until("slow_1", TERMINAL, timeout=60)
    assert job.state is JobState.CANCELLED
    assert "maxRunningTime" in job.error_message


def test_jobs_queue_when_they_do_not_fit_and_report_their_position(tmp_path):
    plane = build_plane(tmp_path, capacity=Resources(4, 15), strict=True)
    try:
        plane.submit("first", ["--sleep", "3"])
        plane.submit("second", [])
        plane.submit("third", [], scheduling={"maxWaitTime": "1s"})
        plane.scheduler.tick()
        assert plane.state("first") in (JobState.PREPARING, JobState.RUNNING)
        assert plane.jobs.get(PROJECT, "second").job_position == 1
        assert plane.jobs.get(PROJECT, "third").job_position == 2
        third = plane.run_until("third", TERMINAL)
        assert third.state is JobState.CANCELLED and "maxWaitTime" in third.error_message
        assert plane.run_until("second", TERMINAL).state is JobState.SUCCEEDED
        assert plane.state("first") is JobState.SUCCEEDED
        first = plane.store.get_job(PROJECT, "first").job
        second = plane.store.get_job(PROJECT, "second").job
        assert second.start_time >= first.end_time  # never both at once: strict placement
    finally:
        plane.close()


def test_a_restarted_scheduler_reattaches_and_loses_no_line(tmp_path):
    plane = build_plane(tmp_path)
    plane.submit("re_1", ["--sleep", "3"])
    plane.run_until("re_1", lambda s: s is JobState.RUNNING)
    plane.scheduler.tick()
    uri = plane.package_uri
    plane.close()  # the "server" goes away; the replicas keep running
    time.sleep(1)
    again = build_plane(tmp_path, package_uri=uri)
    try:
        job = again.run_until("re_1", TERMINAL)
        assert job.state is JobState.SUCCEEDED
        lines = _messages(again, "re_1", "master-replica-0")
        assert lines == ["master-0 started", "master-0 done"]
    finally:
        again.close()


def test_a_run_started_but_not_recorded_is_found_not_started_twice(plane, tmp_path):
    """Crash window: the run id was stored, the replicas started, the handle was not."""
    record = tmp_path / "rec"
    plane.submit("win_1", ["--sleep", "2", "--record", str(record)])
    plane.run_until("win_1", lambda s: s is JobState.RUNNING)
    stored = plane.store.get_job(PROJECT, "win_1")
    run_id = stored.runtime.run["run_id"]

    from dataclasses import replace

    plane.store.update_job(
        PROJECT,
        "win_1",
        lambda s: replace(
            s,
            job=s.job.model_copy(update={"state": JobState.PREPARING}),
            runtime=replace(s.runtime, run={"run_id": run_id}),
        ),
    )
    job = plane.run_until("win_1", TERMINAL)
    assert job.state is JobState.SUCCEEDED
    assert len(list(record.glob("*.json"))) == 1  # started once
    assert any("Re-attached" in m for m in _messages(plane, "win_1", "service"))


def test_log_severity_comes_from_the_logging_level_when_there_is_one():
    from mlengine.scheduler.loop import line_severity

    assert line_severity("2026-11-27 19:16:24,635 INFO step 300", "stderr") == "INFO"
    assert line_severity("WARNING:root:careful", "stderr") == "WARNING"
    assert line_severity("Traceback (most recent call last):", "stderr") == "ERROR"
    assert line_severity("plain output", "stdout") == "INFO"
    assert line_severity("x" * 80 + " ERROR late in a long line", "stdout") == "INFO"
