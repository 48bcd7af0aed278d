"""A model registry without HTTP for the service and deployer tests.

:func:`build_registry` wires a SQLite store, a local artifact store, :class:`ModelService`
and a :class:`VersionDeployer` that runs inline (``workers=0``) so each ``tick`` is
deterministic.  Unless a test passes its own checker, versions are validated by
:class:`StandInChecker` — a STAND-IN for loading the model (``mlengine.serving.predictor`` is
written separately): it detects the framework from file names, exactly like
``check_by_file_names``, and records what it was asked.  Tests that use it say so with the
``stand_in`` marker; ``tests/scheduler/test_deployer.py`` also runs the real subprocess
checker when the predictor module is importable.
"""

from __future__ import annotations

import importlib.util
import io
import tarfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.artifacts.store import ArtifactStore
from mlengine.domain.resources import VersionState
from mlengine.scheduler.deployer import ModelChecker, VersionDeployer
from mlengine.services.models import ModelService
from mlengine.services.operations import OperationService
from mlengine.services.packages import PackageService
from mlengine.services.version_files import VersionFiles
from mlengine.serving.check_version import check_by_file_names
from mlengine.stores.sql import SqlMetadataStore

PROJECT = "proj"


def predictor_available() -> bool:
    """True when ``mlengine.serving.predictor`` (the real model loader) can be imported."""
    try:
        return importlib.util.find_spec("mlengine.serving.predictor") is not None
    except ModuleNotFoundError:
        return False


def sklearn_model_dir(folder: Path) -> Path:
    """A real (tiny) scikit-learn model, ``model.joblib``, that the predictor can load."""
    import joblib
    from sklearn.linear_model import LogisticRegression

    folder.mkdir(parents=True, exist_ok=True)
    features, labels = [[0.0, 1.0], [1.0, 0.0], [2.0, 1.0], [3.0, 0.0]], [0, 0, 1, 1]
    joblib.dump(LogisticRegression().fit(features, labels), folder / "model.joblib")
    return folder


#: A custom prediction routine for tests: ``from_path`` reads ``greeting.txt`` from the model
#: directory; ``predict`` greets each instance, with ``punctuation`` from the request.
ROUTINE_MODULE = """\
import os


class Greeter:
    def __init__(self, greeting):
        self.greeting = greeting

    @classmethod
    def from_path(cls, model_dir):
        with open(os.path.join(model_dir, "greeting.txt")) as handle:
            return cls(handle.read().strip())

    def predict(self, instances, **kwargs):
        mark = kwargs.get("punctuation", ".")
        return [f"{self.greeting}, {name}{mark}" for name in instances]

    def probe_instances(self):
        return ["probe"]
"""


def build_sdist(name: str, version: str, modules: Mapping[str, str]) -> bytes:
    """A hand-made sdist ``<name>-<version>.tar.gz`` of top-level ``modules`` (name → source),
    installable offline by ``pip install --no-deps --no-build-isolation``."""
    py_modules = sorted(module.removesuffix(".py") for module in modules)
    files = {
        "setup.py": (
            "from setuptools import setup\n"
            f"setup(name={name!r}, version={version!r}, py_modules={py_modules!r})\n"
        ),
        "PKG-INFO": f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n",
        **modules,
    }
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for relative, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{name}-{version}/{relative}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


@dataclass
class StandInChecker:
    """Stand-in for loading a model: the framework from file names; records every call
    (``calls``: model folder and framework; ``routines``: prediction class and packages)."""

    calls: list[tuple[Path, str | None]] = field(default_factory=list)
    routines: list[tuple[str | None, tuple[Path, ...]]] = field(default_factory=list)

    def __call__(
        self,
        model_dir: Path,
        framework: str | None,
        *,
        prediction_class: str | None = None,
        package_paths: Sequence[Path] = (),
    ) -> str:
        self.calls.append((model_dir, framework))
        self.routines.append((prediction_class, tuple(package_paths)))
        return check_by_file_names(
            model_dir, framework, prediction_class=prediction_class, package_paths=package_paths
        )


@dataclass
class Registry:
    root: Path
    store: SqlMetadataStore
    artifacts: ArtifactStore
    files: VersionFiles
    models: ModelService
    operations: OperationService
    deployer: VersionDeployer
    packages: PackageService

    def model_dir(self, name: str = "origin", files: dict[str, bytes] | None = None) -> Path:
        """A folder holding a (fake) scikit-learn model, or ``files``."""
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        for relative, data in (files or {"model.joblib": b"not really a model"}).items():
            (folder / relative).parent.mkdir(parents=True, exist_ok=True)
            (folder / relative).write_bytes(data)
        return folder

    def create_model(self, model_id: str = "census", **fields: Any) -> None:
        self.models.create_model(PROJECT, {"name": model_id, **fields})

    def create_version(
        self, version_id: str, model_id: str = "census", origin: Path | None = None, **fields: Any
    ) -> dict[str, Any]:
        body = {"name": version_id, "deploymentUri": str(origin or self.model_dir()), **fields}
        return self.models.create_version(PROJECT, model_id, body)

    def deploy(self, version_id: str, model_id: str = "census", **fields: Any) -> dict[str, Any]:
        """Create a version and tick until its operation is done; the finished operation."""
        operation = self.create_version(version_id, model_id, **fields)
        self.deployer.tick()
        return dict(self.store.get_operation(operation["name"]))

    def state(self, version_id: str, model_id: str = "census") -> VersionState:
        return self.store.get_version(PROJECT, model_id, version_id).state

    def close(self) -> None:
        self.deployer.close()
        self.store.close()


def build_registry(
    root: Path,
    check_model: ModelChecker | None = None,
    *,
    workers: int = 0,
    clock: Callable[[], Any] | None = None,
) -> Registry:
    store = SqlMetadataStore(f"sqlite:///{root}/mlengine.db")
    artifacts = ArtifactStore(root / "artifacts")
    files = VersionFiles(artifacts, root / "work")
    packages = PackageService(artifacts, root / "cache" / "packages")
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    deployer = VersionDeployer(
        store,
        files,
        check_model or StandInChecker(),
        packages=packages,
        workers=workers,
        **options,
    )
    return Registry(
        root=root,
        store=store,
        artifacts=artifacts,
        files=files,
        models=ModelService(store, files, packages=packages, **options),
        operations=OperationService(store),
        deployer=deployer,
        packages=packages,
    )
