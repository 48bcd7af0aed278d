"""Small builders shared by the validation tests."""

from __future__ import annotations

from typing import Any

import pytest

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources import Job, parse_job
from mlengine.domain.validation import validate_job


def training_body(**training: Any) -> dict[str, Any]:
    """A valid training-job body with ``training`` merged into trainingInput."""
    return {"jobId": "census_1", "trainingInput": {"pythonModule": "trainer.task", **training}}


def hp_body(params: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    """A valid training-job body with a HyperparameterSpec."""
    return training_body(hyperparameters={"params": params, **spec})


def validated(body: dict[str, Any]) -> Job:
    return validate_job(parse_job(body))


def only_problem(body: dict[str, Any], field: str, *fragments: str) -> InvalidArgument:
    """Assert that validating ``body`` fails with exactly one problem, at ``field``."""
    with pytest.raises(InvalidArgument) as raised:
        validated(body)
    error = raised.value
    assert error.field == field, error.message
    assert "more problem" not in error.message, error.message
    for fragment in fragments:
        assert fragment in error.message, error.message
    return error
