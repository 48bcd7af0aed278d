"""Semantic rules of a batch-prediction Job."""

from __future__ import annotations

from typing import Any

import pytest

from mlengine.domain.resources import DataFormat, PredictionInput
from mlengine.domain.validation import validate_prediction_input

from .validation_helpers import only_problem, validated

PI = "predictionInput"


def _body(**fields: Any) -> dict[str, Any]:
    prediction = {
        "dataFormat": "JSON",
        "inputPaths": ["data/instances-*.json"],
        "outputPath": "out/",
        "modelName": "projects/demo/models/census",
        **fields,
    }
    return {"jobId": "predict_1", "predictionInput": {k: v for k, v in prediction.items() if v}}


def test_minimal_prediction_job_gets_defaults() -> None:
    job = validated(_body())
    assert job.to_api()["predictionInput"] == {
        "dataFormat": "JSON",
        "outputDataFormat": "JSON",
        "inputPaths": ["data/instances-*.json"],
        "outputPath": "out/",
        "modelName": "projects/demo/models/census",
        "region": "local",
        "maxWorkerCount": "10",
        "batchSize": "64",
    }


def test_explicit_values_are_kept() -> None:
    job = validated(_body(outputDataFormat="CSV", batchSize="8", region="us-central1"))
    assert job.prediction_input is not None
    assert job.prediction_input.output_data_format is DataFormat.CSV
    assert job.prediction_input.batch_size == 8


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"dataFormat": None}, f"{PI}.dataFormat", "required"),
        ({"dataFormat": "DATA_FORMAT_UNSPECIFIED"}, f"{PI}.dataFormat", "required"),
        ({"dataFormat": "CSV"}, f"{PI}.dataFormat", "output format only"),
        ({"outputDataFormat": "TF_RECORD"}, f"{PI}.outputDataFormat", "input format only"),
        ({"inputPaths": None}, f"{PI}.inputPaths", "at least one"),
        ({"inputPaths": ["a", ""]}, f"{PI}.inputPaths[1]", "empty"),
        ({"outputPath": None}, f"{PI}.outputPath", "required"),
        ({"modelName": None}, f"{PI}.modelName", "got none"),
        ({"uri": "gs://b/model"}, f"{PI}.uri", "got modelName, uri"),
        ({"modelName": "census"}, f"{PI}.modelName", "projects/{project}/models/{model}"),
        ({"modelName": None, "versionName": "projects/demo/models/census"},
         f"{PI}.versionName", "versions/{version}"),
        ({"batchSize": -1}, f"{PI}.batchSize", "0 or more"),
        ({"maxWorkerCount": -1}, f"{PI}.maxWorkerCount", "0 or more"),
    ],
)  # fmt: skip
def test_prediction_rules(fields: dict[str, Any], field: str, fragment: str) -> None:
    only_problem(_body(**fields), field, fragment)


@pytest.mark.parametrize(
    "source",
    [
        {"modelName": None, "versionName": "projects/demo/models/census/versions/v1"},
        {"modelName": None, "uri": "/models/census"},
    ],
)
def test_other_model_sources(source: dict[str, Any]) -> None:
    validated(_body(**source))


def test_validate_prediction_input_alone() -> None:
    result = validate_prediction_input(
        PredictionInput(data_format=DataFormat.TEXT, input_paths=["a"], output_path="o", uri="/m")
    )
    assert result.region == "local"
    assert result.output_data_format is DataFormat.JSON
