"""Long-running operations (google.longrunning.Operation): get, list, cancel.

Operations are created by the services whose methods are long-running in the v1 API
(version create/delete, model delete/patch); this service only reads and cancels them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.names import OperationName
from mlengine.services.jobs import page_size_of, utc_now
from mlengine.stores.base import MetadataStore


class OperationService:
    """Use cases on ``projects/{project}/operations``."""

    def __init__(self, store: MetadataStore, *, clock: Callable[[], datetime] = utc_now) -> None:
        self._store = store
        self._clock = clock

    def get(self, name: str) -> Mapping[str, Any]:
        OperationName.parse(name, field="name")
        return self._store.get_operation(name)

    def list_operations(
        self, project: str, *, page_size: int | None = None, page_token: str | None = None
    ) -> tuple[list[Mapping[str, Any]], str | None]:
        return self._store.list_operations(
            project, page_size=page_size_of(page_size), page_token=page_token or None
        )

    def cancel(self, name: str) -> None:
        """Request cancellation. A finished operation is left as it is (as in Google's API,
        cancelling a done operation is not an error); the owning service acts on the flag."""
        OperationName.parse(name, field="name")

        def change(op: Mapping[str, Any]) -> Mapping[str, Any]:
            if op.get("done"):
                return op
            metadata = dict(op.get("metadata") or {})
            metadata["isCancellationRequested"] = True
            return {**op, "metadata": metadata}

        self._store.update_operation(name, change)


def parse_operation_filter(text: str | None) -> None:
    """operations.list accepts no filter grammar yet; refuse one instead of ignoring it."""
    if text:
        raise InvalidArgument(
            "filter is not supported on operations.list yet; list without "
            "it and select on the client.",
            field="filter",
        )
