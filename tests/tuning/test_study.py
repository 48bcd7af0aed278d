"""The rules of a study (tuning/study.py): defaults, history, suggestions, metric curves,
the order of ``trainingOutput.trials`` and when failed trials fail the job.

Plain unit tests: no store, no scheduler, no processes.
"""

from __future__ import annotations

from typing import Any

import pytest

from mlengine.domain.metrics import MetricRecord
from mlengine.domain.resources import (
    GoalType,
    HyperparameterMetric,
    HyperparameterOutput,
    HyperparameterSpec,
    JobState,
    ParameterSpec,
)
from mlengine.domain.validation_hyperparameters import DEFAULT_HYPERPARAMETER_METRIC_TAG
from mlengine.tuning.base import Trial
from mlengine.tuning.grid import GridSearch
from mlengine.tuning.random_search import RandomSearch
from mlengine.tuning.study import (
    EARLY_FAILURES,
    MAX_CURVE_POINTS,
    Study,
    failure_verdict,
    merge_metrics,
    sort_trials,
)

X = {"parameterName": "x", "type": "DOUBLE", "minValue": 0, "maxValue": 1}
OPT = {"parameterName": "opt", "type": "CATEGORICAL", "categoricalValues": ["a", "b"]}
GRID = {"parameterName": "n", "type": "DISCRETE", "discreteValues": [1, 2, 3, 4]}
TAG = "training/hptuning/metric"


def spec(**fields: Any) -> HyperparameterSpec:
    return HyperparameterSpec.from_api({"params": [X, OPT], **fields})


def study(job_id: str = "job_1", project: str = "proj", **fields: Any) -> Study:
    return Study.from_spec(spec(**fields), project=project, job_id=job_id)


def trial(
    trial_id: str,
    state: JobState = JobState.SUCCEEDED,
    value: float | None = None,
    **hyperparameters: str,
) -> HyperparameterOutput:
    final = None if value is None else HyperparameterMetric(training_step=10, objective_value=value)
    return HyperparameterOutput(
        trial_id=trial_id,
        hyperparameters=hyperparameters or {"x": "0.5", "opt": "a"},
        state=state,
        final_metric=final,
    )


def record(value: float, timestamp: float, tag: str = TAG, step: int | None = None) -> MetricRecord:
    return MetricRecord(tag, value, int(timestamp * 10) if step is None else step, timestamp)


# -- Study.from_spec ------------------------------------------------------------------------


def test_from_spec_defaults() -> None:
    s = study()

    assert s.maximize is True
    assert s.max_trials == 1 and s.max_parallel == 1
    assert s.max_failed == 0
    assert s.metric_tag == DEFAULT_HYPERPARAMETER_METRIC_TAG == TAG
    assert s.early_stopping is False
    assert s.space.names == ("x", "opt")


@pytest.mark.parametrize(
    ("goal", "maximize"),
    [("MAXIMIZE", True), ("MINIMIZE", False), ("GOAL_TYPE_UNSPECIFIED", True)],
)
def test_goal(goal: str, maximize: bool) -> None:
    assert study(goal=goal).maximize is maximize


def test_from_spec_takes_what_is_set() -> None:
    s = study(
        goal="MINIMIZE",
        maxTrials=7,
        maxParallelTrials=3,
        maxFailedTrials=2,
        hyperparameterMetricTag="loss",
        enableTrialEarlyStopping=True,
        algorithm="RANDOM_SEARCH",
    )

    assert (s.maximize, s.max_trials, s.max_parallel, s.max_failed) == (False, 7, 3, 2)
    assert s.metric_tag == "loss" and s.early_stopping is True
    assert isinstance(s.suggester, RandomSearch)
    assert isinstance(study(params=[GRID], algorithm="GRID_SEARCH").suggester, GridSearch)


def test_zero_budget_fields_mean_the_defaults() -> None:
    s = study(maxTrials=0, maxParallelTrials=0, maxFailedTrials=0, hyperparameterMetricTag="")

    assert (s.max_trials, s.max_parallel, s.max_failed) == (1, 1, 0)
    assert s.metric_tag == TAG


def test_seed_is_stable_per_job_and_differs_between_jobs() -> None:
    first = study("job_1").seed

    assert study("job_1").seed == first  # a restarted server asks the same questions
    assert study("job_1", maxTrials=5).seed == first  # the spec does not change it
    assert study("job_2").seed != first
    assert study("job_1", project="other").seed != first


# -- history and pending --------------------------------------------------------------------


def test_history_values_of_finished_trials() -> None:
    s = study()
    trials = [
        trial("1", JobState.SUCCEEDED, 0.8, x="0.1", opt="a"),
        trial("2", JobState.FAILED, None, x="0.2", opt="b"),
        trial("3", JobState.SUCCEEDED, None, x="0.3", opt="a"),  # reported nothing
        trial("4", JobState.CANCELLED, 0.9, x="0.4", opt="a"),
        trial("5", JobState.RUNNING, None, x="0.5", opt="b"),
        trial("6", JobState.SUCCEEDED, float("nan"), x="0.6", opt="b"),
    ]

    assert s.history(trials) == [
        Trial({"x": 0.1, "opt": "a"}, 0.8),
        Trial({"x": 0.2, "opt": "b"}, None),
        Trial({"x": 0.3, "opt": "a"}, None),
        Trial({"x": 0.6, "opt": "b"}, None),
    ]


def test_history_skips_parameters_outside_the_space() -> None:
    s = study()
    trials = [
        trial("1", JobState.SUCCEEDED, 0.5, x="0.5", opt="c"),  # unknown category
        trial("2", JobState.SUCCEEDED, 0.5, x="7", opt="a"),  # out of range
        trial("3", JobState.SUCCEEDED, 0.5, lr="0.1"),  # another spec's parameters
        trial("4", JobState.FAILED, None, x="abc", opt="a"),  # not a number
        trial("5", JobState.SUCCEEDED, 0.25, x="0.5", opt="b", extra="1"),  # extra key: fine
    ]

    assert s.history(trials) == [Trial({"x": 0.5, "opt": "b"}, 0.25)]


def test_pending_is_the_running_trials_inside_the_space() -> None:
    s = study()
    trials = [
        trial("1", JobState.SUCCEEDED, 0.8, x="0.1", opt="a"),
        trial("2", JobState.RUNNING, None, x="0.2", opt="b"),
        trial("3", JobState.FAILED, None, x="0.3", opt="a"),
        trial("4", JobState.RUNNING, None, x="0.4", opt="c"),  # outside the space
        trial("5", JobState.CANCELLED, None, x="0.5", opt="a"),
        trial("6", JobState.RUNNING, None, x="0.6", opt="a"),
    ]

    assert s.pending(trials) == [{"x": 0.2, "opt": "b"}, {"x": 0.6, "opt": "a"}]
    assert s.pending([]) == []


# -- suggest --------------------------------------------------------------------------------


def grid_study(**fields: Any) -> Study:
    return study(params=[GRID], algorithm="GRID_SEARCH", maxTrials=10, **fields)


def test_suggest_never_repeats_previous_trials_on_a_small_grid() -> None:
    s = grid_study()
    previous = [
        trial("1", JobState.SUCCEEDED, 0.5, n="1"),
        trial("2", JobState.FAILED, None, n="3"),
    ]

    first = s.suggest([], previous, 4)

    assert first == [{"n": 2.0}, {"n": 4.0}]  # fewer: the grid is exhausted


def test_suggest_skips_previous_finished_and_running_trials() -> None:
    s = grid_study()
    previous = [trial("1", JobState.SUCCEEDED, 0.5, n="1")]
    current = [
        trial("1", JobState.SUCCEEDED, 0.7, n="2"),
        trial("2", JobState.RUNNING, None, n="3"),
    ]

    assert s.suggest(current, previous, 3) == [{"n": 4.0}]
    done = [*current[:1], trial("2", JobState.SUCCEEDED, 0.1, n="3"), trial("3", n="4")]
    assert s.suggest(done, previous, 1) == []


def test_cancelled_previous_trials_may_run_again() -> None:
    s = grid_study()
    previous = [trial("1", JobState.CANCELLED, None, n="1")]

    assert s.suggest([], previous, 4) == [{"n": 1.0}, {"n": 2.0}, {"n": 3.0}, {"n": 4.0}]


def test_random_suggestions_are_reproducible_and_new() -> None:
    s = study(algorithm="RANDOM_SEARCH", maxTrials=10)
    previous = [trial("1", JobState.SUCCEEDED, 0.5, x="0.25", opt="a")]

    first = s.suggest([], previous, 3)

    assert first == s.suggest([], previous, 3)  # stateless, seeded from the job's name
    assert len(first) == 3 and all(s.space.contains(p) for p in first)
    keys = {s.space.key(p) for p in first}
    assert len(keys) == 3 and s.space.key({"x": 0.25, "opt": "a"}) not in keys


# -- merge_metrics ----------------------------------------------------------------------------


def test_merge_takes_only_the_tag_newer_than_since_in_time_order() -> None:
    # ``since`` is the timestamp of the last point taken: (20, 0.2) at 2.0.
    current = [
        HyperparameterMetric(training_step=10, objective_value=0.15),
        HyperparameterMetric(training_step=20, objective_value=0.2),
    ]
    records = [
        record(0.4, 4.0),
        record(0.9, 3.5, tag="loss"),
        record(0.2, 2.0),  # taken already
        record(0.3, 3.0),
        record(0.15, 1.0),
    ]

    merged, newest = merge_metrics(current, records, TAG, since=2.0)

    assert [(m.training_step, m.objective_value) for m in merged] == [
        (10, 0.15),
        (20, 0.2),
        (30, 0.3),
        (40, 0.4),
    ]
    assert newest == 4.0


def test_merge_without_new_records_keeps_the_curve_and_since() -> None:
    current = [HyperparameterMetric(training_step=10, objective_value=0.5)]  # taken at 1.0

    merged, newest = merge_metrics(current, [record(0.5, 1.0), record(0.6, 9.0, "x")], TAG, 1.0)

    assert merged == current and merged is not current
    assert newest == 1.0
    assert merge_metrics([], [], TAG, 0.0) == ([], 0.0)


def test_merge_by_timestamp_survives_a_rewritten_metric_file() -> None:
    # hypertune keeps only its last records: positions shift, timestamps do not.
    first, since = merge_metrics([], [record(float(i), float(i)) for i in range(1, 4)], TAG, 0.0)
    window = [record(float(i), float(i)) for i in range(2, 6)]

    merged, since = merge_metrics(first, window, TAG, since)

    assert [m.objective_value for m in merged] == [1.0, 2.0, 3.0, 4.0, 5.0]
    assert since == 5.0


@pytest.mark.parametrize("extra", [1, 2, 7, MAX_CURVE_POINTS])
def test_thinning_keeps_the_first_and_newest_points_within_the_cap(extra: int) -> None:
    current = [
        HyperparameterMetric(training_step=i, objective_value=float(i))
        for i in range(MAX_CURVE_POINTS)
    ]
    records = [
        record(float(MAX_CURVE_POINTS + i), 1.0 + i, step=MAX_CURVE_POINTS + i)
        for i in range(extra)
    ]

    merged, newest = merge_metrics(current, records, TAG, since=0.0)

    steps = [int(m.training_step or 0) for m in merged]
    assert len(merged) <= MAX_CURVE_POINTS
    assert steps[0] == 0
    newest_kept = min(extra, MAX_CURVE_POINTS // 2)  # the newer half is never thinned
    assert steps[-newest_kept:] == [MAX_CURVE_POINTS + i for i in range(extra - newest_kept, extra)]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    assert newest == float(extra)


def test_thinning_a_single_huge_batch() -> None:
    records = [record(float(i), float(i + 1), step=i) for i in range(5 * MAX_CURVE_POINTS)]

    merged, _ = merge_metrics([], records, TAG, since=0.0)

    steps = [int(m.training_step or 0) for m in merged]
    assert len(merged) <= MAX_CURVE_POINTS
    assert steps[0] == 0 and steps[-1] == 5 * MAX_CURVE_POINTS - 1
    newest = list(range(5 * MAX_CURVE_POINTS - MAX_CURVE_POINTS // 2, 5 * MAX_CURVE_POINTS))
    assert steps[-MAX_CURVE_POINTS // 2 :] == newest
    assert steps == sorted(steps)


# -- sort_trials ------------------------------------------------------------------------------


def ids(trials: list[HyperparameterOutput]) -> list[str | None]:
    return [t.trial_id for t in trials]


def test_sort_maximizing_best_first_then_trials_without_a_metric_by_id() -> None:
    trials = [
        trial("1", JobState.FAILED),
        trial("2", value=0.5),
        trial("3", JobState.RUNNING),
        trial("4", value=0.9),
        trial("5", value=0.1),
        trial("6", value=float("nan")),
    ]

    assert ids(sort_trials(trials, maximize=True)) == ["4", "2", "5", "1", "3", "6"]


def test_sort_minimizing() -> None:
    trials = [trial("1", value=0.5), trial("2"), trial("3", value=-1.0), trial("4", value=2.0)]

    assert ids(sort_trials(trials, maximize=False)) == ["3", "1", "4", "2"]


def test_sort_orders_ids_as_numbers() -> None:
    no_metric = [trial(str(i), JobState.RUNNING) for i in (10, 9, 2, 11, 1)]
    ties = [trial(str(i), value=0.5) for i in (10, 9, 100)]

    assert ids(sort_trials(no_metric, maximize=True)) == ["1", "2", "9", "10", "11"]
    assert ids(sort_trials(ties, maximize=True)) == ["9", "10", "100"]
    assert ids(sort_trials(ties, maximize=False)) == ["9", "10", "100"]


def test_sort_is_total_on_an_empty_list() -> None:
    assert sort_trials([], maximize=True) == []


# -- failure_verdict --------------------------------------------------------------------------


def states(*values: JobState) -> list[HyperparameterOutput]:
    return [trial(str(i + 1), state) for i, state in enumerate(values)]


S, F, R, C = JobState.SUCCEEDED, JobState.FAILED, JobState.RUNNING, JobState.CANCELLED


def test_no_failures_no_verdict() -> None:
    assert failure_verdict(study(maxTrials=5), []) is None
    assert failure_verdict(study(maxTrials=5), states(S, S, R, C)) is None


def test_max_failed_trials_reached() -> None:
    s = study(maxTrials=10, maxFailedTrials=2)

    assert failure_verdict(s, states(F, S, R)) is None
    verdict = failure_verdict(s, states(F, S, F))
    assert verdict is not None
    assert "maxFailedTrials (2)" in verdict and "2 trial(s) failed" in verdict
    # Set explicitly, it replaces the default rule: 4 of 5 may fail before a success.
    lenient = study(maxTrials=5, maxFailedTrials=5)
    assert failure_verdict(lenient, states(F, F, F, F)) is None
    assert failure_verdict(lenient, states(F, F, F, F, F)) is not None


def test_unset_the_first_failures_without_a_success_look_broken() -> None:
    s = study(maxTrials=20)

    assert EARLY_FAILURES == 3
    assert failure_verdict(s, states(F, F)) is None
    assert failure_verdict(s, states(F, F, R)) is None
    verdict = failure_verdict(s, states(F, F, F))
    assert verdict is not None and "looks broken" in verdict


def test_unset_with_a_success_more_than_half_of_max_trials_must_fail() -> None:
    s = study(maxTrials=6)

    assert failure_verdict(s, states(S, F, F, F)) is None  # exactly half
    assert failure_verdict(s, states(F, F, S, F)) is None
    verdict = failure_verdict(s, states(S, F, F, F, F))
    assert verdict is not None
    assert "4 of at most 6 trials failed" in verdict and "looks broken" not in verdict


def test_unset_with_a_small_budget_every_trial_failing_fails() -> None:
    one = failure_verdict(study(maxTrials=1), states(F))
    two = study(maxTrials=2)

    assert one is not None and "looks broken" in one
    assert failure_verdict(two, states(F)) is None
    assert failure_verdict(two, states(F, F)) is not None
    assert failure_verdict(two, states(S, F)) is None


def test_default_max_trials_with_one_failure_fails() -> None:
    s = Study.from_spec(
        HyperparameterSpec(goal=GoalType.MAXIMIZE, params=spec().params),
        project="p",
        job_id="j",
    )

    assert s.max_trials == 1
    assert failure_verdict(s, states(F)) is not None


def test_a_failed_trial_never_informs_the_search_with_a_value() -> None:
    failed = HyperparameterOutput(
        trial_id="1",
        hyperparameters={"x": "0.5"},
        state=JobState.FAILED,
        final_metric=HyperparameterMetric(training_step=1, objective_value=0.3),
    )
    space_spec = HyperparameterSpec(
        params=[ParameterSpec(parameter_name="x", type="DOUBLE", min_value=0, max_value=1)]
    )
    study = Study.from_spec(space_spec, project="p", job_id="j")
    assert [t.value for t in study.history([failed])] == [None]


def test_a_record_with_the_timestamp_already_seen_is_still_taken_once() -> None:
    first = MetricRecord("m", 0.1, 1, 5.0)
    second = MetricRecord("m", 0.2, 99, 5.0)
    taken, since = merge_metrics([], [first], "m", 0.0)
    taken, since = merge_metrics(taken, [first, second], "m", since)
    assert [(m.training_step, m.objective_value) for m in taken] == [(1, 0.1), (99, 0.2)]
    again, _ = merge_metrics(taken, [first, second], "m", since)
    assert again == taken
