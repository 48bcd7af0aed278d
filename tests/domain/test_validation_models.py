"""Semantic rules of Models and Versions, their update masks and patches (spec §1.10-1.11,
§2.2, §7.4), and the registry's list filter and operation bodies."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.domain.errors import Code, InvalidArgument, NotFound
from mlengine.domain.names import ModelName
from mlengine.domain.operations import (
    EMPTY_TYPE,
    METADATA_TYPE,
    VERSION_TYPE,
    cancellation_requested,
    cancelled_error,
    failed,
    metadata_of,
    new_operation,
    operation_name,
    succeeded,
    with_metadata,
)
from mlengine.domain.registry_filter import parse_model_filter, parse_version_filter
from mlengine.domain.resources import (
    Model,
    OperationMetadata,
    OperationType,
    Version,
    VersionState,
    parse_model,
    parse_version,
)
from mlengine.domain.validation_models import (
    model_update_mask,
    patched_model,
    patched_version,
    resource_id,
    validate_model,
    validate_version,
    version_update_mask,
)

from .strategies import json_documents, models

NOW = datetime(2024, 5, 1, 9, 30, tzinfo=UTC)


def version_body(**fields: Any) -> dict[str, Any]:
    body = {"name": "v1", "deploymentUri": "/srv/models/census/1", **fields}
    return {key: value for key, value in body.items() if value is not None}


def problem(body: dict[str, Any]) -> InvalidArgument:
    with pytest.raises(InvalidArgument) as raised:
        validate_version(parse_version(body))
    return raised.value


# --- models --------------------------------------------------------------------------------


def test_a_model_gets_the_local_region() -> None:
    assert validate_model(Model(name="census")).regions == ["local"]
    assert validate_model(Model(name="census", regions=["us-central1"])).regions == ["us-central1"]


@pytest.mark.parametrize(
    ("body", "field", "fragment"),
    [
        ({}, "name", "required"),
        ({"name": "my-model"}, "name", "Try 'my_model'"),
        ({"name": "m" * 129}, "name", "at most 128"),
        ({"name": "m", "regions": ["a", "b"]}, "regions", "at most one"),
        ({"name": "m", "regions": [" "]}, "regions[0]", "empty"),
        ({"name": "m", "description": "x" * 9000}, "description", "at most 8192"),
        ({"name": "m", "labels": {"a": "B"}}, 'labels["a"]', "lower-case"),
    ],
)
def test_model_rules_name_the_field(body: dict[str, Any], field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_model(parse_model(body))
    assert raised.value.field == field and fragment in raised.value.message


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_model(parse_model({"name": "a-b", "regions": ["x", "y"]}))
    assert raised.value.field == "name" and "1 more problem" in raised.value.message


def test_resource_ids_accept_bare_ids_and_own_full_names() -> None:
    parent = ModelName("p", "census")
    assert resource_id("census", project="p") == "census"
    assert resource_id("projects/p/models/census", project="p") == "census"
    assert resource_id("projects/p/models/census/versions/v1", parent=parent) == "v1"
    with pytest.raises(InvalidArgument, match="not a version of"):
        resource_id("projects/p/models/other/versions/v1", parent=parent)
    with pytest.raises(InvalidArgument, match="expected the form"):
        resource_id("projects/p/census", project="p")
    with pytest.raises(InvalidArgument) as raised:
        resource_id("", parent=parent, field="defaultVersion.name")
    assert raised.value.field == "defaultVersion.name"


# --- versions ------------------------------------------------------------------------------


def test_a_valid_version_keeps_its_fields_and_drops_request_logging() -> None:
    body = version_body(
        framework="SCIKIT_LEARN",
        runtimeVersion="2.11",
        pythonVersion="3.7",
        machineType="n1-standard-4",
        acceleratorConfig={"count": "1", "type": "NVIDIA_TESLA_T4"},
        autoScaling={
            "minNodes": 1,
            "maxNodes": 3,
            "metrics": [{"name": "CPU_USAGE", "target": 60}],
        },
        explanationConfig={"sampledShapleyAttribution": {"numPaths": 50}},
        requestLoggingConfig={"bigqueryTableName": "p.d.t"},
        labels={"stage": "dev"},
    )
    version = validate_version(parse_version(body))
    wire = version.to_api()
    assert wire["autoScaling"]["metrics"] == [{"name": "CPU_USAGE", "target": 60}]
    assert wire["acceleratorConfig"] == {"count": "1", "type": "NVIDIA_TESLA_T4"}
    assert "requestLoggingConfig" not in wire


@pytest.mark.parametrize(
    ("fields", "field", "fragment"),
    [
        ({"name": None}, "name", "required"),
        ({"name": "v.1"}, "name", "Try 'v_1'"),
        ({"deploymentUri": None}, "deploymentUri", "required"),
        ({"deploymentUri": "/a\x00b"}, "deploymentUri", "NUL"),
        ({"routes": {"predict": "/p"}}, "routes", "container"),
        (
            {"manualScaling": {"nodes": 1}, "autoScaling": {"minNodes": 1}},
            "manualScaling",
            "not both",
        ),
        ({"manualScaling": {"nodes": -1}}, "manualScaling.nodes", "0 or more"),
        ({"autoScaling": {"minNodes": -1}}, "autoScaling.minNodes", "0 or more"),
        ({"autoScaling": {"minNodes": 4, "maxNodes": 2}}, "autoScaling.maxNodes", "below"),
        (
            {"autoScaling": {"metrics": [{"target": 0}]}},
            "autoScaling.metrics[0].target",
            "1 to 100",
        ),
        ({"serviceAccount": "sa@p"}, "serviceAccount", "container"),
        ({"predictionClass": "NoModule"}, "predictionClass", "module.Class"),
        (
            {"predictionClass": "m.P", "framework": "SCIKIT_LEARN"},
            "framework",
            "unset with 'predictionClass'",
        ),
        ({"packageUris": ["a", " "]}, "packageUris[1]", "empty"),
        ({"pythonVersion": "2.6"}, "pythonVersion", "Unsupported"),
        ({"acceleratorConfig": {"count": "2"}}, "acceleratorConfig.type", "not set"),
        (
            {
                "explanationConfig": {
                    "xraiAttribution": {"numIntegralSteps": 5},
                    "sampledShapleyAttribution": {"numPaths": 5},
                }
            },
            "explanationConfig.xraiAttribution",
            "one attribution method",
        ),
        (
            {"explanationConfig": {"xraiAttribution": {"numIntegralSteps": 0}}},
            "explanationConfig.xraiAttribution.numIntegralSteps",
            "positive",
        ),
        ({"labels": {"Stage": "x"}}, 'labels["Stage"]', "lower-case"),
    ],
)
def test_version_rules_name_the_field(fields: dict[str, Any], field: str, fragment: str) -> None:
    error = problem(version_body(**fields))
    assert error.field == field, error.message
    assert fragment in error.message, error.message


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"runtimeVersion": "2.11"}, "runtimeVersion"),
        ({"packageUris": ["gs://b/p.tar.gz"]}, "packageUris"),
        ({"framework": "XGBOOST"}, "framework"),
        ({"pythonVersion": "3.7"}, "pythonVersion"),
        ({"predictionClass": "m.P"}, "predictionClass"),
        ({"machineType": None}, "machineType"),
        ({"container": {}}, "container.image"),
        ({"container": {"image": "i", "env": [{"name": "AIP_X"}]}}, "container.env[0].name"),
        ({"container": {"image": "i", "env": [{"name": "1X"}]}}, "container.env[0].name"),
        (
            {"container": {"image": "i", "ports": [{"containerPort": 70000}]}},
            "container.ports[0].containerPort",
        ),
    ],
)
def test_a_container_excludes_the_built_in_runtime(fields: dict[str, Any], field: str) -> None:
    body = version_body(
        deploymentUri=None, container={"image": "gcr.io/p/i"}, machineType="n1-standard-2"
    )
    body = {k: v for k, v in {**body, **fields}.items() if v is not None}
    assert problem(body).field == field


def test_a_container_needs_no_deployment_uri() -> None:
    body = {"name": "v1", "container": {"image": "i", "ports": [{"containerPort": 8080}]}}
    version = validate_version(parse_version({**body, "machineType": "n1-standard-2"}))
    assert version.deployment_uri is None and version.container is not None


# --- update masks and patches ------------------------------------------------------------


def test_masks_accept_both_spellings_and_refuse_the_rest() -> None:
    assert model_update_mask("description, default_version.name") == {
        "description",
        "defaultVersion.name",
    }
    assert version_update_mask("auto_scaling.min_nodes,manualScaling.nodes") == {
        "autoScaling.minNodes",
        "manualScaling.nodes",
    }
    for text, fragment in ((None, "required"), (" , ", "required"), ("name", "'name'")):
        with pytest.raises(InvalidArgument, match=fragment) as raised:
            version_update_mask(text)
        assert raised.value.field == "updateMask"
    with pytest.raises(InvalidArgument, match="it can change description, labels"):
        model_update_mask("regions")


def test_a_model_patch_touches_only_masked_fields() -> None:
    current = Model(name="projects/p/models/m", description="old", labels={"a": "b"})
    patch = Model(description="new", labels={"c": "d"}, regions=["x"])
    assert patched_model(current, patch, frozenset({"labels"})) == current.model_copy(
        update={"labels": {"c": "d"}}
    )
    with pytest.raises(InvalidArgument):
        patched_model(current, Model(labels={"C": "d"}), frozenset({"labels"}))


def test_a_version_patch_merges_scaling_and_checks_the_result() -> None:
    current = Version(name="n", deployment_uri="/x", auto_scaling={"minNodes": 1, "maxNodes": 5})
    patch = Version(auto_scaling={"minNodes": 3, "maxNodes": 99}, description="d")
    result = patched_version(current, patch, frozenset({"autoScaling.minNodes"}))
    assert result.to_api()["autoScaling"] == {"minNodes": 3, "maxNodes": 5}
    assert result.description is None
    with pytest.raises(InvalidArgument) as raised:
        patched_version(
            current, Version(manual_scaling={"nodes": 2}), frozenset({"manualScaling.nodes"})
        )
    assert raised.value.field == "manualScaling"


# --- list filters ------------------------------------------------------------------------------


def test_filters_become_queries() -> None:
    query = parse_version_filter('name:v* AND labels.team="a b" labels:owner state=ready')
    assert query.name_prefixes == ("v",) and query.labels == {"team": "a b"}
    assert query.label_keys == {"owner"} and query.states == {VersionState.READY}
    assert parse_model_filter("  ") == parse_model_filter(None)
    assert parse_model_filter("name=census").names == ("census",)


@pytest.mark.parametrize(
    ("text", "fragment"),
    [
        ("name:a OR name:b", "expected a term"),
        ("NOT name:a", "expected a term"),
        ("state=READY", "unsupported field 'state'"),
        ("labels.a=x labels.a=y", "cannot equal both"),
        ("name<a", "expected a term"),
        ("x" * 3000, "longer than"),
    ],
)
def test_unsupported_filters_are_refused(text: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=fragment) as raised:
        parse_model_filter(text)
    assert raised.value.field == "filter"


# --- operations --------------------------------------------------------------------------------


def test_operation_bodies() -> None:
    name = operation_name("p", OperationType.CREATE_VERSION, "census", "v1", now=NOW)
    assert name.startswith("projects/p/operations/create_census_v1-1714555800000-")
    assert name != operation_name("p", OperationType.CREATE_VERSION, "census", "v1", now=NOW)
    long_name = operation_name("p", OperationType.DELETE_MODEL, "m" * 128, "v" * 128, now=NOW)
    assert len(long_name.rsplit("/", 1)[1]) <= 255

    metadata = OperationMetadata(create_time=NOW, operation_type=OperationType.CREATE_VERSION)
    started = new_operation(name, metadata)
    assert started == {
        "name": name,
        "metadata": {
            "@type": METADATA_TYPE,
            "createTime": "2024-05-01T09:30:00Z",
            "operationType": "CREATE_VERSION",
        },
        "done": False,
    }
    assert metadata_of(started) == metadata and not cancellation_requested(started)
    flagged = with_metadata(started, is_cancellation_requested=True)
    assert cancellation_requested(flagged)

    done = succeeded(started, VERSION_TYPE, {"name": "v"}, now=NOW)
    assert done["done"] is True and done["response"] == {"@type": VERSION_TYPE, "name": "v"}
    assert done["metadata"]["startTime"] == done["metadata"]["endTime"] == "2024-05-01T09:30:00Z"
    empty = succeeded(started, EMPTY_TYPE, None, now=NOW)
    assert empty["response"] == {"@type": EMPTY_TYPE}

    error = failed(started, NotFound("gone"), now=NOW)["error"]
    assert error == {"code": 5, "message": "gone"}  # the rpc number, not HTTP 404
    cancelled = cancelled_error("stop")
    assert cancelled.code is Code.CANCELLED
    assert failed(started, cancelled, now=NOW)["error"]["code"] == 1


# --- robustness ----------------------------------------------------------------------------


@given(models(Version))
def test_versions_round_trip_through_json(version: Version) -> None:
    assert parse_version(version.to_api()) == version


@given(models(Model))
def test_models_round_trip_through_json(model: Model) -> None:
    assert parse_model(model.to_api()) == model


@settings(max_examples=200)
@given(json_documents, st.sampled_from(["model", "version"]))
def test_parsing_and_validating_anything_raises_only_invalid_argument(
    document: object, kind: str
) -> None:
    try:
        if kind == "model":
            validate_model(parse_model(document))
        else:
            validate_version(parse_version(document))
    except InvalidArgument as error:
        assert error.message
