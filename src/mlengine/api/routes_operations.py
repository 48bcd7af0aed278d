"""``projects.operations`` of the v1 API (google.longrunning).

=======  ==================================================  =========================
GET      /v1/projects/{project}/operations                   operations.list
GET      /v1/projects/{project}/operations/{operation}       operations.get
POST     /v1/projects/{project}/operations/{operation}:cancel  operations.cancel (→ {})
=======  ==================================================  =========================

The discovery document spells the list path ``v1/{+name}/operations`` with
``name=projects/P``; it expands to the same URL as above.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies from the
# annotations, and the ``Annotated`` aliases built inside the router functions can only be
# resolved while the signatures are evaluated eagerly.
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from mlengine.api.rendering import Query, json_body, list_page, query_params, reject_fields
from mlengine.domain.names import validate_project_id
from mlengine.services.operations import OperationService, parse_operation_filter

OPERATIONS = "/v1/projects/{project:segment}/operations"
OPERATION = OPERATIONS + "/{operation:segment}"

# The query parameters each method takes besides the standard ones.
ListQuery = Annotated[
    Query,
    Depends(
        query_params("operations.list", "filter", "pageSize", "pageToken", "returnPartialSuccess")
    ),
]
GetQuery = Annotated[Query, Depends(query_params("operations.get"))]
CancelQuery = Annotated[Query, Depends(query_params("operations.cancel"))]


def operations_router(operations: OperationService, *, max_body_bytes: int) -> APIRouter:
    router = APIRouter()
    OptionalBody = Annotated[dict[str, Any], Depends(json_body(max_body_bytes, required=False))]

    @router.get(OPERATIONS)
    def list_operations(project: str, q: ListQuery) -> Response:
        parse_operation_filter(q.text("filter"))
        q.boolean("returnPartialSuccess")  # validated; every result is complete here
        found, token = operations.list_operations(
            validate_project_id(project, field="name"),
            page_size=q.integer("pageSize"),
            page_token=q.text("pageToken"),
        )
        return q.render(list_page("operations", [dict(op) for op in found], token))

    @router.get(OPERATION)
    def get(project: str, operation: str, q: GetQuery) -> Response:
        return q.render(dict(operations.get(operation_name(project, operation))))

    @router.post(OPERATION + ":cancel")
    def cancel(project: str, operation: str, body: OptionalBody, q: CancelQuery) -> Response:
        reject_fields(body, "CancelOperationRequest")
        operations.cancel(operation_name(project, operation))
        return q.render({})

    return router


def operation_name(project: str, operation: str) -> str:
    return f"projects/{validate_project_id(project, field='name')}/operations/{operation}"
