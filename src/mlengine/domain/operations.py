"""The long-running operations of the model registry, in wire form.

An operation is stored and served as a ``google.longrunning.Operation`` JSON object::

    {"name": "projects/p/operations/create_census_v1-1714557000123-3fa2c1",
     "metadata": {"@type": "type.googleapis.com/google.cloud.ml.v1.OperationMetadata",
                  "operationType": "CREATE_VERSION", "modelName": "projects/p/models/census",
                  "version": {...}, "createTime": "...", "startTime": "...", "endTime": "..."},
     "done": true,
     "response": {"@type": "type.googleapis.com/google.cloud.ml.v1.Version", ...}}

``done`` is false while the work runs; once true, exactly one of ``response`` and ``error``
(a ``google.rpc.Status`` whose ``code`` is the rpc code *number*, 1 = CANCELLED) is set.
Operation ids follow Google's observed ``<verb>_<model>[_<version>]-<epoch ms>`` with a short
random suffix, so two operations on one resource within a millisecond never collide.

These functions are pure: they build new dicts and never touch a store.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from mlengine.domain.errors import HTTP_STATUS, Code, MlEngineError
from mlengine.domain.resources_models import OperationMetadata, OperationType

METADATA_TYPE = "type.googleapis.com/google.cloud.ml.v1.OperationMetadata"
MODEL_TYPE = "type.googleapis.com/google.cloud.ml.v1.Model"
VERSION_TYPE = "type.googleapis.com/google.cloud.ml.v1.Version"
EMPTY_TYPE = "type.googleapis.com/google.protobuf.Empty"
#: Longest ``<verb>_<model>_<version>`` part of an id (ids are at most 255 characters).
MAX_ID_BASE = 200

_VERBS = {
    OperationType.CREATE_VERSION: "create",
    OperationType.DELETE_VERSION: "delete",
    OperationType.DELETE_MODEL: "delete",
    OperationType.UPDATE_MODEL: "update",
    OperationType.UPDATE_VERSION: "update",
    OperationType.UPDATE_CONFIG: "update",
}


def operation_name(
    project: str,
    operation_type: OperationType,
    model: str,
    version: str | None = None,
    *,
    now: datetime,
) -> str:
    """A new, unique ``projects/{project}/operations/{id}`` for work on a model or version."""
    verb = _VERBS.get(operation_type, "operation")
    base = f"{verb}_{model}" + (f"_{version}" if version else "")
    millis = int(now.timestamp() * 1000)
    return f"projects/{project}/operations/{base[:MAX_ID_BASE]}-{millis}-{secrets.token_hex(3)}"


def new_operation(name: str, metadata: OperationMetadata) -> dict[str, Any]:
    """An operation that has not finished yet."""
    return {"name": name, "metadata": _metadata_body(metadata), "done": False}


def metadata_of(operation: Mapping[str, Any]) -> OperationMetadata:
    """The operation's metadata as a model (the ``@type`` dropped)."""
    body = dict(operation.get("metadata") or {})
    body.pop("@type", None)
    return OperationMetadata.model_validate(body)


def with_metadata(operation: Mapping[str, Any], **changes: Any) -> dict[str, Any]:
    """A copy whose metadata has ``changes`` (OperationMetadata attribute names) applied."""
    metadata = metadata_of(operation).model_copy(update=changes)
    return {**operation, "metadata": _metadata_body(metadata)}


def succeeded(
    operation: Mapping[str, Any],
    type_url: str,
    resource: Mapping[str, Any] | None,
    *,
    now: datetime,
) -> dict[str, Any]:
    """The operation, done, with ``resource`` (wire form) as its ``response``."""
    done = _finish(operation, now)
    done["response"] = {"@type": type_url, **(resource or {})}
    return done


def failed(operation: Mapping[str, Any], error: MlEngineError, *, now: datetime) -> dict[str, Any]:
    """The operation, done, with ``error`` as its google.rpc.Status."""
    done = _finish(operation, now)
    done["error"] = rpc_status(error)
    return done


def rpc_status(error: MlEngineError) -> dict[str, Any]:
    """``google.rpc.Status`` of ``error``: the rpc code number (not the HTTP status)."""
    return {"code": HTTP_STATUS[error.code][0], "message": error.message}


def cancelled_error(message: str) -> MlEngineError:
    """The error of an operation cancelled by the user (rpc code 1, CANCELLED)."""
    return MlEngineError(message, code=Code.CANCELLED)


def cancellation_requested(operation: Mapping[str, Any]) -> bool:
    """True when operations.cancel was called on this (unfinished) operation."""
    metadata = operation.get("metadata") or {}
    return bool(metadata.get("isCancellationRequested"))


def _finish(operation: Mapping[str, Any], now: datetime) -> dict[str, Any]:
    metadata = metadata_of(operation)
    update: dict[str, Any] = {"end_time": now}
    if metadata.start_time is None:
        update["start_time"] = now
    body = {
        "name": operation["name"],
        "metadata": _metadata_body(metadata.model_copy(update=update)),
    }
    body["done"] = True
    return body


def _metadata_body(metadata: OperationMetadata) -> dict[str, Any]:
    return {"@type": METADATA_TYPE, **metadata.to_api()}
