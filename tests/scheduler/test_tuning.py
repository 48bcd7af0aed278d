"""Tuning jobs through the real scheduler: SQLite, the local executor, real trial processes.

The fixture trainer (tests/fixtures/tuning_trainer) computes a known objective from its
flags and reports it through the real ``hypertune`` package or ``mlengine.trainer``.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from mlengine.domain.errors import FailedPrecondition, InvalidArgument
from mlengine.domain.resources import Job, JobState
from tests.processes import alive
from tests.scheduler.conftest import PROJECT, TUNING, ControlPlane, build_plane

TERMINAL = JobState.is_terminal


def objective(params: dict[str, str]) -> float:
    x, y = float(params.get("x", 0)), float(params.get("y", 0))
    value = 1 - (x - 0.3) ** 2 - (y - 0.7) ** 2 - int(params.get("n", 0)) / 100
    return value + (0.05 if params.get("opt") == "b" else 0.0)


X = {"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1}
Y = {
    "parameterName": "y",
    "type": "DOUBLE",
    "minValue": 0.01,
    "maxValue": 1,
    "scaleType": "UNIT_LOG_SCALE",
}
OPT = {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["a", "b"]}
N = {"parameterName": "n", "type": "INTEGER", "minValue": 0, "maxValue": 5}


@pytest.fixture
def tplane(tmp_path: Path):
    cp = build_plane(tmp_path, trainer=TUNING)
    yield cp
    cp.close()


def submit(plane: ControlPlane, job_id: str, args: list[str], spec: dict, **training) -> Job:
    return plane.submit(job_id, args, hyperparameters=spec, **training)


def records(folder: Path) -> dict[str, dict]:
    """The primary replica's record of each trial, by trial id."""
    return {
        p.stem.split("-", 1)[1]: json.loads(p.read_text())
        for p in folder.glob("trial-*.json")
        if p.stem.count("-") == 1
    }


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(s, 1) for s, _ in intervals] + [(e, -1) for _, e in intervals])
    level = best = 0
    for _, delta in events:
        level += delta
        best = max(best, level)
    return best


def test_random_search_runs_every_trial_with_its_flags_and_environment(tplane, tmp_path):
    rec = tmp_path / "rec"
    spec = {
        "goal": "MAXIMIZE",
        "maxTrials": 4,
        "maxParallelTrials": 2,
        "algorithm": "RANDOM_SEARCH",
        "params": [X, Y, OPT, N],
    }
    job_dir = tmp_path / "out"
    submit(
        tplane, "hpt_1", ["--record", str(rec), "--step-sleep", "0.2"], spec, jobDir=str(job_dir)
    )
    job = tplane.run_until("hpt_1", TERMINAL, timeout=120)
    assert job.state is JobState.SUCCEEDED, job.error_message
    out = job.training_output
    assert out.is_hyperparameter_tuning_job and out.completed_trial_count == 4
    assert out.hyperparameter_metric_tag == "training/hptuning/metric"
    trials = out.trials
    assert sorted(t.trial_id for t in trials) == ["1", "2", "3", "4"]
    values = [t.final_metric.objective_value for t in trials]
    assert values == sorted(values, reverse=True)  # best first
    seen = records(rec)
    for trial in trials:
        assert trial.state is JobState.SUCCEEDED and trial.start_time and trial.end_time
        assert trial.final_metric.objective_value == pytest.approx(objective(trial.hyperparameters))
        assert trial.final_metric.training_step == 30
        assert [m.training_step for m in trial.all_metrics] == [10, 20, 30]
        doc = seen[trial.trial_id]
        flags = [f"--{k}={v}" for k, v in trial.hyperparameters.items()]
        assert all(f in doc["argv"] for f in flags)
        assert doc["argv"][-2:] == ["--job-dir", f"{job_dir}/{trial.trial_id}"]
        assert doc["env"]["CLOUD_ML_TRIAL_ID"] == trial.trial_id
        assert json.loads(doc["env"]["TF_CONFIG"])["task"]["trial"] == trial.trial_id
        assert doc["cwd"].endswith(f"/{trial.trial_id}")
    assert len({tuple(sorted(t.hyperparameters.items())) for t in trials}) == 4
    assert max_overlap([(d["start"], d["end"]) for d in seen.values()]) <= 2
    logs = tplane.store.read_logs(PROJECT, "hpt_1", limit=10000)
    tagged = {e.trial_id for e in logs if e.message.startswith("trial ")}
    assert tagged == {"1", "2", "3", "4"}
    assert job.training_output.consumed_ml_units > 0


def test_each_trial_can_be_a_distributed_run(tplane, tmp_path):
    rec = tmp_path / "rec"
    spec = {"maxTrials": 2, "algorithm": "RANDOM_SEARCH", "params": [X]}
    cluster = {"scaleTier": "CUSTOM", "masterType": "n1-standard-4", "workerType": "n1-standard-4"}
    # With --record the master waits until its worker has recorded what it saw.
    submit(tplane, "dist_1", ["--record", str(rec)], spec, workerCount=1, **cluster)
    job = tplane.run_until("dist_1", TERMINAL, timeout=120)
    assert job.state is JobState.SUCCEEDED, job.error_message
    for trial in job.training_output.trials:
        assert trial.final_metric.objective_value == pytest.approx(objective(trial.hyperparameters))
        worker = json.loads((rec / f"trial-{trial.trial_id}-worker-0.json").read_text())
        config = json.loads(worker["env"]["TF_CONFIG"])
        assert config["task"] == {"type": "worker", "index": 0, "trial": trial.trial_id}
        assert set(config["cluster"]) == {"master", "worker"}
        assert worker["env"]["CLOUD_ML_TRIAL_ID"] == trial.trial_id


def test_bayesian_default_with_the_mlengine_reporter_and_a_custom_tag(tplane):
    spec = {
        "goal": "MAXIMIZE",
        "maxTrials": 5,
        "maxParallelTrials": 2,
        "hyperparameterMetricTag": "score",
        "params": [X, OPT],
    }
    submit(tplane, "bo_1", ["--reporter", "mlengine"], spec)
    job = tplane.run_until("bo_1", TERMINAL, timeout=120)
    assert job.state is JobState.SUCCEEDED, job.error_message
    trials = job.training_output.trials
    assert len(trials) == 5 and all(t.final_metric is not None for t in trials)
    assert len({tuple(sorted(t.hyperparameters.items())) for t in trials}) == 5
    assert job.training_output.hyperparameter_metric_tag == "score"


def test_grid_search_stops_when_the_grid_is_exhausted(tplane):
    spec = {
        "goal": "MINIMIZE",
        "maxTrials": 10,
        "maxParallelTrials": 2,
        "algorithm": "GRID_SEARCH",
        "params": [{"parameterName": "x", "type": "DISCRETE", "discreteValues": [0.1, 0.9]}, OPT],
    }
    submit(tplane, "grid_1", [], spec)
    job = tplane.run_until("grid_1", TERMINAL, timeout=120)
    assert job.state is JobState.SUCCEEDED, job.error_message
    trials = job.training_output.trials
    assert len(trials) == 4
    values = [t.final_metric.objective_value for t in trials]
    assert values == sorted(values)  # minimising: smallest first
    logs = [e.message for e in tplane.store.read_logs(PROJECT, "grid_1", task_name="service")]
    assert any("search space is exhausted" in m for m in logs)


def test_a_trial_that_reports_nothing_is_named_in_the_log(tplane):
    spec = {"maxTrials": 1, "hyperparameterMetricTag": "accuracy", "params": [X]}
    submit(tplane, "tag_1", ["--tag", "loss"], spec)
    job = tplane.run_until("tag_1", TERMINAL, timeout=60)
    assert job.state is JobState.SUCCEEDED
    assert job.training_output.trials[0].final_metric is None
    logs = [e.message for e in tplane.store.read_logs(PROJECT, "tag_1", task_name="service")]
    assert any("without reporting 'accuracy'" in m for m in logs)


def test_max_failed_trials_fails_the_job_with_the_trial_errors(tplane):
    spec = {
        "maxTrials": 6,
        "maxFailedTrials": 2,
        "algorithm": "GRID_SEARCH",
        "params": [
            {"parameterName": "x", "type": "DISCRETE", "discreteValues": [0.1, 0.7, 0.8, 0.9]}
        ],
    }
    submit(tplane, "fail_1", ["--fail-above", "0.5"], spec)
    job = tplane.run_until("fail_1", TERMINAL, timeout=90)
    assert job.state is JobState.FAILED
    assert "maxFailedTrials (2)" in job.error_message
    assert "x=0.7 is too large" in job.error_message  # the failed trial's stderr
    states = {t.trial_id: t.state for t in job.training_output.trials}
    assert states == {"1": JobState.SUCCEEDED, "2": JobState.FAILED, "3": JobState.FAILED}


def test_a_broken_trainer_fails_the_job_after_three_trials_by_default(tplane):
    spec = {"maxTrials": 20, "maxParallelTrials": 1, "algorithm": "RANDOM_SEARCH", "params": [X]}
    submit(tplane, "broken_1", ["--fail-above", "-1"], spec)
    job = tplane.run_until("broken_1", TERMINAL, timeout=90)
    assert job.state is JobState.FAILED
    assert len(job.training_output.trials) == 3
    assert "looks broken" in job.error_message


def test_median_rule_stops_a_trial_that_falls_behind(tplane):
    # Grid order is ascending: x = 0.1, 0.2, 0.3 complete quickly with flat curves near 1;
    # x = 0.95 is slow (0.5 s per step) and far worse, so it is stopped early.
    spec = {
        "maxTrials": 4,
        "enableTrialEarlyStopping": True,
        "algorithm": "GRID_SEARCH",
        "params": [
            {"parameterName": "x", "type": "DISCRETE", "discreteValues": [0.1, 0.2, 0.3, 0.95]}
        ],
    }
    args = ["--flat", "--steps", "12", "--step-sleep", "0.02", "--slow-above", "0.9"]
    submit(tplane, "es_1", args, spec)
    started = time.monotonic()
    job = tplane.run_until("es_1", TERMINAL, timeout=120)
    assert job.state is JobState.SUCCEEDED, job.error_message
    by_id = {t.trial_id: t for t in job.training_output.trials}
    assert not any(by_id[i].is_trial_stopped_early for i in ("1", "2", "3"))
    stopped = by_id["4"]
    assert stopped.is_trial_stopped_early and stopped.state is JobState.SUCCEEDED
    assert stopped.final_metric is not None and len(stopped.all_metrics) < 12
    assert job.training_output.completed_trial_count == 4
    assert time.monotonic() - started < 60
    logs = [e.message for e in tplane.store.read_logs(PROJECT, "es_1", task_name="service")]
    assert any("Trial 4 stopped early" in m for m in logs)


def test_cancel_stops_every_running_trial(tplane, tmp_path):
    rec = tmp_path / "rec"
    spec = {"maxTrials": 4, "maxParallelTrials": 2, "algorithm": "RANDOM_SEARCH", "params": [X]}
    args = ["--record", str(rec), "--steps", "1", "--step-sleep", "300"]
    submit(tplane, "cancel_1", args, spec)
    deadline = time.monotonic() + 60
    while len(list(rec.glob("trial-*.json"))) < 2 and time.monotonic() < deadline:
        tplane.scheduler.tick()
        time.sleep(0.1)
    handles = [t.handle for t in tplane.store.get_job(PROJECT, "cancel_1").runtime.trials.values()]
    pids = [r["pid"] for h in handles for r in h["replicas"]]
    pids += [doc["pid"] for doc in records(rec).values()]
    tplane.jobs.cancel(PROJECT, "cancel_1")
    job = tplane.run_until("cancel_1", TERMINAL, timeout=60)
    assert job.state is JobState.CANCELLED
    assert [t.state for t in job.training_output.trials] == [JobState.CANCELLED] * 2
    time.sleep(0.5)
    assert not [p for p in pids if alive(p)]


def test_a_restarted_scheduler_finishes_exactly_max_trials_without_reruns(tmp_path):
    rec = tmp_path / "rec"
    plane = build_plane(tmp_path, trainer=TUNING)
    spec = {"maxTrials": 5, "maxParallelTrials": 2, "params": [X, OPT]}
    submit(plane, "restart_1", ["--record", str(rec), "--step-sleep", "0.3"], spec)
    plane.run_until("restart_1", lambda s: s is JobState.RUNNING, timeout=60)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # run until some trials finished and others run
        plane.scheduler.tick()
        trials = plane.store.get_job(PROJECT, "restart_1").job.training_output.trials
        if sum(t.state is JobState.SUCCEEDED for t in trials) >= 2 and any(
            t.state is JobState.RUNNING for t in trials
        ):
            break
        time.sleep(0.1)
    plane.close()  # a crash: the running trials are left alone
    again = build_plane(tmp_path, package_uri=plane.package_uri, trainer=TUNING)
    try:
        job = again.run_until("restart_1", TERMINAL, timeout=120)
    finally:
        again.close()
    assert job.state is JobState.SUCCEEDED, job.error_message
    trials = job.training_output.trials
    assert sorted(int(t.trial_id) for t in trials) == [1, 2, 3, 4, 5]
    assert len({tuple(sorted(t.hyperparameters.items())) for t in trials}) == 5
    starts = [line.split()[0] for line in (rec / "starts.log").read_text().splitlines()]
    assert sorted(starts, key=int) == ["1", "2", "3", "4", "5"]  # each trial started once


def test_resume_previous_job_uses_its_trials_and_does_not_repeat_them(tplane):
    grid = {
        "maxTrials": 2,
        "algorithm": "GRID_SEARCH",
        "params": [
            {"parameterName": "x", "type": "DISCRETE", "discreteValues": [0.1, 0.2, 0.3, 0.4]}
        ],
    }
    submit(tplane, "first_1", [], grid)
    first = tplane.run_until("first_1", TERMINAL, timeout=60)
    assert first.state is JobState.SUCCEEDED
    resumed = {**grid, "maxTrials": 4, "resumePreviousJobId": "first_1"}
    submit(tplane, "second_1", [], resumed)
    second = tplane.run_until("second_1", TERMINAL, timeout=60)
    assert second.state is JobState.SUCCEEDED
    before = {t.hyperparameters["x"] for t in first.training_output.trials}
    after = {t.hyperparameters["x"] for t in second.training_output.trials}
    assert before == {"0.1", "0.2"} and after == {"0.3", "0.4"}  # grid exhausted after 2


def test_resume_from_an_unknown_or_untuned_job_is_refused(tplane):
    spec = {"maxTrials": 1, "params": [X], "resumePreviousJobId": "nope"}
    with pytest.raises(InvalidArgument) as err:
        submit(tplane, "r_1", [], spec)
    assert "resumePreviousJobId" in err.value.message and "does not exist" in err.value.message
    tplane.submit("plain_1", [])
    with pytest.raises(InvalidArgument, match="not a hyperparameter tuning job"):
        submit(tplane, "r_2", [], {**spec, "resumePreviousJobId": "plain_1"})
    submit(tplane, "running_1", ["--step-sleep", "5"], {"maxTrials": 1, "params": [X]})
    with pytest.raises(FailedPrecondition, match="still"):
        submit(tplane, "r_3", [], {**spec, "resumePreviousJobId": "running_1"})
