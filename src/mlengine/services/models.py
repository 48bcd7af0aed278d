"""The model registry: models and their versions (spec §1.10-1.12, §2.1-2.3).

The REST routes (and later the CLI) call these methods and nothing else.  Which calls are
long-running follows the v1 API: models.delete, models.patch, versions.create,
versions.delete and versions.patch return an Operation; models.create and
versions.setDefault return the resource.

* **Synchronous operations.** models.delete/patch and versions.patch change only metadata,
  so they are applied at once and return an operation that is already done (with the
  resource, or ``google.protobuf.Empty``, as its response).
* **versions.create** stores the version CREATING together with its (unfinished) operation;
  the deployer (``mlengine.scheduler.deployer``) copies and validates the files (and the
  ``packageUris`` of a custom prediction routine, checked here first) and ends it READY or
  FAILED.  Custom containers are refused with UNIMPLEMENTED.  **versions.delete** marks it
  DELETING the same way; the deployer removes its files and the row.  Both honour
  ``operations.cancel`` for creation.

Rules (spec §2.3, §7.4), each a FAILED_PRECONDITION naming the fix:

* a model with versions cannot be deleted (the store names them);
* the default version can be deleted only when it is the model's last version;
* a CREATING, DELETING or UPDATING version can be neither updated nor deleted;
* only a READY version can become the default; the first version to become READY becomes the
  default when the model has none.

``Model.defaultVersion`` and ``Version.isDefault`` are rendered from the one
``default_version`` column of the model (see ``stores/base.py``), so they always agree.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from datetime import datetime
from typing import Any

from mlengine.domain.errors import Code, FailedPrecondition, InvalidArgument, MlEngineError
from mlengine.domain.names import ModelName, validate_resource_id
from mlengine.domain.operations import (
    EMPTY_TYPE,
    MODEL_TYPE,
    VERSION_TYPE,
    new_operation,
    operation_name,
    succeeded,
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
from mlengine.services.jobs import page_size_of, utc_now
from mlengine.services.packages import PackageService
from mlengine.services.version_files import PACKAGES_FIELD, VersionFiles
from mlengine.stores.base import MetadataStore, StoredModel, StoredVersion, VersionRuntime

Clock = Callable[[], datetime]
Operation = dict[str, Any]


def model_view(stored: StoredModel) -> Model:
    """The Model as the API shows it: ``defaultVersion`` is the default version's resource."""
    if stored.default is None:
        return stored.model
    default = stored.default.model_copy(update={"is_default": True})
    return stored.model.model_copy(update={"default_version": default})


def version_view(stored: StoredVersion) -> Version:
    """The Version as the API shows it: ``isDefault`` true on the default, unset otherwise."""
    return stored.version.model_copy(update={"is_default": True if stored.is_default else None})


class ModelService:
    """Use cases on ``projects/{project}/models`` and their versions.

    ``files`` checks a version's ``deploymentUri`` when it is created and ``packages`` its
    ``packageUris`` (staged uploads, server paths, allowed remote schemes; errors name
    ``packageUris[i]``); the deployer copies both.  Without ``packages`` a version that
    names packages is refused.
    """

    def __init__(
        self,
        store: MetadataStore,
        files: VersionFiles,
        *,
        packages: PackageService | None = None,
        clock: Clock = utc_now,
    ):
        self._store = store
        self._files = files
        self._packages = packages
        self._clock = clock

    # --- models ------------------------------------------------------------------------

    def create_model(self, project: str, body: Mapping[str, Any]) -> Model:
        """models.create: validate ``body`` (output-only fields ignored) and store it."""
        model = parse_model(body).without_output_only()
        model_id = resource_id(model.name, project=project)
        model = validate_model(model.model_copy(update={"name": model_id}))
        named = model.model_copy(update={"name": str(ModelName(project, model_id))})
        return model_view(self._store.create_model(project, named))

    def get_model(self, project: str, model_id: str) -> Model:
        return model_view(self._store.get_model(project, _model_id(model_id)))

    def list_models(
        self,
        project: str,
        *,
        filter: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Model], str | None]:
        """Newest first; ``filter`` per ``domain/registry_filter.py``."""
        rows, token = self._store.list_models(
            project,
            parse_model_filter(filter),
            page_size=page_size_of(page_size),
            page_token=page_token or None,
        )
        return [model_view(row) for row in rows], token

    def delete_model(self, project: str, model_id: str) -> Operation:
        """models.delete: only a model without versions; returns the finished operation."""
        model_id = _model_id(model_id)
        stored = self._store.get_model(project, model_id)
        operation = self._new_operation(
            project, OperationType.DELETE_MODEL, stored, labels=stored.model.labels
        )
        done = succeeded(operation, EMPTY_TYPE, None, now=self._clock())
        self._store.delete_model(project, model_id, operation=done)
        return done

    def patch_model(
        self, project: str, model_id: str, body: Mapping[str, Any], update_mask: str | None
    ) -> Operation:
        """models.patch: ``description``, ``labels`` and ``defaultVersion.name`` (which must
        name a READY version); returns the finished operation with the Model."""
        model_id = _model_id(model_id)
        fields = model_update_mask(update_mask)
        patch = parse_model(body)
        if "defaultVersion.name" in fields:
            version_id = self._default_in_patch(project, model_id, patch)

            def change(
                model: StoredModel, version: StoredVersion
            ) -> tuple[StoredModel, StoredVersion]:
                _check_can_be_default(version)
                patched = patched_model(model.model, patch, fields)
                return replace(model, model=patched, default_version=version_id), version

            stored, _ = self._store.update_version(project, model_id, version_id, change)
        else:
            stored = self._store.update_model(
                project,
                model_id,
                lambda m: replace(m, model=patched_model(m.model, patch, fields)),
            )
        operation = self._new_operation(
            project, OperationType.UPDATE_MODEL, stored, labels=stored.model.labels
        )
        done = succeeded(operation, MODEL_TYPE, model_view(stored).to_api(), now=self._clock())
        return dict(self._store.create_operation(project, done))

    def _default_in_patch(self, project: str, model_id: str, patch: Model) -> str:
        field = "defaultVersion.name"
        name = patch.default_version.name if patch.default_version else None
        if not name:
            raise InvalidArgument(
                f"updateMask names {field} but the body has none; send "
                '{"defaultVersion": {"name": "v1"}}.',
                field=field,
            )
        return resource_id(name, parent=ModelName(project, model_id), field=field)

    # --- versions ----------------------------------------------------------------------

    def create_version(self, project: str, model_id: str, body: Mapping[str, Any]) -> Operation:
        """versions.create: validate, store the version CREATING with its operation, return
        the operation (the deployer finishes it)."""
        parent = ModelName(project, _model_id(model_id))
        version = parse_version(body).without_output_only()
        version_id = resource_id(version.name, parent=parent)
        version = validate_version(version.model_copy(update={"name": version_id}))
        _check_supported(version)
        model = self._store.get_model(project, parent.model)
        self._files.check(str(version.deployment_uri))
        self._check_packages(version.package_uris or [])
        now = self._clock()
        version = version.model_copy(
            update={
                "name": str(parent.version(version_id)),
                "state": VersionState.CREATING,
                "create_time": now,
            }
        )
        operation = self._new_operation(
            project, OperationType.CREATE_VERSION, model, version=version
        )
        self._store.create_version(
            project,
            parent.model,
            version,
            runtime=VersionRuntime(operation=operation["name"]),
            operation=operation,
        )
        return operation

    def get_version(self, project: str, model_id: str, version_id: str) -> Version:
        stored = self._store.get_version(project, _model_id(model_id), _version_id(version_id))
        return version_view(stored)

    def list_versions(
        self,
        project: str,
        model_id: str,
        *,
        filter: str | None = None,
        page_size: int | None = None,
        page_token: str | None = None,
    ) -> tuple[list[Version], str | None]:
        """Newest first; ``filter`` per ``domain/registry_filter.py`` (``state=READY`` too)."""
        rows, token = self._store.list_versions(
            project,
            _model_id(model_id),
            parse_version_filter(filter),
            page_size=page_size_of(page_size),
            page_token=page_token or None,
        )
        return [version_view(row) for row in rows], token

    def delete_version(self, project: str, model_id: str, version_id: str) -> Operation:
        """versions.delete: mark it DELETING with an operation the deployer finishes."""
        model_id, version_id = _model_id(model_id), _version_id(version_id)
        model = self._store.get_model(project, model_id)
        snapshot = self._store.get_version(project, model_id, version_id).version
        deleting = snapshot.model_copy(update={"state": VersionState.DELETING})
        operation = self._new_operation(
            project, OperationType.DELETE_VERSION, model, version=deleting
        )
        others, _ = self._store.list_versions(
            project, model_id, parse_version_filter(None), page_size=2, page_token=None
        )

        def change(model: StoredModel, version: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            _check_not_busy(version, "be deleted")
            if version.is_default and len(others) > 1:
                raise FailedPrecondition(
                    f"Version '{version.version.name}' is the model's default and other "
                    "versions remain; make another version the default (versions.setDefault) "
                    "first, or delete the others.",
                    field="name",
                )
            state = {"state": VersionState.DELETING}
            runtime = replace(version.runtime, operation=operation["name"])
            return model, replace(
                version, version=version.version.model_copy(update=state), runtime=runtime
            )

        self._store.update_version(project, model_id, version_id, change, operation=operation)
        return operation

    def patch_version(
        self,
        project: str,
        model_id: str,
        version_id: str,
        body: Mapping[str, Any],
        update_mask: str | None,
    ) -> Operation:
        """versions.patch: the masked fields (spec §2.2); returns the finished operation."""
        model_id, version_id = _model_id(model_id), _version_id(version_id)
        fields = version_update_mask(update_mask)
        patch = parse_version(body)

        def change(model: StoredModel, version: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            _check_not_busy(version, "be updated")
            patched = patched_version(version.version, patch, fields)
            return model, replace(version, version=patched)

        model, stored = self._store.update_version(project, model_id, version_id, change)
        operation = self._new_operation(
            project, OperationType.UPDATE_VERSION, model, version=stored.version
        )
        view = version_view(stored).to_api()
        done = succeeded(operation, VERSION_TYPE, view, now=self._clock())
        return dict(self._store.create_operation(project, done))

    def set_default_version(self, project: str, model_id: str, version_id: str) -> Version:
        """versions.setDefault: a READY version becomes the model's default."""

        def change(model: StoredModel, version: StoredVersion) -> tuple[StoredModel, StoredVersion]:
            _check_can_be_default(version)
            return replace(model, default_version=version.version_id), version

        _, stored = self._store.update_version(
            project, _model_id(model_id), _version_id(version_id), change
        )
        return version_view(stored)

    def _check_packages(self, uris: list[str]) -> None:
        if not uris:
            return
        if self._packages is None:
            raise FailedPrecondition(
                "This server cannot fetch packageUris (it has no package service); deploy "
                "without packages or use a server that has one.",
                field=PACKAGES_FIELD,
            )
        self._packages.check(uris, field=PACKAGES_FIELD)

    # --- operations --------------------------------------------------------------------

    def _new_operation(
        self,
        project: str,
        operation_type: OperationType,
        model: StoredModel,
        *,
        version: Version | None = None,
        labels: dict[str, str] | None = None,
    ) -> Operation:
        now = self._clock()
        version_id = str(version.name).rsplit("/", 1)[-1] if version else None
        name = operation_name(project, operation_type, model.model_id, version_id, now=now)
        metadata = OperationMetadata(
            create_time=now,
            operation_type=operation_type,
            model_name=model.model.name,
            version=version,
            labels=labels if version is None else version.labels,
        )
        return new_operation(name, metadata)


def _model_id(value: str) -> str:
    return validate_resource_id(value, field="name", kind="model")


def _version_id(value: str) -> str:
    return validate_resource_id(value, field="name", kind="version")


def _check_not_busy(version: StoredVersion, action: str) -> None:
    if version.state.is_busy():
        raise FailedPrecondition(
            f"Version '{version.version.name}' is {version.state.value}; it cannot {action} "
            "until that finishes. Wait for its operation (or cancel a creation) and retry.",
            field="name",
        )


def _check_can_be_default(version: StoredVersion) -> None:
    if version.state is not VersionState.READY:
        raise FailedPrecondition(
            f"Version '{version.version.name}' is {version.state.value}; only a READY version "
            "can be the default.",
            field="name",
        )


def _check_supported(version: Version) -> None:
    """What this release cannot serve is refused up front, not failed later."""
    if version.container is not None:
        raise MlEngineError(
            "Custom containers ('container') are not supported by this release yet; deploy "
            "the model files with deploymentUri (and optionally framework, or a "
            "predictionClass with packageUris) instead.",
            field="container",
            code=Code.UNIMPLEMENTED,
        )
