"""VersionDeployer: CREATING → READY | FAILED, DELETING → gone, cancels and restarts.

Most tests validate models with the STAND-IN checker of ``tests/registry.py`` (marked
``stand_in``); ``TestRealChecker`` runs the real subprocess checker
(``python -m mlengine.serving.check_version``) and is skipped only where
``mlengine.serving.predictor`` cannot be imported.
"""

from __future__ import annotations

import hashlib
import json
import sys
import threading
import types
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import fsspec
import pytest

from mlengine.domain.errors import FailedPrecondition, InvalidArgument
from mlengine.domain.registry_filter import RegistryQuery
from mlengine.domain.resources import VersionState
from mlengine.scheduler.deployer import VersionDeployer
from mlengine.services.version_files import MAX_FILES, tree_digest
from mlengine.serving import check_version
from mlengine.serving.check_version import SubprocessModelChecker
from tests.registry import (
    PROJECT,
    ROUTINE_MODULE,
    Registry,
    StandInChecker,
    build_registry,
    build_sdist,
    predictor_available,
    sklearn_model_dir,
)


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    built = build_registry(tmp_path)
    built.create_model()
    yield built
    built.close()


def artifact_of(registry: Registry, version_id: str) -> Path:
    artifact = registry.store.get_version(PROJECT, "census", version_id).runtime.artifact
    assert artifact is not None
    return registry.files.local_dir(artifact)


@pytest.mark.stand_in
class TestCreate:
    def test_ready_with_an_immutable_content_addressed_copy(self, registry: Registry) -> None:
        origin = registry.model_dir(files={"model.joblib": b"weights", "assets/vocab.txt": b"a"})
        operation = registry.deploy("v1", origin=origin)

        stored = registry.store.get_version(PROJECT, "census", "v1")
        copy = artifact_of(registry, "v1")
        assert operation["done"] and operation["response"]["state"] == "READY"
        assert stored.runtime.sha256 == tree_digest(origin) == copy.name
        assert stored.runtime.artifact == f"models/{PROJECT}/census/v1/{copy.name}"
        assert stored.runtime.framework == "SCIKIT_LEARN"
        assert (copy / "assets" / "vocab.txt").read_bytes() == b"a"
        metadata = operation["metadata"]
        assert metadata["createTime"] <= metadata["startTime"] <= metadata["endTime"]

        (origin / "model.joblib").write_bytes(b"changed later")  # the original is irrelevant now
        assert (copy / "model.joblib").read_bytes() == b"weights"

    def test_the_checker_gets_the_copy_and_the_requested_framework(self, tmp_path: Path) -> None:
        checker = StandInChecker()
        registry = build_registry(tmp_path, checker)
        try:
            registry.create_model()
            registry.deploy("v1", framework="SCIKIT_LEARN")
            registry.deploy("v2", origin=registry.model_dir("onnx", {"model.onnx": b"x"}))
            (first_dir, first_framework), (second_dir, second_framework) = checker.calls
            assert first_dir == artifact_of(registry, "v1") and first_framework == "SCIKIT_LEARN"
            assert second_dir == artifact_of(registry, "v2") and second_framework is None
            # ONNX is wider than the API's framework enum: kept in the runtime only.
            onnx = registry.store.get_version(PROJECT, "census", "v2")
            assert onnx.version.framework is None and onnx.runtime.framework == "ONNX"
        finally:
            registry.close()

    def test_a_failed_check_fails_the_version_and_its_operation(self, registry: Registry) -> None:
        origin = registry.model_dir("bad", {"weights.bin": b"?"})
        operation = registry.deploy("v1", origin=origin)

        version = registry.store.get_version(PROJECT, "census", "v1")
        assert version.state is VersionState.FAILED
        assert version.version.error_message is not None
        assert "No model file found" in version.version.error_message
        assert operation["done"] and "response" not in operation
        assert operation["error"]["code"] == 9  # FAILED_PRECONDITION, as an rpc code number
        assert operation["error"]["message"] == version.version.error_message
        assert registry.store.get_model(PROJECT, "census").default_version is None
        assert registry.artifacts.list(f"models/{PROJECT}/census/v1") == []

    @pytest.mark.parametrize(
        ("files", "reason"),
        [({}, "the folder is empty"), ({f"f{i}": b"" for i in range(MAX_FILES + 1)}, "at most")],
    )
    def test_bad_folders_fail_with_the_reason(
        self, registry: Registry, files: dict[str, bytes], reason: str
    ) -> None:
        origin = registry.root / "folder"
        origin.mkdir()
        for name, data in files.items():
            (origin / name).write_bytes(data)
        registry.deploy("v1", origin=origin)
        message = registry.store.get_version(PROJECT, "census", "v1").version.error_message
        assert message is not None and reason in message

    def test_symlinks_out_of_the_folder_are_refused(self, registry: Registry) -> None:
        secret = registry.root / "secret.txt"
        secret.write_text("do not copy")
        origin = registry.model_dir()
        (origin / "leak.txt").symlink_to(secret)
        registry.deploy("v1", origin=origin)
        version = registry.store.get_version(PROJECT, "census", "v1").version
        assert version.state is VersionState.FAILED
        assert version.error_message is not None and "symbolic link" in version.error_message

    def test_remote_deployment_uris_are_downloaded(self, registry: Registry) -> None:
        bucket = f"memory://deploy-{uuid.uuid4().hex}/census/1"
        memory = fsspec.filesystem("memory")
        memory.pipe(f"{bucket}/model.joblib", b"remote weights")
        memory.pipe(f"{bucket}/extra/notes.txt", b"n")
        try:
            operation = registry.deploy("v1", deploymentUri=bucket)
        finally:
            memory.rm(bucket.removeprefix("memory://").split("/")[0], recursive=True)
        assert operation["response"]["state"] == "READY", operation
        copy = artifact_of(registry, "v1")
        assert (copy / "model.joblib").read_bytes() == b"remote weights"
        assert (copy / "extra" / "notes.txt").read_bytes() == b"n"

    def test_cancel_before_the_first_tick(self, registry: Registry) -> None:
        operation = registry.create_version("v1")
        registry.operations.cancel(operation["name"])
        registry.deployer.tick()

        done = registry.store.get_operation(operation["name"])
        version = registry.store.get_version(PROJECT, "census", "v1").version
        assert done["done"] and done["error"]["code"] == 1  # CANCELLED
        assert done["metadata"]["isCancellationRequested"] is True
        assert version.state is VersionState.FAILED
        assert version.error_message is not None and "cancelled" in version.error_message

    def test_a_restarted_deployer_finishes_what_the_crashed_one_began(
        self, registry: Registry, tmp_path: Path
    ) -> None:
        operation = registry.create_version("v1")
        # The first server copied the files, then died before recording anything.
        prefix = f"models/{PROJECT}/census/v1"
        registry.files.copy(str(registry.root / "origin"), prefix)
        restarted = VersionDeployer(registry.store, registry.files, StandInChecker(), workers=0)
        restarted.tick()
        restarted.close()

        done = registry.store.get_operation(operation["name"])
        assert done["done"] and done["response"]["state"] == "READY"
        assert len(registry.artifacts.list(prefix)) == 1  # the same content, one copy
        restarted.tick()  # nothing left to do
        assert registry.store.get_operation(operation["name"]) == done


def deploy_routine(
    registry: Registry, version_id: str, modules: dict[str, str], **fields: Any
) -> dict[str, Any]:
    """Stage an sdist of ``modules`` and deploy it as ``greeter.Greeter`` over a model
    folder holding ``greeting.txt``; the finished operation."""
    uri = registry.packages.stage("greeter-0.1.tar.gz", build_sdist("greeter", "0.1", modules))
    origin = registry.model_dir(f"routine-{version_id}", {"greeting.txt": b"Hello"})
    body = {"predictionClass": "greeter.Greeter", "packageUris": [uri], **fields}
    return registry.deploy(version_id, origin=origin, **body)


@pytest.mark.stand_in
class TestCustomRoutines:
    def test_a_routine_is_deployed_with_its_packages(self, tmp_path: Path) -> None:
        checker = StandInChecker()
        registry = build_registry(tmp_path, checker)
        try:
            registry.create_model()
            local = tmp_path / "extra-1.0.tar.gz"
            local.write_bytes(build_sdist("extra", "1.0", {"extra.py": "X = 1\n"}))
            staged = registry.packages.stage(
                "greeter-0.1.tar.gz", build_sdist("greeter", "0.1", {"greeter.py": ROUTINE_MODULE})
            )
            origin = registry.model_dir("routine", {"greeting.txt": b"Hello"})
            operation = registry.deploy(
                "v1",
                origin=origin,
                predictionClass="greeter.Greeter",
                packageUris=[staged, str(local)],
            )
            assert operation["response"]["state"] == "READY", operation

            runtime = registry.store.get_version(PROJECT, "census", "v1").runtime
            assert runtime.framework == "CUSTOM"
            prefix = f"models/{PROJECT}/census/v1/packages/"
            staged_sha = staged.split("/")[-2]
            assert runtime.packages == (
                f"{prefix}{staged_sha}/greeter-0.1.tar.gz",
                f"{prefix}{hashlib.sha256(local.read_bytes()).hexdigest()}/extra-1.0.tar.gz",
            )
            # The checker loaded the routine from the published copies, not the originals.
            assert checker.calls == [(artifact_of(registry, "v1"), None)]
            published = tuple(registry.artifacts.local_path(rel) for rel in runtime.packages)
            assert checker.routines == [("greeter.Greeter", published)]
            local.unlink()  # the original is irrelevant from now on
            assert published[1].read_bytes().startswith(b"\x1f\x8b")

            delete = registry.models.delete_version(PROJECT, "census", "v1")
            registry.deployer.tick()
            assert registry.store.get_operation(delete["name"])["done"]
            assert registry.artifacts.list(f"models/{PROJECT}/census") == []
        finally:
            registry.close()

    def test_a_package_gone_before_deployment_fails_the_version(self, registry: Registry) -> None:
        uri = registry.packages.stage("greeter-0.1.tar.gz", build_sdist("greeter", "0.1", {}))
        operation = registry.create_version(
            "v1", predictionClass="greeter.Greeter", packageUris=[uri]
        )
        registry.artifacts.delete_tree("packages")  # removed behind the server's back
        registry.deployer.tick()

        done = registry.store.get_operation(operation["name"])
        version = registry.store.get_version(PROJECT, "census", "v1")
        assert version.state is VersionState.FAILED and version.runtime.packages == ()
        assert version.version.error_message is not None
        assert version.version.error_message.startswith("packageUris[0] ")
        assert done["error"]["code"] == 3  # INVALID_ARGUMENT
        assert registry.artifacts.list(f"models/{PROJECT}/census/v1") == []

    def test_plain_models_may_ship_packages_too(self, registry: Registry) -> None:
        """Pickles that refer to user code (spec: sklearn custom pipeline code)."""
        uri = registry.packages.stage("extra-1.0.tar.gz", build_sdist("extra", "1.0", {}))
        operation = registry.deploy("v1", packageUris=[uri])
        assert operation["response"]["state"] == "READY", operation
        runtime = registry.store.get_version(PROJECT, "census", "v1").runtime
        assert runtime.framework == "SCIKIT_LEARN" and len(runtime.packages) == 1


class _BlockingChecker(StandInChecker):
    """Holds every check until ``release`` is set (a slow model load)."""

    def __init__(self) -> None:
        super().__init__()
        self.started = threading.Event()
        self.release = threading.Event()

    def __call__(self, model_dir: Path, framework: str | None, **routine: Any) -> str:
        self.started.set()
        assert self.release.wait(30)
        return super().__call__(model_dir, framework, **routine)


@pytest.mark.stand_in
class TestOnAPool:
    def test_a_slow_load_does_not_hold_the_tick_and_cancel_wins(self, tmp_path: Path) -> None:
        checker = _BlockingChecker()
        registry = build_registry(tmp_path, checker, workers=1)
        try:
            registry.create_model()
            operation = registry.create_version("v1")
            registry.deployer.tick()
            assert checker.started.wait(30)
            registry.deployer.tick()  # returns at once: the load is still running
            assert registry.state("v1") is VersionState.CREATING

            registry.operations.cancel(operation["name"])
            registry.deployer.tick()
            assert registry.state("v1") is VersionState.FAILED
            delete = registry.models.delete_version(PROJECT, "census", "v1")
            registry.deployer.tick()  # the copy still runs: the delete waits for it
            assert registry.state("v1") is VersionState.DELETING

            checker.release.set()
            for _ in range(100):
                registry.deployer.tick()
                if registry.store.get_operation(delete["name"])["done"]:
                    break
                threading.Event().wait(0.05)
            assert registry.store.get_operation(operation["name"])["error"]["code"] == 1
            assert registry.store.get_operation(delete["name"])["done"] is True
            assert registry.artifacts.list(f"models/{PROJECT}/census") == []
        finally:
            checker.release.set()
            registry.close()

    def test_versions_deploy_in_parallel(self, tmp_path: Path) -> None:
        registry = build_registry(tmp_path, StandInChecker(), workers=2)
        try:
            registry.create_model()
            operations = [registry.create_version(f"v{i}") for i in range(3)]
            for _ in range(200):
                registry.deployer.tick()
                states = {registry.state(f"v{i}") for i in range(3)}
                if states == {VersionState.READY}:
                    break
                threading.Event().wait(0.02)
            assert states == {VersionState.READY}
            assert all(registry.store.get_operation(op["name"])["done"] for op in operations)
            defaults = [
                v.version_id
                for v in registry.store.versions_in_states([VersionState.READY])
                if v.is_default
            ]
            assert len(defaults) == 1
        finally:
            registry.close()


@pytest.mark.stand_in
class TestDelete:
    def test_files_row_and_operation(self, registry: Registry) -> None:
        registry.deploy("v1")
        copy = artifact_of(registry, "v1")
        operation = registry.models.delete_version(PROJECT, "census", "v1")
        registry.deployer.tick()

        assert not copy.exists()
        done = registry.store.get_operation(operation["name"])
        assert done["done"] and done["response"]["@type"].endswith("protobuf.Empty")
        assert registry.store.list_versions(
            PROJECT, "census", RegistryQuery(), page_size=5, page_token=None
        ) == (
            [],
            None,
        )
        registry.deploy("v1")  # the name is free again
        assert registry.state("v1") is VersionState.READY

    def test_a_failed_version_can_be_deleted(self, registry: Registry) -> None:
        registry.deploy("v1", origin=registry.model_dir("bad", {"x.bin": b""}))
        registry.models.delete_version(PROJECT, "census", "v1")
        registry.deployer.tick()
        assert registry.models.list_versions(PROJECT, "census") == ([], None)


# --- the real checker and its command line ---------------------------------------------------


@pytest.mark.skipif(not predictor_available(), reason="mlengine.serving.predictor is not there")
class TestRealChecker:
    def test_a_scikit_learn_model_loads_and_the_version_is_ready(self, tmp_path: Path) -> None:
        registry = build_registry(tmp_path, SubprocessModelChecker())
        try:
            registry.create_model()
            origin = sklearn_model_dir(tmp_path / "sk")
            operation = registry.deploy("v1", origin=origin)
            assert operation["response"]["state"] == "READY", operation
            assert registry.store.get_version(PROJECT, "census", "v1").runtime.framework
        finally:
            registry.close()

    def test_a_corrupt_model_fails_with_the_loader_s_reason(self, tmp_path: Path) -> None:
        registry = build_registry(tmp_path, SubprocessModelChecker())
        try:
            registry.create_model()
            operation = registry.deploy("v1", origin=registry.model_dir())
            assert operation["error"]["code"] == 9, operation
            assert "could not be loaded" in operation["error"]["message"]
        finally:
            registry.close()


@pytest.mark.skipif(not predictor_available(), reason="mlengine.serving.predictor is not there")
class TestRealRoutineChecker:
    """The routine is imported and built in the checker's subprocess, from its sdist."""

    def test_a_routine_loads_and_the_version_is_ready(self, tmp_path: Path) -> None:
        registry = build_registry(tmp_path, SubprocessModelChecker(timeout=120))
        try:
            registry.create_model()
            operation = deploy_routine(registry, "v1", {"greeter.py": ROUTINE_MODULE})
            assert operation["response"]["state"] == "READY", operation
            runtime = registry.store.get_version(PROJECT, "census", "v1").runtime
            assert runtime.framework == "CUSTOM" and len(runtime.packages) == 1
        finally:
            registry.close()

    @pytest.mark.parametrize(
        ("module", "reason"),
        [
            ("raise RuntimeError('no greeting today')\n", "no greeting today"),
            ("class Greeter:\n    pass\n", "has no from_path"),
            (ROUTINE_MODULE.replace("greeting.txt", "missing.txt"), "missing.txt"),
        ],
    )
    def test_a_broken_routine_fails_the_version_with_the_reason(
        self, tmp_path: Path, module: str, reason: str
    ) -> None:
        registry = build_registry(tmp_path, SubprocessModelChecker(timeout=120))
        try:
            registry.create_model()
            operation = deploy_routine(registry, "v1", {"greeter.py": module})
            version = registry.store.get_version(PROJECT, "census", "v1").version
            assert version.state is VersionState.FAILED, operation
            message = version.error_message or ""
            assert message.startswith("The custom prediction routine could not be loaded")
            assert reason in message
            assert operation["error"]["code"] == 9 and operation["error"]["message"] == message
            assert registry.artifacts.list(f"models/{PROJECT}/census/v1") == []
        finally:
            registry.close()


def test_the_subprocess_checker_reports_why_a_model_does_not_load(tmp_path: Path) -> None:
    """Runs everywhere: without the predictor module the reason says so; with it, the junk
    file fails to load."""
    folder = tmp_path / "junk"
    folder.mkdir()
    (folder / "model.joblib").write_bytes(b"not a model")
    with pytest.raises(FailedPrecondition) as caught:
        SubprocessModelChecker(timeout=120)(folder, None)
    assert caught.value.field == "deploymentUri"
    assert caught.value.message.startswith("The model could not be loaded: ")
    if not predictor_available():
        assert "mlengine.serving.predictor is not installed" in caught.value.message


class _FakePredictor:
    framework = ""  # unknown: the command line falls back to the request, then the files

    def __init__(self, probe: list[Any] | None, fail: bool = False) -> None:
        self.probe, self.fail, self.seen = probe, fail, []

    def probe_instances(self) -> list[Any] | None:
        return self.probe

    def predict(self, instances: list[Any]) -> list[Any]:
        self.seen.append(instances)
        if self.fail:
            raise ValueError("shapes do not match")
        return [0 for _ in instances]


@pytest.fixture
def fake_predictor_module(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """A STAND-IN ``mlengine.serving.predictor`` module for the command line's own logic."""
    state = types.SimpleNamespace(predictor=_FakePredictor([[1.0]]), calls=[])

    def load_predictor(model_dir: Path, **options: Any) -> _FakePredictor:
        state.calls.append((model_dir, options))
        if (model_dir / "broken").exists():
            raise RuntimeError("cannot unpickle")
        return state.predictor

    module = types.ModuleType("mlengine.serving.predictor")
    module.load_predictor = load_predictor  # type: ignore[attr-defined]
    module.detect_framework = lambda model_dir: "SCIKIT_LEARN"  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "mlengine.serving.predictor", module)
    return state


@pytest.mark.stand_in
class TestCommandLine:
    def test_loads_probes_and_prints_the_result(
        self, fake_predictor_module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        code = check_version.main([str(tmp_path), "--allow-pickle", "--package", "/p.tar.gz"])
        assert code == 0
        assert json.loads(capsys.readouterr().out) == {"framework": "SCIKIT_LEARN", "probe": "ok"}
        ((model_dir, options),) = fake_predictor_module.calls
        assert model_dir == tmp_path
        assert options == {
            "framework": None,
            "prediction_class": None,
            "package_paths": [Path("/p.tar.gz")],
            "allow_pickle": True,
        }
        assert fake_predictor_module.predictor.seen == [[[1.0]]]

    def test_without_probe_instances_the_probe_is_skipped(
        self, fake_predictor_module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        fake_predictor_module.predictor = _FakePredictor(None)
        assert check_version.main([str(tmp_path), "--framework", "XGBOOST"]) == 0
        assert json.loads(capsys.readouterr().out) == {"framework": "XGBOOST", "probe": "skipped"}

    @pytest.mark.parametrize(("broken", "message"), [(True, "cannot unpickle"), (False, "shapes")])
    def test_failures_exit_non_zero_with_the_reason(
        self,
        fake_predictor_module: Any,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
        broken: bool,
        message: str,
    ) -> None:
        if broken:
            (tmp_path / "broken").write_text("")
        fake_predictor_module.predictor = _FakePredictor([[1.0]], fail=True)
        assert check_version.main([str(tmp_path)]) == check_version.EXIT_FAILED
        captured = capsys.readouterr()
        assert captured.out == "" and message in captured.err

    def test_the_loaded_predictor_names_the_framework(
        self, fake_predictor_module: Any, tmp_path: Path, capsys: pytest.CaptureFixture[str]
    ) -> None:
        fake_predictor_module.predictor.framework = "XGBOOST"  # a pickled Booster, say
        assert check_version.main([str(tmp_path)]) == 0
        assert json.loads(capsys.readouterr().out)["framework"] == "XGBOOST"

    def test_a_missing_folder_is_a_usage_error(self, tmp_path: Path) -> None:
        assert check_version.main([str(tmp_path / "nope")]) == check_version.EXIT_USAGE


def test_the_file_name_stand_in_refuses_a_framework_mismatch(tmp_path: Path) -> None:
    (tmp_path / "model.bst").write_bytes(b"")
    assert check_version.check_by_file_names(tmp_path, None) == "XGBOOST"
    with pytest.raises(FailedPrecondition, match="files hold a XGBOOST model"):
        check_version.check_by_file_names(tmp_path, "SCIKIT_LEARN")


def test_tree_digests_depend_on_names_and_contents(tmp_path: Path) -> None:
    a, b = tmp_path / "a", tmp_path / "b"
    for folder in (a, b):
        folder.mkdir()
        (folder / "model.joblib").write_bytes(b"1")
    assert tree_digest(a) == tree_digest(b)
    (b / "model.joblib").rename(b / "model.pkl")
    assert tree_digest(a) != tree_digest(b)
    with pytest.raises(InvalidArgument):
        tree_digest(tmp_path / "missing")
