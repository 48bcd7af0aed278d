"""``projects.models`` and ``projects.models.versions`` of the v1 API (the model registry).

=======  ===================================================  ===============================
POST     /v1/projects/{p}/models                              models.create (Model → Model)
GET      /v1/projects/{p}/models                              models.list (filter, paging)
GET      /v1/projects/{p}/models/{m}                          models.get
PATCH    /v1/projects/{p}/models/{m}                          models.patch (updateMask → Op)
DELETE   /v1/projects/{p}/models/{m}                          models.delete (→ Operation)
POST     /v1/projects/{p}/models/{m}/versions                 versions.create (→ Operation)
GET      /v1/projects/{p}/models/{m}/versions                 versions.list (filter, paging)
GET      /v1/projects/{p}/models/{m}/versions/{v}             versions.get
PATCH    /v1/projects/{p}/models/{m}/versions/{v}             versions.patch (updateMask → Op)
DELETE   /v1/projects/{p}/models/{m}/versions/{v}             versions.delete (→ Operation)
POST     /v1/projects/{p}/models/{m}/versions/{v}:setDefault  versions.setDefault ({} → Version)
=======  ===================================================  ===============================

Each handler parses, calls one service method and renders.  Prediction (``:predict``) is
served elsewhere.
"""

# No ``from __future__ import annotations`` here: FastAPI reads the dependencies from the
# annotations, and the ``Annotated`` aliases built inside the router functions can only be
# resolved while the signatures are evaluated eagerly.
from typing import Annotated, Any

from fastapi import APIRouter, Depends
from starlette.responses import Response

from mlengine.api.rendering import Query, json_body, list_page, query_params, reject_fields
from mlengine.domain.names import validate_project_id
from mlengine.services.models import ModelService

MODELS = "/v1/projects/{project:segment}/models"
MODEL = MODELS + "/{model:segment}"
VERSIONS = MODEL + "/versions"
VERSION = VERSIONS + "/{version:segment}"

# The query parameters each method takes besides the standard ones.
_LIST = ("filter", "pageSize", "pageToken")
ModelCreateQuery = Annotated[Query, Depends(query_params("models.create"))]
ModelListQuery = Annotated[Query, Depends(query_params("models.list", *_LIST))]
ModelGetQuery = Annotated[Query, Depends(query_params("models.get"))]
ModelPatchQuery = Annotated[Query, Depends(query_params("models.patch", "updateMask"))]
ModelDeleteQuery = Annotated[Query, Depends(query_params("models.delete"))]
VersionCreateQuery = Annotated[Query, Depends(query_params("versions.create"))]
VersionListQuery = Annotated[Query, Depends(query_params("versions.list", *_LIST))]
VersionGetQuery = Annotated[Query, Depends(query_params("versions.get"))]
VersionPatchQuery = Annotated[Query, Depends(query_params("versions.patch", "updateMask"))]
VersionDeleteQuery = Annotated[Query, Depends(query_params("versions.delete"))]
SetDefaultQuery = Annotated[Query, Depends(query_params("versions.setDefault"))]


def models_router(models: ModelService, *, max_body_bytes: int) -> APIRouter:
    """The v1 model and version methods over ``models``."""
    router = APIRouter()
    Body = Annotated[dict[str, Any], Depends(json_body(max_body_bytes))]
    OptionalBody = Annotated[dict[str, Any], Depends(json_body(max_body_bytes, required=False))]

    @router.post(MODELS)
    def create_model(project: str, body: Body, q: ModelCreateQuery) -> Response:
        return q.render(models.create_model(_parent(project), body).to_api())

    @router.get(MODELS)
    def list_models(project: str, q: ModelListQuery) -> Response:
        found, token = models.list_models(
            _parent(project),
            filter=q.text("filter"),
            page_size=q.integer("pageSize"),
            page_token=q.text("pageToken"),
        )
        return q.render(list_page("models", [m.to_api() for m in found], token))

    @router.get(MODEL)
    def get_model(project: str, model: str, q: ModelGetQuery) -> Response:
        return q.render(models.get_model(_name(project), model).to_api())

    @router.patch(MODEL)
    def patch_model(project: str, model: str, body: Body, q: ModelPatchQuery) -> Response:
        return q.render(models.patch_model(_name(project), model, body, q.text("updateMask")))

    @router.delete(MODEL)
    def delete_model(project: str, model: str, q: ModelDeleteQuery) -> Response:
        return q.render(models.delete_model(_name(project), model))

    @router.post(VERSIONS)
    def create_version(project: str, model: str, body: Body, q: VersionCreateQuery) -> Response:
        return q.render(models.create_version(_parent(project), model, body))

    @router.get(VERSIONS)
    def list_versions(project: str, model: str, q: VersionListQuery) -> Response:
        found, token = models.list_versions(
            _parent(project),
            model,
            filter=q.text("filter"),
            page_size=q.integer("pageSize"),
            page_token=q.text("pageToken"),
        )
        return q.render(list_page("versions", [v.to_api() for v in found], token))

    @router.get(VERSION)
    def get_version(project: str, model: str, version: str, q: VersionGetQuery) -> Response:
        return q.render(models.get_version(_name(project), model, version).to_api())

    @router.patch(VERSION)
    def patch_version(
        project: str, model: str, version: str, body: Body, q: VersionPatchQuery
    ) -> Response:
        mask = q.text("updateMask")
        return q.render(models.patch_version(_name(project), model, version, body, mask))

    @router.delete(VERSION)
    def delete_version(project: str, model: str, version: str, q: VersionDeleteQuery) -> Response:
        return q.render(models.delete_version(_name(project), model, version))

    @router.post(VERSION + ":setDefault")
    def set_default(
        project: str, model: str, version: str, body: OptionalBody, q: SetDefaultQuery
    ) -> Response:
        reject_fields(body, "SetDefaultVersionRequest")
        return q.render(models.set_default_version(_name(project), model, version).to_api())

    return router


def _parent(project: str) -> str:
    return validate_project_id(project, field="parent")


def _name(project: str) -> str:
    return validate_project_id(project, field="name")
