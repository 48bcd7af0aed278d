"""Property tests: wire round trips and robustness of parsing against arbitrary JSON."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources import ApiModel, Job, WireFormat, parse_job
from mlengine.domain.validation import validate_job

from .strategies import jobs, json_documents, valid_training_jobs, wire_format


@given(jobs)
def test_job_round_trips_through_json(job: Job) -> None:
    wire = json.loads(json.dumps(job.to_api(), allow_nan=False))
    assert parse_job(wire) == job


@given(jobs)
def test_wire_form_is_canonical(job: Job) -> None:
    wire = job.to_api()
    assert parse_job(wire).to_api() == wire


def _int64_as_numbers(model: ApiModel) -> dict[str, Any]:
    """``model.to_api()`` but with every int64 written as a JSON number, as clients may."""
    wire = model.to_api()
    for name, info in type(model).model_fields.items():
        value, key = getattr(model, name), info.alias or name
        if value is None:
            continue
        if wire_format(info.annotation) is WireFormat.INT64:
            wire[key] = value
        elif isinstance(value, ApiModel):
            wire[key] = _int64_as_numbers(value)
        elif isinstance(value, list) and value and isinstance(value[0], ApiModel):
            wire[key] = [_int64_as_numbers(item) for item in value]
    return wire


@given(jobs)
def test_int64_given_as_numbers_parse_to_the_same_job(job: Job) -> None:
    assert parse_job(_int64_as_numbers(job)) == job


@settings(max_examples=300)
@given(json_documents)
def test_parsing_and_validating_anything_raises_only_invalid_argument(document: object) -> None:
    try:
        job = parse_job(document)
        validate_job(job)
    except InvalidArgument as error:
        assert error.message
        assert error.field is None or isinstance(error.field, str)


@settings(max_examples=200)
@given(json_documents, st.sampled_from(["training", "hyperparameters", "prediction"]))
def test_noise_in_nested_positions_raises_only_invalid_argument(
    document: object, position: str
) -> None:
    bodies: dict[str, dict[str, Any]] = {
        "training": {"jobId": "j", "trainingInput": document},
        "hyperparameters": {
            "jobId": "j",
            "trainingInput": {"pythonModule": "t", "hyperparameters": document},
        },
        "prediction": {"jobId": "j", "predictionInput": document},
    }
    body = bodies[position]
    try:
        validate_job(parse_job(body))
    except InvalidArgument as error:
        assert error.message


@given(valid_training_jobs())
def test_valid_jobs_pass_and_defaults_are_stable(job: Job) -> None:
    validated = validate_job(job)
    assert validate_job(validated) == validated
    assert validated.training_input is not None
    assert validated.training_input.scale_tier is not None
    assert validated.training_input.region
    assert parse_job(validated.to_api()) == validated
