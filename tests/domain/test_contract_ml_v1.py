"""The resource models against the ml v1 discovery document (shared/spec/ml.v1.json).

For every model: the JSON field names equal the schema's properties; every property accepts
its canonical wire value and writes it back unchanged (so int64 fields are strings, int32 and
doubles numbers, timestamps RFC 3339, ...); WireFormat markers match the discovery formats;
enums have exactly the discovery values; nested models point at the referenced schemas.
"""

from __future__ import annotations

import json
from enum import Enum
from pathlib import Path
from typing import Any

import pytest

from mlengine.domain import resources
from mlengine.domain.resources import ApiModel

from .strategies import python_type, wire_format


def _find_discovery_document() -> Path | None:
    here = Path(__file__).resolve()
    repo_root = next((p for p in here.parents if (p / "pyproject.toml").exists()), None)
    if repo_root is None:
        return None
    for candidate in (
        repo_root / "shared" / "spec" / "ml.v1.json",
        repo_root.parent / "shared" / "spec" / "ml.v1.json",
    ):
        if candidate.exists():
            return candidate
    return None


DISCOVERY = _find_discovery_document()
pytestmark = pytest.mark.skipif(
    DISCOVERY is None,
    reason="ml.v1.json not found: expected shared/spec/ml.v1.json beside or inside the repo root",
)

MODELS: list[type[ApiModel]] = sorted(
    (
        obj
        for obj in vars(resources).values()
        if isinstance(obj, type) and issubclass(obj, ApiModel) and obj is not ApiModel
    ),
    key=lambda model: model.__name__,
)


@pytest.fixture(scope="module")
def schemas() -> dict[str, Any]:
    assert DISCOVERY is not None
    return json.loads(DISCOVERY.read_text())["schemas"]  # type: ignore[no-any-return]


def _annotation(model: type[ApiModel], alias: str) -> Any:
    for name, info in model.model_fields.items():
        if (info.alias or name) == alias:
            return info.annotation
    raise KeyError(alias)


def _sample(prop: dict[str, Any], schemas: dict[str, Any]) -> Any:
    """The canonical wire value of a discovery property."""
    if "$ref" in prop:
        return {}
    if "enum" in prop:
        return prop["enum"][-1]
    kind: Any = prop.get("type")
    fmt: Any = prop.get("format")
    if kind == "array":
        return [_sample(prop["items"], schemas)]
    if kind == "object":
        return {"key": _sample(prop["additionalProperties"], schemas)}
    return {
        ("string", None): "text",
        ("string", "int64"): "1234567890123",
        ("integer", "int32"): 7,
        ("number", "double"): 1.5,
        ("boolean", None): True,
        ("string", "google-datetime"): "2017-03-07T17:13:34Z",
        ("string", "google-duration"): "7200s",
        ("string", "byte"): "YWJj",
    }[(kind, fmt)]


def test_every_expected_model_is_present() -> None:
    names = {model.API_SCHEMA for model in MODELS}
    assert {
        "GoogleCloudMlV1__Job",
        "GoogleCloudMlV1__TrainingInput",
        "GoogleCloudMlV1__ReplicaConfig",
        "GoogleCloudMlV1__AcceleratorConfig",
        "GoogleCloudMlV1__DiskConfig",
        "GoogleCloudMlV1__EncryptionConfig",
        "GoogleCloudMlV1__Scheduling",
        "GoogleCloudMlV1__HyperparameterSpec",
        "GoogleCloudMlV1__ParameterSpec",
        "GoogleCloudMlV1__TrainingOutput",
        "GoogleCloudMlV1__HyperparameterOutput",
        "GoogleCloudMlV1_HyperparameterOutput_HyperparameterMetric",
        "GoogleCloudMlV1__BuiltInAlgorithmOutput",
        "GoogleCloudMlV1__PredictionInput",
        "GoogleCloudMlV1__PredictionOutput",
    } <= names


#: The model registry's schemas: Model, Version, everything they nest, and the metadata of
#: their long-running operations.
REGISTRY_SCHEMAS = {
    "GoogleCloudMlV1__Model",
    "GoogleCloudMlV1__Version",
    "GoogleCloudMlV1__AutoScaling",
    "GoogleCloudMlV1__MetricSpec",
    "GoogleCloudMlV1__ManualScaling",
    "GoogleCloudMlV1__RequestLoggingConfig",
    "GoogleCloudMlV1__ExplanationConfig",
    "GoogleCloudMlV1__IntegratedGradientsAttribution",
    "GoogleCloudMlV1__SampledShapleyAttribution",
    "GoogleCloudMlV1__XraiAttribution",
    "GoogleCloudMlV1__ContainerSpec",
    "GoogleCloudMlV1__EnvVar",
    "GoogleCloudMlV1__ContainerPort",
    "GoogleCloudMlV1__RouteMap",
    "GoogleCloudMlV1__OperationMetadata",
}


def test_every_registry_model_is_present() -> None:
    assert {model.API_SCHEMA for model in MODELS} >= REGISTRY_SCHEMAS


def test_every_schema_the_registry_references_is_modelled(schemas: dict[str, Any]) -> None:
    """Closure: each $ref reachable from Model, Version and OperationMetadata has a model."""
    modelled = {model.API_SCHEMA for model in MODELS}
    pending = ["GoogleCloudMlV1__Model", "GoogleCloudMlV1__Version"]
    pending.append("GoogleCloudMlV1__OperationMetadata")
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        for prop in schemas[name]["properties"].values():
            ref = prop.get("$ref") or prop.get("items", {}).get("$ref")
            if ref:
                pending.append(ref)
    assert seen <= modelled


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_field_names_match_the_schema(model: type[ApiModel], schemas: dict[str, Any]) -> None:
    assert model.API_SCHEMA in schemas, f"{model.__name__} names an unknown schema"
    assert set(model.api_field_names()) == set(schemas[model.API_SCHEMA]["properties"])


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_every_property_round_trips_its_wire_form(
    model: type[ApiModel], schemas: dict[str, Any]
) -> None:
    for alias, prop in schemas[model.API_SCHEMA]["properties"].items():
        value = _sample(prop, schemas)
        assert model.from_api({alias: value}).to_api() == {alias: value}, alias


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_int64_fields_are_written_as_strings(
    model: type[ApiModel], schemas: dict[str, Any]
) -> None:
    for alias, prop in schemas[model.API_SCHEMA]["properties"].items():
        if prop.get("format") == "int64":
            assert model.from_api({alias: 42}).to_api() == {alias: "42"}, alias


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_wire_formats_match(model: type[ApiModel], schemas: dict[str, Any]) -> None:
    for alias, prop in schemas[model.API_SCHEMA]["properties"].items():
        fmt = prop.get("format") if prop.get("type") in ("string", "integer", "number") else None
        marker = wire_format(_annotation(model, alias))
        assert (marker.value if marker else None) == fmt, alias


@pytest.mark.parametrize("model", MODELS, ids=lambda m: m.__name__)
def test_enums_and_references_match(model: type[ApiModel], schemas: dict[str, Any]) -> None:
    for alias, prop in schemas[model.API_SCHEMA]["properties"].items():
        target = python_type(_annotation(model, alias))
        if "enum" in prop:
            assert issubclass(target, Enum), alias
            assert [member.value for member in target] == prop["enum"], alias
        if "$ref" in prop:
            assert issubclass(target, ApiModel) and prop["$ref"] == target.API_SCHEMA, alias
        items = prop.get("items", {})
        if "$ref" in items:
            (element,) = target.__args__
            assert items["$ref"] == element.API_SCHEMA, alias
