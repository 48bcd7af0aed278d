"""``create_app(runtime)``: the ASGI app of the server.

Layers, outermost first (each a plain ASGI middleware, see their modules)::

    RequestMetricsMiddleware   counts and times every request (observability)
    InternalErrorMiddleware    an unexpected exception → 500 INTERNAL envelope (errors)
    BearerAuthMiddleware       401 without an accepted token, when tokens are set (auth)
    PredictDispatch            ``…:predict`` → the data plane (serving/dataplane.py)
    FastAPI routing            routes_jobs, routes_models, routes_operations, observability
                               MlEngineError / 404 / 405 → envelope (errors)

New resource collections (prediction, …) add a ``routes_<name>.py`` with a
``<name>_router(service, …)`` function and one ``include_router`` line below.
"""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import FastAPI
from starlette.types import ASGIApp, Receive, Scope, Send

from mlengine import __version__
from mlengine.api.auth import BearerAuthMiddleware, BearerTokens
from mlengine.api.errors import InternalErrorMiddleware, install_error_handlers
from mlengine.api.observability import ApiMetrics, RequestMetricsMiddleware, health_router
from mlengine.api.routes_jobs import jobs_router, packages_router
from mlengine.api.routes_models import models_router
from mlengine.api.routes_operations import operations_router
from mlengine.composition import Runtime
from mlengine.config import DEFAULT_MAX_PACKAGE_BYTES, DEFAULT_MAX_REQUEST_BYTES, Settings
from mlengine.serving.dataplane import PredictionApp

#: Largest JSON body of an API call; larger ones get 413 before they are parsed.
DEFAULT_MAX_BODY_BYTES = DEFAULT_MAX_REQUEST_BYTES


@dataclass(frozen=True)
class _PredictRoute:
    path_format: str


_PREDICT_MODEL = _PredictRoute("/v1/projects/{project}/models/{model}:predict")
_PREDICT_VERSION = _PredictRoute("/v1/projects/{project}/models/{model}/versions/{version}:predict")


class PredictDispatch:
    """Hands ``:predict`` calls to the prediction data plane, everything else to FastAPI.

    The data plane is a plain ASGI app with its own fast request handling; going around
    FastAPI's routing and validation is what keeps a predict call cheap.
    """

    def __init__(self, app: ASGIApp, plane: PredictionApp) -> None:
        self.app = app
        self.plane = plane

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"].endswith(":predict"):
            # Route templates label the request metrics; ids never become label values.
            versioned = "/versions/" in scope["path"]
            scope["route"] = _PREDICT_VERSION if versioned else _PREDICT_MODEL
            await self.plane(scope, receive, send)
            return
        await self.app(scope, receive, send)


@dataclass(frozen=True)
class ApiLimits:
    """Request size limits: JSON API calls, and package uploads."""

    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_upload_bytes: int = DEFAULT_MAX_PACKAGE_BYTES

    @classmethod
    def from_settings(cls, settings: Settings) -> ApiLimits:
        return cls(settings.max_request_bytes, settings.max_package_bytes)


def create_app(
    runtime: Runtime, *, limits: ApiLimits | None = None, tokens: BearerTokens | None = None
) -> FastAPI:
    """The app over ``runtime``'s services. ``tokens`` default to the runtime's settings."""
    limits = limits or ApiLimits.from_settings(runtime.settings)
    tokens = tokens if tokens is not None else BearerTokens.from_settings(runtime.settings)
    app = FastAPI(
        title="mlengine", version=__version__, docs_url=None, redoc_url=None, openapi_url=None
    )
    metrics = ApiMetrics(runtime.store)
    routers = [
        health_router(runtime.store, metrics),
        jobs_router(runtime.jobs, max_body_bytes=limits.max_body_bytes),
        models_router(runtime.models, max_body_bytes=limits.max_body_bytes),
        operations_router(runtime.operations, max_body_bytes=limits.max_body_bytes),
        packages_router(runtime.packages, max_upload_bytes=limits.max_upload_bytes),
    ]
    for router in routers:
        app.include_router(router)
    install_error_handlers(app, routers)
    # add_middleware wraps: the last one added is the outermost. Predict calls leave for the
    # data plane innermost: after auth, error handling and metrics, before FastAPI routing.
    app.add_middleware(PredictDispatch, plane=runtime.prediction)
    app.add_middleware(BearerAuthMiddleware, tokens=tokens)
    app.add_middleware(InternalErrorMiddleware)
    app.add_middleware(RequestMetricsMiddleware, metrics=metrics)
    return app
