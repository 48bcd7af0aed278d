"""The composition root: settings in, every collaborator built and wired, nothing else.

The server (``mlengine server start``) calls :func:`build_runtime` once. Embedded defaults:
SQLite under ``$MLENGINE_HOME``, artifacts in ``$MLENGINE_HOME/artifacts``, the local process
executor. Scaled settings swap the parts by URL (``postgresql://…``, ``s3://…``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from mlengine.artifacts.store import ArtifactStore
from mlengine.config import Settings
from mlengine.executors.local import LocalProcessExecutor
from mlengine.scheduler.deployer import ModelChecker, VersionDeployer
from mlengine.scheduler.loop import Scheduler
from mlengine.services.jobs import JobService
from mlengine.services.models import ModelService
from mlengine.services.operations import OperationService
from mlengine.services.packages import PackageService
from mlengine.services.run_preparation import RunPreparer
from mlengine.services.version_files import VersionFiles
from mlengine.serving.batching import BatchSettings
from mlengine.serving.check_version import SubprocessModelChecker, check_by_file_names
from mlengine.serving.dataplane import PredictionApp, default_loader
from mlengine.serving.registry_source import StoreVersionSource
from mlengine.serving.versions import CachedVersionSource
from mlengine.stores.sql import SqlMetadataStore

#: How long the server's data plane trusts a resolved model/version (a default-version
#: change is seen within this time; each request is answered by one version either way).
PREDICT_CACHE_SECONDS = 0.5


@dataclass(frozen=True)
class Runtime:
    """Everything a server process needs, built from one :class:`Settings`."""

    settings: Settings
    store: SqlMetadataStore
    artifacts: ArtifactStore
    packages: PackageService
    executor: LocalProcessExecutor
    jobs: JobService
    operations: OperationService
    scheduler: Scheduler
    models: ModelService
    deployer: VersionDeployer
    prediction: PredictionApp

    def close(self) -> None:
        self.scheduler.close()
        self.deployer.close()
        self.prediction.close()
        self.store.close()


def build_runtime(settings: Settings) -> Runtime:
    """Wire the embedded or scaled runtime described by ``settings``."""
    settings.home.mkdir(parents=True, exist_ok=True)
    store = SqlMetadataStore(settings.database_url)
    artifacts = ArtifactStore(settings.artifact_root)
    packages = PackageService(
        artifacts, settings.home / "cache" / "packages", max_bytes=settings.max_package_bytes
    )
    executor = LocalProcessExecutor(
        settings.runs_dir,
        strict_placement=settings.strict_placement,
        max_replicas=settings.max_local_replicas,
    )
    preparer = RunPreparer(packages.materialize, settings.environments_dir, settings.home / "work")
    jobs = JobService(store, check_packages=packages.check)
    scheduler = Scheduler(store, executor, preparer, base_env=_replica_base_env())
    files = VersionFiles(artifacts, settings.home / "work" / "deploy")
    deployer = VersionDeployer(store, files, _model_checker(settings, artifacts), packages=packages)
    source = StoreVersionSource(store, artifacts, allow_pickle=not settings.refuse_pickle)
    prediction = PredictionApp(
        CachedVersionSource(source, ttl_seconds=PREDICT_CACHE_SECONDS),
        default_loader(settings.predict_threads),
        batch=BatchSettings(settings.predict_batch_rows, settings.predict_batch_wait_ms / 1000),
        max_body_bytes=settings.max_predict_bytes,
    )
    return Runtime(
        settings=settings,
        store=store,
        artifacts=artifacts,
        packages=packages,
        executor=executor,
        jobs=jobs,
        operations=OperationService(store),
        scheduler=scheduler,
        models=ModelService(store, files, packages=packages),
        deployer=deployer,
        prediction=prediction,
    )


def _model_checker(settings: Settings, artifacts: ArtifactStore) -> ModelChecker:
    """How versions are validated: load them in a subprocess (the default; it also compiles
    them to ONNX where verified safe), or — only for tests while no predictor is installed —
    detect the framework from file names."""
    if settings.model_check == "files":
        return check_by_file_names
    return SubprocessModelChecker(
        env=_replica_base_env(), allow_pickle=not settings.refuse_pickle, artifacts=artifacts
    )


def _replica_base_env() -> dict[str, str]:
    """What replicas inherit: the server's environment minus its own secrets."""
    hidden = {"MLENGINE_AUTH_TOKENS", "MLENGINE_TOKEN"}
    return {k: v for k, v in os.environ.items() if k not in hidden}
