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
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mlengine.artifacts.store import ArtifactStore
from mlengine.domain.resources import VersionState
from mlengine.scheduler.deployer import ModelChecker, VersionDeployer
from mlengine.services.models import ModelService
from mlengine.services.operations import OperationService
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


@dataclass
class StandInChecker:
    """Stand-in for loading a model: the framework from file names; records every call."""

    calls: list[tuple[Path, str | None]] = field(default_factory=list)

    def __call__(self, model_dir: Path, framework: str | None) -> str:
        self.calls.append((model_dir, framework))
        return check_by_file_names(model_dir, framework)


@dataclass
class Registry:
    root: Path
    store: SqlMetadataStore
    artifacts: ArtifactStore
    files: VersionFiles
    models: ModelService
    operations: OperationService
    deployer: VersionDeployer

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
    options: dict[str, Any] = {} if clock is None else {"clock": clock}
    deployer = VersionDeployer(
        store, files, check_model or StandInChecker(), workers=workers, **options
    )
    return Registry(
        root=root,
        store=store,
        artifacts=artifacts,
        files=files,
        models=ModelService(store, files, **options),
        operations=OperationService(store),
        deployer=deployer,
    )
