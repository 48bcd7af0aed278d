"""StoreVersionSource: what the data plane learns about a READY version from the registry.

Versions are deployed by the real deployer with the STAND-IN checker (``tests/registry.py``);
what is checked here is the view of a custom prediction routine: its class, and local files of
the packages the deployer published with the version.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mlengine.serving.registry_source import StoreVersionSource
from tests.registry import PROJECT, ROUTINE_MODULE, Registry, build_registry, build_sdist

pytestmark = pytest.mark.stand_in


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    built = build_registry(tmp_path)
    built.create_model()
    yield built
    built.close()


def deploy_routine(registry: Registry, version_id: str, prediction_class: str) -> None:
    sdist = build_sdist("greeter", "0.1", {"greeter.py": ROUTINE_MODULE})
    uri = registry.packages.stage("greeter-0.1.tar.gz", sdist)
    origin = registry.model_dir("routine", {"greeting.txt": b"Hello"})
    operation = registry.deploy(
        version_id, origin=origin, predictionClass=prediction_class, packageUris=[uri]
    )
    assert operation["response"]["state"] == "READY", operation


def test_a_routine_resolves_to_its_class_and_published_packages(registry: Registry) -> None:
    deploy_routine(registry, "v1", "greeter.Greeter")
    source = StoreVersionSource(registry.store, registry.artifacts)

    deployed = source.resolve(PROJECT, "census", None)

    runtime = registry.store.get_version(PROJECT, "census", "v1").runtime
    assert deployed.framework == "CUSTOM" and deployed.prediction_class == "greeter.Greeter"
    assert deployed.package_paths == (registry.artifacts.local_path(runtime.packages[0]),)
    assert deployed.package_paths[0].name == "greeter-0.1.tar.gz"
    assert deployed.package_paths[0].is_file()
    assert deployed.revision and deployed.revision != runtime.sha256


def test_the_revision_covers_the_routine_s_class(registry: Registry) -> None:
    """Same files, another class: a version re-created so is loaded afresh."""
    source = StoreVersionSource(registry.store, registry.artifacts)
    deploy_routine(registry, "v1", "greeter.Greeter")
    first = source.resolve(PROJECT, "census", "v1")
    registry.deploy("v2")  # keep a default so that v1 can be deleted
    registry.models.set_default_version(PROJECT, "census", "v2")
    registry.models.delete_version(PROJECT, "census", "v1")
    registry.deployer.tick()

    deploy_routine(registry, "v1", "greeter.Other")
    second = source.resolve(PROJECT, "census", "v1")

    assert first.model_dir == second.model_dir and first.revision != second.revision


def test_plain_versions_keep_the_copy_s_digest_as_revision(registry: Registry) -> None:
    registry.deploy("v1")
    deployed = StoreVersionSource(registry.store, registry.artifacts).resolve(
        PROJECT, "census", "v1"
    )
    runtime = registry.store.get_version(PROJECT, "census", "v1").runtime
    assert deployed.revision == runtime.sha256 and deployed.package_paths == ()
    assert deployed.prediction_class is None
