"""ModelService: models and versions, their rules, and the operations they return.

Versions are deployed by the real VersionDeployer, ticked by hand, with a STAND-IN model
checker (file names only; see ``tests/registry.py``).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mlengine.domain.errors import (
    AlreadyExists,
    Code,
    FailedPrecondition,
    InvalidArgument,
    MlEngineError,
    NotFound,
    PermissionDenied,
)
from mlengine.domain.operations import EMPTY_TYPE, METADATA_TYPE, MODEL_TYPE, VERSION_TYPE
from mlengine.domain.resources import VersionState
from mlengine.services.version_files import VersionFiles
from tests.registry import PROJECT, Registry, build_registry, build_sdist

pytestmark = pytest.mark.stand_in

OPERATION_NAME = re.compile(
    rf"projects/{PROJECT}/operations/[a-z]+_census(_\w+)?-\d+-[0-9a-f]{{6}}"
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    built = build_registry(tmp_path)
    built.create_model(labels={"team": "tabular"})
    yield built
    built.close()


def field_of(error: pytest.ExceptionInfo[MlEngineError]) -> str | None:
    return error.value.field


# --- models --------------------------------------------------------------------------------


class TestModels:
    def test_create_returns_the_full_name_and_defaults(self, registry: Registry) -> None:
        created = registry.models.create_model(
            PROJECT,
            {"name": "income", "description": "d", "defaultVersion": {"name": "x"}, "etag": "YQ=="},
        )
        wire = created.to_api()
        assert wire["name"] == f"projects/{PROJECT}/models/income"
        assert wire["regions"] == ["local"] and wire["description"] == "d"
        assert "defaultVersion" not in wire and wire["etag"] != "YQ=="

    def test_a_full_name_of_the_same_project_is_accepted(self, registry: Registry) -> None:
        created = registry.models.create_model(PROJECT, {"name": f"projects/{PROJECT}/models/m2"})
        assert created.name == f"projects/{PROJECT}/models/m2"
        with pytest.raises(InvalidArgument, match="belongs to project 'other'"):
            registry.models.create_model(PROJECT, {"name": "projects/other/models/m3"})

    @pytest.mark.parametrize(
        ("body", "field", "text"),
        [
            ({}, "name", "required"),
            ({"name": "my-model"}, "name", "Try 'my_model'"),
            ({"name": "1model"}, "name", "must start with a letter"),
            ({"name": "m", "regions": ["a", "b"]}, "regions", "at most one"),
            ({"name": "m", "labels": {"Team": "x"}}, 'labels["Team"]', "lower-case"),
            ({"name": "m", "onlinePredictionLogging": "yes"}, "onlinePredictionLogging", "true"),
        ],
    )
    def test_bad_models_name_the_field(
        self, registry: Registry, body: dict[str, Any], field: str, text: str
    ) -> None:
        with pytest.raises(InvalidArgument, match=re.escape(text)) as caught:
            registry.models.create_model(PROJECT, body)
        assert caught.value.field == field

    def test_names_are_unique_and_unknown_ones_not_found(self, registry: Registry) -> None:
        with pytest.raises(AlreadyExists, match="census"):
            registry.create_model()
        with pytest.raises(NotFound, match=f"projects/{PROJECT}/models/nope"):
            registry.models.get_model(PROJECT, "nope")
        with pytest.raises(InvalidArgument) as bad:
            registry.models.get_model(PROJECT, "bad-name")
        assert bad.value.field == "name"

    def test_list_filters_and_pages(self, registry: Registry) -> None:
        for name in ("census_b", "other"):
            registry.create_model(name, labels={"team": "vision"})
        first, token = registry.models.list_models(PROJECT, page_size=2)
        rest, last = registry.models.list_models(PROJECT, page_size=2, page_token=token)
        names = [m.name.rsplit("/", 1)[1] for m in first + rest if m.name]
        assert names == ["other", "census_b", "census"] and last is None
        filtered, _ = registry.models.list_models(PROJECT, filter="name:census* labels.team=vision")
        assert [m.name for m in filtered] == [f"projects/{PROJECT}/models/census_b"]
        with pytest.raises(InvalidArgument, match="OR, NOT and other fields") as caught:
            registry.models.list_models(PROJECT, filter="description:x")
        assert caught.value.field == "filter"

    def test_pages_hold_20_by_default_and_at_most_100(self, registry: Registry) -> None:
        for i in range(104):
            registry.create_model(f"m{i:03d}")
        default, token = registry.models.list_models(PROJECT)
        capped, _ = registry.models.list_models(PROJECT, page_size=1000)
        assert len(default) == 20 and token is not None
        assert len(capped) == 100
        with pytest.raises(InvalidArgument) as negative:
            registry.models.list_models(PROJECT, page_size=-1)
        assert negative.value.field == "pageSize"

    def test_delete_needs_the_versions_gone_and_returns_a_done_operation(
        self, registry: Registry
    ) -> None:
        registry.deploy("v1")
        with pytest.raises(FailedPrecondition, match=r"still has versions \(v1\)"):
            registry.models.delete_model(PROJECT, "census")
        registry.models.delete_version(PROJECT, "census", "v1")
        registry.deployer.tick()

        operation = registry.models.delete_model(PROJECT, "census")

        assert OPERATION_NAME.fullmatch(operation["name"]), operation["name"]
        assert operation["done"] is True
        assert operation["response"] == {"@type": EMPTY_TYPE}
        metadata = operation["metadata"]
        assert metadata["@type"] == METADATA_TYPE and metadata["operationType"] == "DELETE_MODEL"
        assert metadata["modelName"] == f"projects/{PROJECT}/models/census"
        assert metadata["labels"] == {"team": "tabular"}
        assert registry.store.get_operation(operation["name"]) == operation
        with pytest.raises(NotFound):
            registry.models.get_model(PROJECT, "census")

    def test_patch_description_and_labels(self, registry: Registry) -> None:
        body = {"description": "census income", "labels": {"team": "new"}}
        operation = registry.models.patch_model(PROJECT, "census", body, "description,labels")
        assert operation["done"] is True
        assert operation["metadata"]["operationType"] == "UPDATE_MODEL"
        response = operation["response"]
        assert response["@type"] == MODEL_TYPE and response["description"] == "census income"
        assert registry.models.get_model(PROJECT, "census").labels == {"team": "new"}
        cleared = registry.models.patch_model(PROJECT, "census", {}, "description")
        assert "description" not in cleared["response"]

    @pytest.mark.parametrize(
        ("mask", "text"),
        [(None, "updateMask is required"), ("", "required"), ("regions", "cannot change")],
    )
    def test_patch_masks_are_checked(self, registry: Registry, mask: str | None, text: str) -> None:
        with pytest.raises(InvalidArgument, match=text) as caught:
            registry.models.patch_model(PROJECT, "census", {"regions": ["x"]}, mask)
        assert caught.value.field == "updateMask"

    def test_patch_default_version_needs_a_ready_version(self, registry: Registry) -> None:
        registry.deploy("v1")
        registry.deploy("v2")
        registry.create_version("v3")
        body = {"defaultVersion": {"name": "v2"}}

        operation = registry.models.patch_model(PROJECT, "census", body, "default_version.name")

        assert operation["response"]["defaultVersion"]["name"].endswith("/versions/v2")
        assert registry.models.get_version(PROJECT, "census", "v2").is_default is True
        assert registry.models.get_version(PROJECT, "census", "v1").is_default is None
        with pytest.raises(FailedPrecondition, match="CREATING; only a READY"):
            registry.models.patch_model(
                PROJECT, "census", {"defaultVersion": {"name": "v3"}}, "defaultVersion.name"
            )
        with pytest.raises(InvalidArgument) as missing:
            registry.models.patch_model(PROJECT, "census", {}, "defaultVersion.name")
        assert missing.value.field == "defaultVersion.name"


# --- versions ------------------------------------------------------------------------------


class TestVersions:
    def test_create_returns_an_unfinished_operation_and_a_creating_version(
        self, registry: Registry
    ) -> None:
        origin = registry.model_dir()
        operation = registry.create_version("v1", origin=origin, labels={"stage": "dev"})

        assert OPERATION_NAME.fullmatch(operation["name"]), operation["name"]
        assert operation["done"] is False and "response" not in operation
        metadata = operation["metadata"]
        assert metadata["@type"] == METADATA_TYPE
        assert metadata["operationType"] == "CREATE_VERSION"
        assert metadata["modelName"] == f"projects/{PROJECT}/models/census"
        assert metadata["labels"] == {"stage": "dev"}
        assert metadata["version"]["name"] == f"projects/{PROJECT}/models/census/versions/v1"
        assert metadata["version"]["state"] == "CREATING"
        version = registry.models.get_version(PROJECT, "census", "v1")
        assert version.state is VersionState.CREATING and version.deployment_uri == str(origin)
        assert registry.store.get_operation(operation["name"]) == operation

    def test_the_first_ready_version_becomes_the_default(self, registry: Registry) -> None:
        done = registry.deploy("v1")
        second = registry.deploy("v2")

        assert done["done"] is True and done["response"]["@type"] == VERSION_TYPE
        assert done["response"]["state"] == "READY" and done["response"]["isDefault"] is True
        assert done["response"]["framework"] == "SCIKIT_LEARN"
        assert "isDefault" not in second["response"]
        model = registry.models.get_model(PROJECT, "census")
        assert model.default_version is not None and model.default_version.is_default
        assert model.default_version.name == f"projects/{PROJECT}/models/census/versions/v1"
        listed, _ = registry.models.list_versions(PROJECT, "census")
        assert [(v.name.rsplit("/", 1)[1], v.is_default) for v in listed if v.name] == [
            ("v2", None),
            ("v1", True),
        ]

    def test_set_default_switches_and_needs_ready(self, registry: Registry) -> None:
        registry.deploy("v1")
        registry.deploy("v2")
        registry.create_version("v3")

        switched = registry.models.set_default_version(PROJECT, "census", "v2")

        assert switched.is_default is True and switched.state is VersionState.READY
        model = registry.models.get_model(PROJECT, "census")
        assert model.default_version is not None and model.default_version.name == switched.name
        assert registry.models.get_version(PROJECT, "census", "v1").is_default is None
        with pytest.raises(FailedPrecondition, match="CREATING"):
            registry.models.set_default_version(PROJECT, "census", "v3")
        with pytest.raises(NotFound):
            registry.models.set_default_version(PROJECT, "census", "v9")

    @pytest.mark.parametrize(
        ("body", "field"),
        [
            ({"name": "v-1", "deploymentUri": "/x"}, "name"),
            ({"name": "v1"}, "deploymentUri"),
            ({"name": "v1", "deploymentUri": "relative/path"}, "deploymentUri"),
            ({"name": "v1", "deploymentUri": "/does/not/exist"}, "deploymentUri"),
            ({"name": "v1", "deploymentUri": "http://example.com/m"}, "deploymentUri"),
            ({"name": "v1", "deploymentUri": "/x", "framework": "PYTORCH"}, "framework"),
            (
                {"name": "v1", "deploymentUri": "/x", "manualScaling": {}, "autoScaling": {}},
                "manualScaling",
            ),
            ({"name": "v1", "deploymentUri": "/x", "serviceAccount": "sa"}, "serviceAccount"),
            ({"name": "v1", "deploymentUri": "/x", "bogus": 1}, "bogus"),
        ],
    )
    def test_bad_versions_name_the_field(
        self, registry: Registry, body: dict[str, Any], field: str
    ) -> None:
        if body.get("deploymentUri") == "/x":
            body = {**body, "deploymentUri": str(registry.model_dir())}
        with pytest.raises(InvalidArgument) as caught:
            registry.models.create_version(PROJECT, "census", body)
        assert caught.value.field == field
        assert registry.models.list_versions(PROJECT, "census") == ([], None)

    def test_containers_are_not_supported_yet(self, registry: Registry) -> None:
        container = {"name": "v1", "container": {"image": "img"}, "machineType": "n1-standard-2"}
        with pytest.raises(MlEngineError) as caught:
            registry.models.create_version(PROJECT, "census", container)
        assert caught.value.code is Code.UNIMPLEMENTED and caught.value.field == "container"

    def test_a_prediction_class_with_staged_packages_is_deployed(self, registry: Registry) -> None:
        uri = registry.packages.stage("greeter-0.1.tar.gz", build_sdist("greeter", "0.1", {}))
        operation = registry.deploy(
            "v1",
            origin=registry.model_dir("routine", {"greeting.txt": b"Hello"}),
            predictionClass="greeter.Greeter",
            packageUris=[uri],
            framework="FRAMEWORK_UNSPECIFIED",
        )
        assert operation["response"]["state"] == "READY", operation
        assert operation["response"]["predictionClass"] == "greeter.Greeter"
        assert operation["response"]["packageUris"] == [uri]
        # CUSTOM is not in the API's enum: the framework stays as given.
        assert operation["response"]["framework"] == "FRAMEWORK_UNSPECIFIED"
        stored = registry.store.get_version(PROJECT, "census", "v1")
        assert stored.runtime.framework == "CUSTOM" and len(stored.runtime.packages) == 1

    def test_a_prediction_class_refuses_a_framework(self, registry: Registry) -> None:
        body = {
            "name": "v1",
            "deploymentUri": str(registry.model_dir()),
            "predictionClass": "greeter.Greeter",
            "framework": "SCIKIT_LEARN",
        }
        with pytest.raises(InvalidArgument) as caught:
            registry.models.create_version(PROJECT, "census", body)
        assert caught.value.field == "framework"
        assert "predictionClass" in caught.value.message
        assert registry.models.list_versions(PROJECT, "census") == ([], None)

    @pytest.mark.parametrize(
        ("uri", "text"),
        [
            ("mlengine-artifacts://packages/" + "0" * 64 + "/gone-0.1.tar.gz", "upload"),
            ("/no/such/dir/pkg-0.1.tar.gz", "pkg-0.1.tar.gz"),
            ("http://example.com/pkg-0.1.tar.gz", "schemes"),
            ("relative/pkg-0.1.tar.gz", "absolute path"),
            ("gs://bucket/pkg/notes.txt", "must end in"),
            ("  ", "empty"),
        ],
    )
    def test_bad_package_uris_name_their_index(
        self, registry: Registry, uri: str, text: str
    ) -> None:
        body = {
            "name": "v1",
            "deploymentUri": str(registry.model_dir()),
            "predictionClass": "greeter.Greeter",
            "packageUris": [uri],
        }
        with pytest.raises(InvalidArgument) as caught:
            registry.models.create_version(PROJECT, "census", body)
        assert caught.value.field == "packageUris[0]"
        assert text in caught.value.message
        assert registry.models.list_versions(PROJECT, "census") == ([], None)

    def test_duplicates_and_missing_models(self, registry: Registry) -> None:
        registry.create_version("v1")
        with pytest.raises(AlreadyExists, match="versions/v1"):
            registry.create_version("v1")
        with pytest.raises(NotFound, match="models/nope"):
            registry.create_version("v1", model_id="nope")
        with pytest.raises(NotFound, match="versions/nope"):
            registry.models.get_version(PROJECT, "census", "nope")

    def test_no_update_or_delete_while_creating(self, registry: Registry) -> None:
        registry.create_version("v1")
        with pytest.raises(FailedPrecondition, match="CREATING; it cannot be updated"):
            registry.models.patch_version(PROJECT, "census", "v1", {}, "description")
        with pytest.raises(FailedPrecondition, match="CREATING; it cannot be deleted"):
            registry.models.delete_version(PROJECT, "census", "v1")

    def test_delete_rules_for_the_default(self, registry: Registry) -> None:
        registry.deploy("v1")
        registry.deploy("v2")
        with pytest.raises(FailedPrecondition, match="default and other versions remain"):
            registry.models.delete_version(PROJECT, "census", "v1")

        operation = registry.models.delete_version(PROJECT, "census", "v2")

        assert operation["done"] is False
        assert operation["metadata"]["operationType"] == "DELETE_VERSION"
        assert operation["metadata"]["version"]["state"] == "DELETING"
        assert registry.state("v2") is VersionState.DELETING
        with pytest.raises(FailedPrecondition, match="DELETING"):
            registry.models.delete_version(PROJECT, "census", "v2")
        registry.deployer.tick()
        finished = registry.store.get_operation(operation["name"])
        assert finished["done"] is True and finished["response"] == {"@type": EMPTY_TYPE}
        with pytest.raises(NotFound):
            registry.models.get_version(PROJECT, "census", "v2")
        registry.models.delete_version(PROJECT, "census", "v1")  # the last one: allowed
        registry.deployer.tick()
        assert registry.models.get_model(PROJECT, "census").default_version is None

    def test_patch_masked_fields(self, registry: Registry) -> None:
        registry.deploy("v1")
        body = {
            "description": "first",
            "labels": {"stage": "prod"},
            "requestLoggingConfig": {"bigqueryTableName": "p.d.t", "samplingPercentage": 0.25},
            "autoScaling": {"minNodes": 2, "maxNodes": 9},
            "runtimeVersion": "2.11",
        }
        mask = "description,labels,request_logging_config,autoScaling.minNodes"

        operation = registry.models.patch_version(PROJECT, "census", "v1", body, mask)

        assert operation["done"] is True
        assert operation["metadata"]["operationType"] == "UPDATE_VERSION"
        response = operation["response"]
        assert response["@type"] == VERSION_TYPE and response["isDefault"] is True
        assert response["autoScaling"] == {"minNodes": 2}  # maxNodes is not in the mask
        assert response["requestLoggingConfig"]["samplingPercentage"] == 0.25
        assert "runtimeVersion" not in response
        stored = registry.models.get_version(PROJECT, "census", "v1")
        assert stored.description == "first" and stored.labels == {"stage": "prod"}

    @pytest.mark.parametrize(
        ("body", "mask", "field"),
        [
            ({}, None, "updateMask"),
            ({}, "machineType", "updateMask"),
            (
                {"manualScaling": {"nodes": 2}},
                "autoScaling.minNodes,manualScaling.nodes",
                "manualScaling",
            ),
            ({"manualScaling": {"nodes": -1}}, "manualScaling.nodes", "manualScaling.nodes"),
            (
                {"requestLoggingConfig": {"bigqueryTableName": "table"}},
                "requestLoggingConfig",
                "requestLoggingConfig.bigqueryTableName",
            ),
            (
                {"requestLoggingConfig": {"bigqueryTableName": "p.d.t", "samplingPercentage": 2}},
                "requestLoggingConfig",
                "requestLoggingConfig.samplingPercentage",
            ),
        ],
    )
    def test_bad_patches_name_the_field(
        self, registry: Registry, body: dict[str, Any], mask: str | None, field: str
    ) -> None:
        registry.deploy("v1")
        with pytest.raises(InvalidArgument) as caught:
            registry.models.patch_version(PROJECT, "census", "v1", body, mask)
        assert caught.value.field == field

    def test_list_filters_by_state_and_refuses_unknown_states(self, registry: Registry) -> None:
        registry.deploy("v1")
        registry.create_version("v2")
        ready, _ = registry.models.list_versions(PROJECT, "census", filter="state=READY")
        assert [v.name.rsplit("/", 1)[1] for v in ready if v.name] == ["v1"]
        with pytest.raises(InvalidArgument, match="unknown state 'DONE'"):
            registry.models.list_versions(PROJECT, "census", filter="state=DONE")
        with pytest.raises(NotFound):
            registry.models.list_versions(PROJECT, "nope")


def test_local_deployment_uris_respect_the_allow_list(tmp_path: Path) -> None:
    built = build_registry(tmp_path)
    try:
        allowed = tmp_path / "allowed"
        allowed.mkdir()
        files = VersionFiles(built.artifacts, tmp_path / "work", allowed_local_roots=[allowed])
        with pytest.raises(PermissionDenied) as caught:
            files.check(str(built.model_dir()))
        assert caught.value.field == "deploymentUri"
        files.check(str(allowed))
    finally:
        built.close()
