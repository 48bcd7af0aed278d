"""The asynchronous half of versions.create and versions.delete.

One :meth:`VersionDeployer.tick` looks at every CREATING and DELETING version once; the
server's scheduler thread calls it every ``scheduler_interval`` seconds, tests call it by hand.

CREATING → READY | FAILED
    1. copy ``deploymentUri`` into the artifact store under the version's immutable,
       content-addressed prefix (``services/version_files.py``); fetch its ``packageUris``
       (``PackageService.materialize``) and publish them with it, at
       ``<prefix>/packages/<sha256>/<filename>``, so that any data plane sharing the
       artifact store finds them from the version's runtime alone;
    2. validate the copy with the injected ``check_model(model_dir, framework,
       prediction_class=…, package_paths=…)``, which loads the model — a custom prediction
       routine with its packages importable — (in production in a subprocess:
       ``mlengine.serving.check_version``) and returns the detected framework, or raises
       :class:`MlEngineError` with the reason;
    3. READY — the model's default if it has none — and the operation done with the Version;
       or FAILED with ``errorMessage`` and the operation done with the error.  The version's
       state and its operation are written in one transaction.

    Steps 1-2 run on a small thread pool (``workers``; 0 runs them inline, for tests), so a
    large copy or a slow load never stalls the loop.  ``operations.cancel`` is honoured on
    the next tick: the version ends FAILED and the operation CANCELLED (rpc code 1); a copy
    still running is left to finish and its result dropped.

DELETING → gone
    The version's files are removed, then the row, with the operation done (``Empty``) in the
    same transaction.  A deletion waits while a copy for that version is still running.

Restart-safe: all state is in the store.  After a restart a CREATING version is simply
processed again (the copy of unchanged content lands on the same prefix, which is reused),
and a DELETING one is deleted again (removing files that are already gone is fine).
"""

from __future__ import annotations

import concurrent.futures as cf
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from mlengine.domain.errors import FailedPrecondition, Internal, MlEngineError, NotFound
from mlengine.domain.operations import (
    EMPTY_TYPE,
    VERSION_TYPE,
    cancellation_requested,
    cancelled_error,
    failed,
    metadata_of,
    succeeded,
    with_metadata,
)
from mlengine.domain.resources import Framework, VersionState
from mlengine.services.jobs import utc_now
from mlengine.services.models import version_view
from mlengine.services.packages import PackageService
from mlengine.services.version_files import PACKAGES_FIELD, VersionFiles, version_prefix
from mlengine.stores.base import MetadataStore, StoredModel, StoredVersion

LOG = logging.getLogger(__name__)


class ModelChecker(Protocol):
    """Loads a deployed copy once to validate it; returns the detected framework name.

    ``framework`` is the requested one (None: detect); ``prediction_class`` the version's
    ``predictionClass`` (a custom prediction routine) and ``package_paths`` local files of
    its published packages, to be made importable first.  Raises :class:`MlEngineError`
    with the reason when the model (or routine) does not load.
    """

    def __call__(
        self,
        model_dir: Path,
        framework: str | None,
        *,
        prediction_class: str | None = None,
        package_paths: Sequence[Path] = (),
    ) -> str: ...


@dataclass(frozen=True)
class Deployed:
    """What a finished copy and check produced (``packages``: published artifact paths)."""

    artifact: str
    sha256: str
    framework: str
    packages: tuple[str, ...] = ()


@dataclass(frozen=True)
class _Key:
    project: str
    model_id: str
    version_id: str


@dataclass
class _Run:
    operation: str | None
    future: cf.Future[Deployed]


class _Stale(Exception):
    """The version moved on (cancelled, deleted, recreated) while its copy ran."""


class VersionDeployer:
    """Moves versions out of CREATING and DELETING.  Call :meth:`tick` from one thread.

    ``packages`` fetches ``packageUris``; without it a version that names packages fails.
    """

    def __init__(
        self,
        store: MetadataStore,
        files: VersionFiles,
        check_model: ModelChecker,
        *,
        packages: PackageService | None = None,
        clock: Callable[[], datetime] = utc_now,
        workers: int = 2,
    ) -> None:
        self._store = store
        self._files = files
        self._check_model = check_model
        self._packages = packages
        self._clock = clock
        self._pool = (
            cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="deploy")
            if workers
            else None
        )
        self._runs: dict[_Key, _Run] = {}

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def tick(self) -> None:
        """One pass over every CREATING and DELETING version; one failing never stops others."""
        seen: set[_Key] = set()
        for stored in self._store.versions_in_states(
            [VersionState.CREATING, VersionState.DELETING]
        ):
            key = _Key(stored.project, stored.model_id, stored.version_id)
            seen.add(key)
            try:
                if stored.state is VersionState.DELETING:
                    self._delete(key, stored)
                else:
                    self._create(key, stored)
            except Exception:
                LOG.exception("deploying %s failed; retrying next tick", stored.version.name)
        for key in [k for k, run in self._runs.items() if k not in seen and run.future.done()]:
            self._reap(key, self._runs.pop(key))

    def _reap(self, key: _Key, run: _Run) -> None:
        """A copy that finished after its version moved on: remove what it published, unless
        the version (recreated with the same content) uses it."""
        if run.future.exception() is not None:
            return
        deployed = run.future.result()
        try:
            runtime = self._store.get_version(key.project, key.model_id, key.version_id).runtime
            in_use = {runtime.artifact, *runtime.packages}
        except NotFound:
            in_use = set()
        for published in (deployed.artifact, *deployed.packages):
            if published not in in_use:
                self._files.remove(published)

    # -- CREATING ---------------------------------------------------------------------------

    def _create(self, key: _Key, stored: StoredVersion) -> None:
        operation = self._operation(stored)
        if operation is not None and cancellation_requested(operation):
            self._cancel(stored)
            return
        run = self._runs.get(key)
        if run is None or run.operation != stored.runtime.operation:
            run = self._start(key, stored, operation)
        if not run.future.done():
            return
        del self._runs[key]
        try:
            deployed = run.future.result()
        except MlEngineError as error:
            self._fail(stored, error)
        except Exception as error:
            LOG.exception("deploying %s failed", stored.version.name)
            self._fail(stored, Internal(f"Internal error while deploying the version: {error}"))
        else:
            self._ready(stored, deployed)

    def _start(self, key: _Key, stored: StoredVersion, operation: Mapping[str, Any] | None) -> _Run:
        if operation is not None and metadata_of(operation).start_time is None:
            now = self._clock()
            self._store.update_operation(
                str(operation["name"]), lambda op: with_metadata(op, start_time=now)
            )
        if self._pool is None:
            future: cf.Future[Deployed] = cf.Future()
            try:
                future.set_result(self._deploy(stored))
            except Exception as error:
                future.set_exception(error)
        else:
            future = self._pool.submit(self._deploy, stored)
        run = _Run(stored.runtime.operation, future)
        self._runs[key] = run
        return run

    def _deploy(self, stored: StoredVersion) -> Deployed:
        """Copy and check (on a worker thread); touches no version state."""
        version = stored.version
        prefix = version_prefix(stored.project, stored.model_id, stored.version_id)
        artifact, sha256 = self._files.copy(str(version.deployment_uri), prefix)
        packages = self._publish_packages(version.package_uris or [], prefix)
        requested = version.framework
        if requested is Framework.FRAMEWORK_UNSPECIFIED:
            requested = None
        detected = self._check_model(
            self._files.local_dir(artifact),
            None if requested is None else requested.value,
            prediction_class=version.prediction_class or None,
            package_paths=[self._files.local_package(rel) for rel in packages],
        )
        return Deployed(artifact, sha256, detected.strip().upper(), packages)

    def _publish_packages(self, uris: Sequence[str], prefix: str) -> tuple[str, ...]:
        """Fetch ``uris`` and publish them with the version; their artifact paths."""
        if not uris:
            return ()
        if self._packages is None:
            raise FailedPrecondition(
                "This server cannot fetch packageUris (it has no package service); deploy "
                "without packages or use a server that has one.",
                field=PACKAGES_FIELD,
            )
        local = self._packages.materialize(uris, field=PACKAGES_FIELD)
        return self._files.publish_packages(local, prefix)

    def _ready(self, stored: StoredVersion, deployed: Deployed) -> None:
        def change(model: StoredModel, version: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            self._check_current(stored, version)
            update: dict[str, Any] = {"state": VersionState.READY, "error_message": None}
            unspecified = version.version.framework in (None, Framework.FRAMEWORK_UNSPECIFIED)
            if unspecified and deployed.framework in Framework.__members__:
                update["framework"] = Framework(deployed.framework)
            runtime = replace(
                version.runtime,
                artifact=deployed.artifact,
                sha256=deployed.sha256,
                framework=deployed.framework,
                packages=deployed.packages,
            )
            ready = replace(
                version, version=version.version.model_copy(update=update), runtime=runtime
            )
            if model.default_version is None:
                model = replace(model, default_version=version.version_id)
            return model, ready

        self._finish(
            stored,
            change,
            lambda op, v: succeeded(op, VERSION_TYPE, version_view(v).to_api(), now=self._clock()),
        )

    def _fail(self, stored: StoredVersion, error: MlEngineError) -> None:
        self._files.remove(version_prefix(stored.project, stored.model_id, stored.version_id))

        def change(model: StoredModel, version: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            self._check_current(stored, version)
            update = {"state": VersionState.FAILED, "error_message": error.message}
            return model, replace(version, version=version.version.model_copy(update=update))

        self._finish(stored, change, lambda op, _: failed(op, error, now=self._clock()))

    def _cancel(self, stored: StoredVersion) -> None:
        name = stored.runtime.operation
        self._fail(
            stored,
            cancelled_error(
                f"Creating version '{stored.version.name}' was cancelled (operations.cancel of "
                f"{name}); delete the version, or create it again."
            ),
        )

    def _finish(
        self,
        stored: StoredVersion,
        change: Callable[[StoredModel, StoredVersion], tuple[StoredModel, StoredVersion]],
        finished: Callable[[Mapping[str, Any], StoredVersion], Mapping[str, Any]],
    ) -> None:
        """Apply ``change`` and end the version's operation with ``finished``, atomically."""
        operation = self._operation(stored)

        def write(model: StoredModel, version: StoredVersion) -> Mapping[str, Any]:
            assert operation is not None
            return finished(operation, version)

        try:
            self._store.update_version(
                stored.project,
                stored.model_id,
                stored.version_id,
                change,
                operation=write if operation is not None and not operation.get("done") else None,
            )
        except (_Stale, NotFound):
            LOG.info("%s changed while it was deployed; result dropped", stored.version.name)

    @staticmethod
    def _check_current(stored: StoredVersion, current: StoredVersion) -> None:
        same_run = current.runtime.operation == stored.runtime.operation
        if current.state is not VersionState.CREATING or not same_run:
            raise _Stale(current.version.name)

    # -- DELETING ---------------------------------------------------------------------------

    def _delete(self, key: _Key, stored: StoredVersion) -> None:
        run = self._runs.get(key)
        if run is not None:
            if not run.future.done():
                return  # a copy for this version is still running: delete after it
            del self._runs[key]
        self._files.remove(version_prefix(stored.project, stored.model_id, stored.version_id))
        operation = self._operation(stored)
        done = None
        if operation is not None and not operation.get("done"):
            done = succeeded(operation, EMPTY_TYPE, None, now=self._clock())
        try:
            self._store.delete_version(
                stored.project, stored.model_id, stored.version_id, operation=done
            )
        except NotFound:
            pass  # deleted meanwhile: nothing left to do

    def _operation(self, stored: StoredVersion) -> Mapping[str, Any] | None:
        """The version's operation; None when it has none (a crash lost nothing else)."""
        name = stored.runtime.operation
        if not name:
            return None
        try:
            return self._store.get_operation(name)
        except NotFound:
            return None
