"""Parsing and writing the Job resource: wire forms and parse-error messages."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from pydantic import ValidationError

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources import (
    HyperparameterMetric,
    Job,
    JobState,
    ParameterType,
    ScaleTier,
    TrainingInput,
    parse_hyperparameter_spec,
    parse_job,
    parse_training_input,
)


def _error(body: object) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        parse_job(body)
    return raised.value


# --- accepted input and canonical output -----------------------------------------------


def test_int64_accepts_numbers_and_strings_and_writes_strings() -> None:
    job = parse_job({"jobId": "j", "trainingInput": {"workerCount": 4, "evaluatorCount": "2"}})
    assert job.training_input is not None
    assert job.training_input.worker_count == 4
    assert job.training_input.evaluator_count == 2
    wire = job.to_api()["trainingInput"]
    assert wire["workerCount"] == "4"
    assert wire["evaluatorCount"] == "2"


def test_int32_stays_a_number() -> None:
    spec = parse_hyperparameter_spec({"maxTrials": "10", "maxParallelTrials": 2})
    assert spec.to_api() == {"maxTrials": 10, "maxParallelTrials": 2}


@pytest.mark.parametrize("value", [4.0, "+4", "-4"])
def test_int64_lenient_forms(value: object) -> None:
    job = parse_job({"jobPosition": value})
    assert job.job_position is not None and abs(job.job_position) == 4


def test_snake_case_names_are_accepted_on_input() -> None:
    job = parse_job({"job_id": "j", "training_input": {"python_module": "t.task"}})
    assert job.job_id == "j"
    assert job.to_api() == {"jobId": "j", "trainingInput": {"pythonModule": "t.task"}}


def test_unset_fields_are_omitted_and_enums_written_as_strings() -> None:
    job = Job(job_id="j", state=JobState.RUNNING, training_input=TrainingInput())
    assert job.to_api() == {"jobId": "j", "state": "RUNNING", "trainingInput": {}}


def test_timestamps_durations_and_bytes() -> None:
    job = parse_job(
        {
            "createTime": "2017-03-07T19:13:34.5+02:00",
            "etag": "YWJj",
            "trainingInput": {"scheduling": {"maxRunningTime": "7200s", "maxWaitTime": "1.5s"}},
        }
    )
    assert job.create_time == datetime(2017, 3, 7, 17, 13, 34, 500000, tzinfo=UTC)
    assert job.etag == b"abc"
    assert job.training_input is not None and job.training_input.scheduling is not None
    assert job.training_input.scheduling.max_running_time == timedelta(hours=2)
    wire = job.to_api()
    assert wire["createTime"] == "2017-03-07T17:13:34.500Z"
    assert wire["etag"] == "YWJj"
    assert wire["trainingInput"]["scheduling"] == {"maxRunningTime": "7200s", "maxWaitTime": "1.5s"}


def test_etag_accepts_url_safe_base64_without_padding() -> None:
    assert parse_job({"etag": "-_8"}).etag == b"\xfb\xff"
    assert parse_job({"etag": "-_8"}).to_api()["etag"] == "+/8="


def test_consumed_ml_units_keeps_the_api_spelling() -> None:
    job = parse_job({"trainingOutput": {"consumedMLUnits": 1.5, "completedTrialCount": "4"}})
    assert job.training_output is not None
    assert job.training_output.consumed_ml_units == 1.5
    assert job.to_api()["trainingOutput"] == {"consumedMLUnits": 1.5, "completedTrialCount": "4"}


def test_non_finite_doubles_use_protobuf_strings() -> None:
    metric = HyperparameterMetric.from_api({"objectiveValue": "NaN", "trainingStep": 3})
    assert metric.objective_value is not None and math.isnan(metric.objective_value)
    assert metric.to_api() == {"objectiveValue": "NaN", "trainingStep": "3"}
    assert HyperparameterMetric(objective_value=-math.inf).to_api() == {
        "objectiveValue": "-Infinity"
    }


def test_python_construction_uses_snake_case_and_models_are_frozen() -> None:
    ti = TrainingInput(scale_tier=ScaleTier.CUSTOM, master_type="n1-standard-4")
    with pytest.raises(ValidationError):
        ti.__setattr__("master_type", "other")
    changed = ti.model_copy(update={"master_type": "n1-standard-8"})
    assert changed.master_type == "n1-standard-8"


def test_without_output_only_clears_service_fields() -> None:
    job = parse_job(
        {"jobId": "j", "state": "SUCCEEDED", "createTime": "2017-03-07T17:13:34Z", "jobPosition": 3}
    )
    assert job.without_output_only().to_api() == {"jobId": "j"}


# --- parse errors -----------------------------------------------------------------------


def test_bad_int64_names_path_value_and_form() -> None:
    error = _error({"trainingInput": {"workerCount": "four"}})
    assert error.field == "trainingInput.workerCount"
    assert error.message == (
        "Invalid value at 'trainingInput.workerCount' (\"four\"): expected an integer "
        '(int64, may be a string such as "4").'
    )


def test_unknown_field_lists_valid_fields_and_suggests() -> None:
    error = _error({"trainingInput": {"workerCont": 3}})
    assert error.field == "trainingInput.workerCont"
    assert "Unknown field 'trainingInput.workerCont'" in error.message
    assert "remove it or check the spelling" in error.message
    assert "did you mean 'workerCount'?" in error.message
    assert "valid fields are args, enableWebAccess" in error.message


def test_nested_list_paths_use_camel_case_and_indexes() -> None:
    error = _error({"trainingInput": {"hyperparameters": {"params": [{}, {"min_value": "low"}]}}})
    assert error.field == "trainingInput.hyperparameters.params[1].minValue"
    assert "expected a number (double)" in error.message


def test_enum_errors_list_values_and_suggest_the_spelling() -> None:
    error = _error({"trainingInput": {"scaleTier": "basic-gpu"}})
    assert error.field == "trainingInput.scaleTier"
    assert "expected one of BASIC, STANDARD_1" in error.message
    assert "did you mean 'BASIC_GPU'?" in error.message


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({"labels": {"team": 3}}, 'labels["team"]', "expected a string"),
        ({"labels": []}, "labels", "expected a JSON object"),
        ({"trainingInput": "x"}, "trainingInput", "expected a JSON object"),
        ({"trainingInput": {"args": "a b"}}, "trainingInput.args", "expected a JSON array"),
        ({"trainingInput": {"useChiefInTfConfig": "yes"}}, "trainingInput.useChiefInTfConfig",
         "expected true or false"),
        ({"trainingInput": {"workerCount": True}}, "trainingInput.workerCount", "int64"),
        ({"trainingInput": {"workerCount": 2**63}}, "trainingInput.workerCount", "between"),
        ({"trainingInput": {"workerCount": 1.5}}, "trainingInput.workerCount", "int64"),
        ({"trainingInput": {"scheduling": {"maxWaitTime": 1800}}},
         "trainingInput.scheduling.maxWaitTime", '"7200s"'),
        ({"trainingInput": {"scheduling": {"maxWaitTime": "30m"}}},
         "trainingInput.scheduling.maxWaitTime", "'s' suffix"),
        ({"createTime": "yesterday"}, "createTime", "RFC 3339"),
        ({"etag": "not base64!"}, "etag", "base64"),
        ({"state": "DONE"}, "state", "expected one of STATE_UNSPECIFIED"),
    ],
)  # fmt: skip
def test_type_errors_name_the_field(body: dict[str, object], field: str, fragment: str) -> None:
    error = _error(body)
    assert error.field == field
    assert fragment in error.message
    assert f"'{field}'" in error.message


def test_non_object_body() -> None:
    error = _error(["jobId"])
    assert error.field is None
    assert "must be a JSON object" in error.message


def test_several_problems_are_reported_together_first_in_field() -> None:
    error = _error({"jobId": 7, "trainingInput": {"workerCount": "x", "nope": 1}})
    assert error.field == "jobId"
    assert "2 more problems:" in error.message
    assert "'trainingInput.workerCount'" in error.message
    assert "'trainingInput.nope'" in error.message


def test_parse_training_input_paths_default_to_the_job_position() -> None:
    with pytest.raises(InvalidArgument) as raised:
        parse_training_input({"workerCount": "x"})
    assert raised.value.field == "trainingInput.workerCount"
    with pytest.raises(InvalidArgument) as raised:
        parse_training_input({"workerCount": "x"}, path="")
    assert raised.value.field == "workerCount"


def test_parse_hyperparameter_spec() -> None:
    spec = parse_hyperparameter_spec(
        {"params": [{"parameterName": "lr", "type": "DOUBLE", "minValue": "0.1", "maxValue": 1}]}
    )
    assert spec.params is not None and spec.params[0].type is ParameterType.DOUBLE
    with pytest.raises(InvalidArgument) as raised:
        parse_hyperparameter_spec({"params": [{"type": "FLOAT"}]})
    assert raised.value.field == "trainingInput.hyperparameters.params[0].type"


def test_long_values_are_cut_in_messages() -> None:
    error = _error({"jobId": ["x" * 500]})
    assert "..." in error.message
    assert len(error.message) < 200
