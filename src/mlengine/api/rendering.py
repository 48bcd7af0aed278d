"""The Google JSON API wire conventions: query parameters, request bodies, responses.

Every v1 method accepts the standard query parameters of the discovery document besides its
own; anything else is refused (INVALID_ARGUMENT naming the parameter), so a typo such as
``pagesize=5`` is not silently ignored.

=================  =======================================================================
``alt``            ``json`` only (the official client sends it on every call)
``prettyPrint``    ``true`` (default: 2-space indented JSON, as Google) or ``false``
``fields``         partial response, see :class:`FieldMask`
``$.xgafv``        ``1`` or ``2``; both get the same (v2) error envelope
``key``, ``quotaUser``, ``oauth_token``, ``uploadType``, ``upload_protocol``: accepted, ignored
``access_token``   a bearer token (see ``api/auth.py``); prefer the Authorization header
``callback``       refused: JSONP is not served
=================  =======================================================================

Bodies are read with a size limit checked against ``Content-Length`` and again while the
bytes arrive, so an oversized body is refused (413) before anything parses it.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import IO, Any, overload

import orjson
from starlette.datastructures import QueryParams
from starlette.requests import Request
from starlette.responses import Response

from mlengine.domain.errors import InvalidArgument

MEDIA_TYPE = "application/json; charset=UTF-8"
STANDARD_PARAMETERS = (
    "$.xgafv",
    "access_token",
    "alt",
    "callback",
    "fields",
    "key",
    "oauth_token",
    "prettyPrint",
    "quotaUser",
    "uploadType",
    "upload_protocol",
)
#: Bytes of an oversized body still read (and dropped) so the client gets to see the 413
#: instead of a reset connection; bodies declared larger than this are not drained.
MAX_DRAIN_BYTES = 64 * 1024 * 1024
_TRUE, _FALSE = {"true", "1"}, {"false", "0"}
_SPOOL_IN_MEMORY = 1024 * 1024


class PayloadTooLarge(InvalidArgument):
    """A request body over the limit: INVALID_ARGUMENT, answered with HTTP 413."""

    @property
    def http_status(self) -> int:
        return 413


# -- responses --------------------------------------------------------------------------------


def json_response(
    payload: Any,
    *,
    status_code: int = 200,
    pretty: bool = True,
    headers: Mapping[str, str] | None = None,
) -> Response:
    """``payload`` as JSON: indented by 2 spaces when ``pretty``, compact otherwise."""
    content = (
        orjson.dumps(payload, option=orjson.OPT_INDENT_2) + b"\n"
        if pretty
        else (orjson.dumps(payload))
    )
    return Response(
        content, status_code=status_code, media_type=MEDIA_TYPE, headers=dict(headers or {})
    )


def pretty_print_of(params: QueryParams) -> bool:
    """The ``prettyPrint`` query parameter (default true); INVALID_ARGUMENT when malformed."""
    value = params.get("prettyPrint")
    if value is None:
        return True
    if value.lower() in _TRUE:
        return True
    if value.lower() in _FALSE:
        return False
    raise InvalidArgument(f"prettyPrint must be true or false, got {value!r}.", field="prettyPrint")


# -- partial responses ----------------------------------------------------------------------

_FIELD_TOKEN = re.compile(r"[A-Za-z0-9_@.$*-]+|[/,()]")


class FieldMask:
    """A ``fields`` selector: which parts of a response to return.

    Syntax (a practical subset of Google's partial-response grammar)::

        fields=jobId,state                      top-level fields
        fields=trainingInput/region             a nested field (keeps its parents)
        fields=jobs(jobId,state),nextPageToken  sub-selection applied to every list element
        fields=trainingOutput/*                 every field of an object

    A selected field that a response lacks is simply absent; selections that leave an
    object empty drop it.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        tokens = _FIELD_TOKEN.findall(text)
        if "".join(tokens) != text.replace(" ", "") or not tokens:
            raise self._error("use names, '/', ',' and '(...)'")
        tree, rest = self._selection(tokens)
        if rest:
            raise self._error(f"unexpected {rest[0]!r}")
        self.tree = tree

    def _error(self, reason: str) -> InvalidArgument:
        return InvalidArgument(
            f"Invalid fields selector {self.text!r}: {reason}, e.g. "
            "'jobs(jobId,state),nextPageToken'.",
            field="fields",
        )

    def _selection(self, tokens: list[str]) -> tuple[dict[str, Any], list[str]]:
        tree: dict[str, Any] = {}
        while True:
            path, tokens = self._path(tokens)
            sub: dict[str, Any] = {}
            if tokens[:1] == ["("]:
                sub, tokens = self._selection(tokens[1:])
                if tokens[:1] != [")"]:
                    raise self._error("missing ')'")
                tokens = tokens[1:]
            _merge(tree, path, sub)
            if tokens[:1] != [","]:
                return tree, tokens
            tokens = tokens[1:]

    def _path(self, tokens: list[str]) -> tuple[list[str], list[str]]:
        path: list[str] = []
        while True:
            if not tokens or tokens[0] in "/,()":
                raise self._error("a field name is missing")
            path.append(tokens[0])
            tokens = tokens[1:]
            if tokens[:1] != ["/"]:
                return path, tokens
            tokens = tokens[1:]

    def apply(self, payload: Any) -> Any:
        return _select(payload, self.tree)


def _merge(tree: dict[str, Any], path: list[str], sub: dict[str, Any]) -> None:
    node = tree
    for name in path[:-1]:
        if name in node and not node[name]:
            return  # the whole of an ancestor is already selected
        node = node.setdefault(name, {})
    last = path[-1]
    if last in node and not node[last]:
        return
    if not sub:
        node[last] = {}
    else:
        existing = node.setdefault(last, {})
        for key, value in sub.items():
            _merge(existing, [key], value)


def _select(value: Any, tree: dict[str, Any]) -> Any:
    if not tree:
        return value
    if isinstance(value, list):
        return [_select(item, tree) for item in value]
    if not isinstance(value, dict):
        return value
    out: dict[str, Any] = {}
    for name, sub in tree.items():
        keys = list(value) if name == "*" else [name] if name in value else []
        for key in keys:
            chosen = _select(value[key], sub)
            if chosen != {} or value[key] == {}:
                out[key] = chosen
    return out


# -- v1 messages ----------------------------------------------------------------------------


def list_page(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    """A v1 list response; an empty page with no token is literally ``{}``."""
    page: dict[str, Any] = {key: items} if items else {}
    if token:
        page["nextPageToken"] = token
    return page


def reject_fields(body: dict[str, Any], schema: str) -> None:
    """Empty request messages (``{}``) must stay empty: name the first unknown field."""
    if body:
        name = next(iter(body))
        raise InvalidArgument(
            f"Unknown field {name!r}: {schema} has no fields; send {{}} or no body.", field=name
        )


# -- query parameters -----------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    """The validated query parameters of one call, and how to render its answer."""

    values: Mapping[str, str]
    pretty: bool = True
    fields: FieldMask | None = None

    def text(self, name: str) -> str | None:
        return self.values.get(name)

    @overload
    def integer(self, name: str) -> int | None: ...

    @overload
    def integer(self, name: str, default: int) -> int: ...

    def integer(self, name: str, default: int | None = None) -> int | None:
        """The parameter as an integer, ``default`` when absent or empty."""
        value = self.values.get(name)
        if value is None or value == "":
            return default
        try:
            return int(value)
        except ValueError:
            raise InvalidArgument(
                f"{name} must be an integer, got {value!r}.", field=name
            ) from None

    def boolean(self, name: str) -> bool | None:
        value = self.values.get(name)
        if value is None or value == "":
            return None
        if value.lower() in _TRUE | _FALSE:
            return value.lower() in _TRUE
        raise InvalidArgument(f"{name} must be true or false, got {value!r}.", field=name)

    def render(self, payload: Any, *, status_code: int = 200) -> Response:
        """The JSON response, with ``fields`` and ``prettyPrint`` applied."""
        if self.fields is not None:
            payload = self.fields.apply(payload)
        return json_response(payload, status_code=status_code, pretty=self.pretty)


def parse_query(params: QueryParams, method: str, allowed: tuple[str, ...]) -> Query:
    """Validate ``params`` for API method ``method`` that takes ``allowed`` besides the
    standard parameters; raise INVALID_ARGUMENT naming the first unknown or bad one."""
    known = set(allowed) | set(STANDARD_PARAMETERS)
    for name in params:
        if name not in known:
            accepted = ", ".join(allowed) + " and " if allowed else ""
            raise InvalidArgument(
                f"Unknown query parameter {name!r}: {method} accepts {accepted}the standard "
                f"parameters {', '.join(STANDARD_PARAMETERS)}.",
                field=name,
            )
        if len(params.getlist(name)) > 1:
            raise InvalidArgument(f"Query parameter {name!r} is given more than once.", field=name)
    if params.get("alt", "json") != "json":
        raise InvalidArgument(
            f"alt={params['alt']} is not supported; only alt=json is.", field="alt"
        )
    if params.get("$.xgafv", "2") not in ("1", "2"):
        raise InvalidArgument("$.xgafv must be 1 or 2.", field="$.xgafv")
    if "callback" in params:
        raise InvalidArgument("JSONP (callback) is not supported.", field="callback")
    fields = params.get("fields")
    return Query(
        values=dict(params),
        pretty=pretty_print_of(params),
        fields=FieldMask(fields) if fields else None,
    )


def query_params(method: str, *allowed: str) -> Callable[[Request], Awaitable[Query]]:
    """A route dependency: the validated :class:`Query` of ``method``."""

    async def dependency(request: Request) -> Query:
        return parse_query(request.query_params, method, allowed)

    return dependency


# -- request bodies ---------------------------------------------------------------------------


async def read_body_chunks(request: Request, max_bytes: int) -> AsyncIterator[bytes]:
    """The body's chunks; :class:`PayloadTooLarge` as soon as it exceeds ``max_bytes``."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.isdigit():
            raise InvalidArgument(f"Content-Length {declared!r} is not a number.")
        if int(declared) > max_bytes:
            if int(declared) <= MAX_DRAIN_BYTES:
                await _drain(request)
            raise _too_large(max_bytes)
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            await _drain(request, already=size)
            raise _too_large(max_bytes)
        yield chunk


async def _drain(request: Request, already: int = 0) -> None:
    async for chunk in request.stream():
        already += len(chunk)
        if already > MAX_DRAIN_BYTES:
            return


def _too_large(max_bytes: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body is larger than the {_size(max_bytes)} limit of this method."
    )


def _size(n: int) -> str:
    return f"{n / (1024 * 1024):g} MB" if n >= 1024 * 1024 else f"{n} bytes"


def json_body(
    max_bytes: int, *, required: bool = True
) -> Callable[[Request], Awaitable[dict[str, Any]]]:
    """A route dependency: the body as a JSON object (``{}`` when empty and not required)."""

    async def dependency(request: Request) -> dict[str, Any]:
        raw = b"".join([chunk async for chunk in read_body_chunks(request, max_bytes)])
        return parse_json_object(raw, request.headers.get("content-type"), required=required)

    return dependency


def parse_json_object(raw: bytes, content_type: str | None, *, required: bool) -> dict[str, Any]:
    """Decode a JSON object body; INVALID_ARGUMENT saying what is wrong with it."""
    if not raw.strip():
        if required:
            raise InvalidArgument(
                "The request body is empty; send the resource as a JSON "
                "object with Content-Type: application/json."
            )
        return {}
    media = (content_type or "").split(";")[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        raise InvalidArgument(
            f"The request body must be JSON sent with Content-Type: "
            f"application/json, not {content_type or 'no Content-Type'!r}."
        )
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise InvalidArgument(f"The request body is not valid JSON: {exc}.") from None
    if not isinstance(data, dict):
        kind = "an array" if isinstance(data, list) else f"a {type(data).__name__}"
        raise InvalidArgument(f"The request body must be a JSON object, not {kind}.")
    return data


def spooled_body(max_bytes: int) -> Callable[[Request], AsyncIterator[IO[bytes]]]:
    """A route dependency: the raw body in a temporary file (memory up to 1 MB), rewound."""

    async def dependency(request: Request) -> AsyncIterator[IO[bytes]]:
        with tempfile.SpooledTemporaryFile(max_size=_SPOOL_IN_MEMORY) as spool:
            async for chunk in read_body_chunks(request, max_bytes):
                spool.write(chunk)
            spool.seek(0)
            yield spool

    return dependency
