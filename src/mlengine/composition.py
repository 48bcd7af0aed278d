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
from mlengine.scheduler.loop import Scheduler
from mlengine.services.jobs import JobService
from mlengine.services.operations import OperationService
from mlengine.services.packages import PackageService
from mlengine.services.run_preparation import RunPreparer
from mlengine.stores.sql import SqlMetadataStore


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

    def close(self) -> None:
        self.scheduler.close()
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
    return Runtime(
        settings=settings,
        store=store,
        artifacts=artifacts,
        packages=packages,
        executor=executor,
        jobs=jobs,
        operations=OperationService(store),
        scheduler=scheduler,
    )


def _replica_base_env() -> dict[str, str]:
    """What replicas inherit: the server's environment minus its own secrets."""
    hidden = {"MLENGINE_AUTH_TOKENS", "MLENGINE_TOKEN"}
    return {k: v for k, v in os.environ.items() if k not in hidden}
