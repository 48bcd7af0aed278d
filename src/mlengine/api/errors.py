"""Every failure of an API call becomes the Google JSON error envelope, here and nowhere else.

    {"error": {"code": 400, "message": "...", "status": "INVALID_ARGUMENT",
               "details": [{"@type": "type.googleapis.com/google.rpc.BadRequest",
                            "fieldViolations": [{"field": "jobId", "description": "..."}]}]}}

``code`` is the HTTP status; ``status`` the canonical code. What becomes an envelope:

* :class:`MlEngineError` (raised by services, domain and the request parsing of this package)
  — its own code and HTTP status, from the one table in ``domain/errors.py``;
* routing failures from Starlette — an unknown path is NOT_FOUND (404), a known path with the
  wrong verb is 405 with ``Allow`` (status ``UNIMPLEMENTED``, the nearest canonical code);
* anything else — INTERNAL (500) with a generic message; the traceback goes to the server
  log, never to the client (:class:`InternalErrorMiddleware`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlengine.api.rendering import json_response, pretty_print_of
from mlengine.domain.errors import BAD_REQUEST_TYPE as BAD_REQUEST_TYPE
from mlengine.domain.errors import Code, InvalidArgument, MlEngineError

LOG = logging.getLogger(__name__)
METHOD_NOT_ALLOWED = 405
#: RFC 6750 challenge sent with every 401. The realm is not optional in practice: httplib2
#: (under the official Google client) cannot parse a bare ``Bearer`` and raises instead of
#: reporting the 401.
BEARER_CHALLENGE = 'Bearer realm="mlengine"'
INTERNAL_MESSAGE = (
    "Internal error while handling the request; the server log has the details. "
    "Retry, and report it if it persists."
)


def error_envelope(exc: MlEngineError) -> dict[str, Any]:
    """The ``{"error": {...}}`` body of ``exc``, with a BadRequest detail when it names a field."""
    return exc.envelope()


def error_response(
    exc: MlEngineError,
    *,
    pretty: bool = True,
    http_status: int | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """The envelope of ``exc`` as a response (``http_status`` overrides the table's)."""
    body = error_envelope(exc)
    status = http_status or exc.http_status
    body["error"]["code"] = status
    return json_response(body, status_code=status, pretty=pretty, headers=headers)


def _pretty(request: Request) -> bool:
    try:
        return pretty_print_of(request.query_params)
    except MlEngineError:
        return True


async def _on_mlengine_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MlEngineError)
    unauthenticated = exc.code is Code.UNAUTHENTICATED
    headers = {"WWW-Authenticate": BEARER_CHALLENGE} if unauthenticated else None
    return error_response(exc, pretty=_pretty(request), headers=headers)


class _RoutingErrors:
    """404 and 405 from Starlette's router as envelopes; 405 lists every routed verb.

    (Starlette's own ``Allow`` names only the first route that matched the path, so the
    verbs are collected here from the routers the app was built from.)
    """

    def __init__(self, routers: Sequence[APIRouter]) -> None:
        self._routes = [
            (route.path_regex, frozenset(route.methods or ()))
            for router in routers
            for route in router.routes
            if isinstance(route, APIRoute)
        ]

    def allowed_methods(self, path: str) -> str:
        methods: set[str] = set()
        for pattern, verbs in self._routes:
            if pattern.match(path):
                methods |= verbs
        return ", ".join(sorted(methods))

    async def __call__(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, StarletteHTTPException)
        pretty = _pretty(request)
        path = request.url.path
        if exc.status_code == 404:
            error = MlEngineError(
                f"No such API method: {request.method} {path}. The v1 paths are listed "
                "in docs/rest-api.md.",
                code=Code.NOT_FOUND,
            )
            return error_response(error, pretty=pretty)
        if exc.status_code == METHOD_NOT_ALLOWED:
            allowed = self.allowed_methods(path)
            error = MlEngineError(
                f"Method {request.method} is not allowed on {path}; allowed: {allowed}.",
                code=Code.UNIMPLEMENTED,
            )
            return error_response(
                error, pretty=pretty, http_status=METHOD_NOT_ALLOWED, headers={"Allow": allowed}
            )
        code = Code.INVALID_ARGUMENT if exc.status_code < 500 else Code.INTERNAL
        error = MlEngineError(str(exc.detail), code=code)
        return error_response(error, pretty=pretty, http_status=exc.status_code)


async def _on_validation_error(request: Request, exc: Exception) -> Response:
    # Routes parse their own input, so this only fires for a path or parameter FastAPI
    # itself could not convert; keep it in the envelope all the same.
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    field = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    error = InvalidArgument(f"Invalid request: {first.get('msg', 'bad input')}.", field=field)
    return error_response(error, pretty=_pretty(request))


def install_error_handlers(app: FastAPI, routers: Sequence[APIRouter]) -> None:
    """Send every known failure to the envelope; ``routers`` are the app's, for 405s."""
    app.add_exception_handler(MlEngineError, _on_mlengine_error)
    app.add_exception_handler(StarletteHTTPException, _RoutingErrors(routers))
    app.add_exception_handler(RequestValidationError, _on_validation_error)


class InternalErrorMiddleware:
    """Turns an unexpected exception into a 500 INTERNAL envelope and logs its traceback.

    Installed inside the metrics middleware so a 500 is counted, and outside Starlette's
    own exception layer so it sees exactly what no handler took.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            LOG.exception("unhandled error in %s %s", scope.get("method"), scope.get("path"))
            if started:  # nothing sensible can follow a half-sent response
                raise
            response = error_response(MlEngineError(INTERNAL_MESSAGE, code=Code.INTERNAL))
            await response(scope, receive, send)
