"""Semantic rules of HyperparameterSpec and ParameterSpec."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given

from mlengine.domain.resources import GoalType, HyperparameterSpec
from mlengine.domain.validation_hyperparameters import (
    DEFAULT_HYPERPARAMETER_METRIC_TAG,
    hyperparameter_defaults,
)

from .strategies import hyperparameter_specs
from .validation_helpers import hp_body, only_problem, validated

HP = "trainingInput.hyperparameters"
P0 = f"{HP}.params[0]"
LR = {"parameterName": "lr", "type": "DOUBLE", "minValue": 0.001, "maxValue": 0.1}


def _param(**fields: Any) -> dict[str, Any]:
    return {**LR, **fields}


def test_census_spec_is_valid_and_gets_defaults() -> None:
    job = validated(
        hp_body(
            [
                {"parameterName": "first-layer-size", "type": "INTEGER", "minValue": 50,
                 "maxValue": 500, "scaleType": "UNIT_LINEAR_SCALE"},
                {"parameterName": "num-layers", "type": "INTEGER", "minValue": 1, "maxValue": 15},
                {"parameterName": "scale-factor", "type": "DOUBLE", "minValue": 0.1,
                 "maxValue": 1.0, "scaleType": "UNIT_REVERSE_LOG_SCALE"},
            ],
            goal="MAXIMIZE",
            hyperparameterMetricTag="accuracy",
            maxTrials=4,
            maxParallelTrials=2,
            enableTrialEarlyStopping=True,
        )
    )  # fmt: skip
    assert job.training_input is not None
    spec = job.training_input.hyperparameters
    assert spec is not None
    assert (spec.goal, spec.max_trials, spec.max_parallel_trials) == (GoalType.MAXIMIZE, 4, 2)
    assert spec.hyperparameter_metric_tag == "accuracy"


def test_defaults() -> None:
    spec = hyperparameter_defaults(HyperparameterSpec(goal=GoalType.GOAL_TYPE_UNSPECIFIED))
    assert spec.goal is GoalType.MAXIMIZE
    assert spec.max_trials == 1
    assert spec.max_parallel_trials == 1
    assert (
        spec.hyperparameter_metric_tag
        == DEFAULT_HYPERPARAMETER_METRIC_TAG
        == ("training/hptuning/metric")
    )
    assert spec.max_failed_trials is None
    minimize = hyperparameter_defaults(HyperparameterSpec(goal=GoalType.MINIMIZE, max_trials=9))
    assert (minimize.goal, minimize.max_trials) == (GoalType.MINIMIZE, 9)


# --- the spec ------------------------------------------------------------------------------


def test_params_are_required() -> None:
    only_problem(hp_body([]), f"{HP}.params", "at least one parameter")


def test_parameter_names_are_unique() -> None:
    only_problem(hp_body([LR, LR]), f"{HP}.params[1].parameterName", "Duplicate parameterName 'lr'")


@pytest.mark.parametrize("name", ["learning rate", "a=b", "-lr", "--lr", "tab\tname"])
def test_parameter_names_must_be_flags(name: str) -> None:
    only_problem(hp_body([_param(parameterName=name)]), f"{P0}.parameterName", "--<parameterName>")


def test_parameter_name_required() -> None:
    only_problem(hp_body([_param(parameterName="")]), f"{P0}.parameterName", "is required")


@pytest.mark.parametrize("field", ["maxTrials", "maxParallelTrials", "maxFailedTrials"])
def test_budget_cannot_be_negative(field: str) -> None:
    only_problem(hp_body([LR], **{field: -1}), f"{HP}.{field}", "0 or more")


def test_parallel_trials_cannot_exceed_trials() -> None:
    only_problem(
        hp_body([LR], maxTrials=2, maxParallelTrials=3),
        f"{HP}.maxParallelTrials",
        "cannot exceed maxTrials (2)",
    )
    only_problem(hp_body([LR], maxParallelTrials=2), f"{HP}.maxParallelTrials", "maxTrials (1)")


def test_resume_job_id_must_be_valid() -> None:
    only_problem(
        hp_body([LR], resumePreviousJobId="old-job"), f"{HP}.resumePreviousJobId", "Try 'old_job'"
    )
    validated(hp_body([LR], resumePreviousJobId="old_job"))


# --- parameter types -------------------------------------------------------------------------


@pytest.mark.parametrize("kind", [None, "PARAMETER_TYPE_UNSPECIFIED"])
def test_type_is_required(kind: str | None) -> None:
    only_problem(hp_body([_param(type=kind)]), f"{P0}.type", "DOUBLE, INTEGER, CATEGORICAL")


@pytest.mark.parametrize("kind", ["DOUBLE", "INTEGER"])
@pytest.mark.parametrize("bound", ["minValue", "maxValue"])
def test_numeric_bounds_are_required(kind: str, bound: str) -> None:
    param = _param(type=kind, minValue=1, maxValue=10)
    del param[bound]
    only_problem(hp_body([param]), f"{P0}.{bound}", f"required for {kind}")


@pytest.mark.parametrize(("low", "high"), [(5, 5), (10, 1)])
def test_min_must_be_below_max(low: float, high: float) -> None:
    only_problem(
        hp_body([_param(minValue=low, maxValue=high)]), f"{P0}.maxValue", "must be greater"
    )


def test_integer_bounds_are_whole() -> None:
    only_problem(
        hp_body([_param(type="INTEGER", minValue=1.5, maxValue=10)]),
        f"{P0}.minValue",
        "whole number",
    )


def test_bounds_must_be_finite() -> None:
    only_problem(hp_body([_param(maxValue="Infinity")]), f"{P0}.maxValue", "finite")


@pytest.mark.parametrize("scale", ["UNIT_LOG_SCALE", "UNIT_REVERSE_LOG_SCALE"])
def test_log_scales_need_positive_ranges(scale: str) -> None:
    only_problem(
        hp_body([_param(minValue=0, maxValue=1, scaleType=scale)]),
        f"{P0}.minValue",
        scale,
        "above 0",
    )


def test_numeric_parameters_reject_other_value_lists() -> None:
    only_problem(
        hp_body([_param(categoricalValues=["a"])]), f"{P0}.categoricalValues", "CATEGORICAL"
    )
    only_problem(hp_body([_param(discreteValues=[1.0])]), f"{P0}.discreteValues", "DISCRETE")


def test_categorical_rules() -> None:
    base = {"parameterName": "opt", "type": "CATEGORICAL"}
    validated(hp_body([{**base, "categoricalValues": ["adam", "sgd"]}]))
    only_problem(hp_body([base]), f"{P0}.categoricalValues", "at least one value")
    only_problem(
        hp_body([{**base, "categoricalValues": ["a", "b", "a"]}]),
        f"{P0}.categoricalValues[2]",
        "Duplicate value 'a'",
    )
    only_problem(hp_body([{**base, "categoricalValues": ["a"], "maxValue": 3}]), f"{P0}.maxValue")
    only_problem(
        hp_body([{**base, "categoricalValues": ["a"], "scaleType": "UNIT_LOG_SCALE"}]),
        f"{P0}.scaleType",
    )
    validated(hp_body([{**base, "categoricalValues": ["a"], "scaleType": "NONE"}]))


def test_discrete_rules() -> None:
    base = {"parameterName": "batch", "type": "DISCRETE"}
    validated(hp_body([{**base, "discreteValues": [16, 32, 64], "minValue": 99}]))
    only_problem(hp_body([base]), f"{P0}.discreteValues", "at least one value")
    only_problem(
        hp_body([{**base, "discreteValues": [1, 3, 3]}]),
        f"{P0}.discreteValues[2]",
        "strictly increasing",
    )
    only_problem(
        hp_body([{**base, "discreteValues": list(range(1001))}]),
        f"{P0}.discreteValues",
        "at most 1000",
    )
    only_problem(
        hp_body([{**base, "discreteValues": [0, 1], "scaleType": "UNIT_LOG_SCALE"}]),
        f"{P0}.discreteValues",
        "above 0",
    )
    only_problem(
        hp_body([{**base, "discreteValues": [1, "NaN"]}]), f"{P0}.discreteValues[1]", "finite"
    )


def test_grid_search_rejects_double() -> None:
    only_problem(hp_body([LR], algorithm="GRID_SEARCH"), f"{P0}.type", "GRID_SEARCH", "DISCRETE")
    validated(
        hp_body(
            [{"parameterName": "n", "type": "INTEGER", "minValue": 1, "maxValue": 3}],
            algorithm="GRID_SEARCH",
        )
    )


@given(hyperparameter_specs())
def test_generated_valid_specs_pass(spec: HyperparameterSpec) -> None:
    body = hp_body([])
    body["trainingInput"]["hyperparameters"] = spec.to_api()
    job = validated(body)
    assert job.training_input is not None and job.training_input.hyperparameters is not None
    assert job.training_input.hyperparameters.goal in (GoalType.MAXIMIZE, GoalType.MINIMIZE)
