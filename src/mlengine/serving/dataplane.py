"""The online-prediction data plane: ``POST /v1/projects/P/models/M[/versions/V]:predict``.

A plain ASGI application, used inside the server (``api/app.py`` hands it every ``:predict``
call, after authentication) and on its own by ``mlengine serve``. The hot path does no
per-instance validation and no pydantic: the body is checked for size before it is read,
parsed once with orjson, the target resolved through a short-lived cache of the registry
(:class:`~mlengine.serving.versions.CachedVersionSource`), the instances handed to the
version's :class:`~mlengine.serving.batching.MicroBatcher`, and the outputs serialised once.

Request rules (spec §3):

* the body is a JSON object with an ``instances`` list (non-empty); other top-level keys go to
  the model as keyword arguments (``signature_name`` only for TensorFlow SavedModels; the
  other frameworks have no signatures);
* ``Content-Type`` must be JSON; a body over ``max_body_bytes`` (default 1.5 MB) gets 413 before
  it is read;
* answers: 200 ``{"predictions": [...]}``, one per instance, in order; a model failure is 400
  ``{"error": "Prediction failed: …"}``; a bad body 400 ``{"error": "Invalid inputs: …"}``; a
  model that cannot be loaded 400 ``{"error": "Failed to load model: …"}``; unknown model or
  version 404 and a version that is not READY 400 FAILED_PRECONDITION in the Google error
  envelope. Never a 500 for anything a request can cause.

Predictors are loaded on first use (on a thread, once even under concurrent first requests),
warmed up with their probe instances, and kept per ``(version, revision)``; a predictor no
longer resolved to is dropped after a while (its batcher finishes what it has).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
import time
from collections.abc import Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import orjson

from mlengine.domain.errors import MlEngineError, NotFound
from mlengine.serving.batching import BatchSettings, MicroBatcher, PredictionError
from mlengine.serving.versions import DeployedVersion, VersionSource

LOG = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

#: The v1 payload limit of a predict request.
DEFAULT_MAX_BODY_BYTES = 1_572_864
#: A predictor that no request resolved to for this long is unloaded.
IDLE_UNLOAD_SECONDS = 300.0
#: A version that failed to load is not tried again for this long (each request would).
LOAD_FAILURE_SECONDS = 5.0
#: Top-level keys never passed to a model (``signature_name`` only reaches TensorFlow).
_DROPPED_KEYS = frozenset({"instances"})

PREDICT_PATH = re.compile(
    r"^/v1/projects/(?P<project>[^/:]+)/models/(?P<model>[^/:]+)"
    r"(?:/versions/(?P<version>[^/:]+))?:predict$"
)


class Predictor(Protocol):
    """What the data plane calls (``mlengine.serving.predictor`` builds them)."""

    framework: str

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]: ...

    def probe_instances(self) -> list[Any] | None: ...


Loader = Callable[[DeployedVersion], Predictor]


def default_loader(threads: int = 1) -> Loader:
    """Loads the compiled ONNX form when the deployer made one (``serving/compiled/``),
    else with :func:`mlengine.serving.predictor.load_predictor` (imported on first use)."""

    def load(version: DeployedVersion) -> Predictor:
        # By name: the framework loaders (and numpy, pandas …) load on first use only.
        compiled_dir = version.extra.get("compiled_dir")
        if compiled_dir and version.framework:
            load_compiled = importlib.import_module("mlengine.serving.compiled").load_compiled
            try:
                fast: Predictor = load_compiled(
                    version.model_dir,
                    Path(compiled_dir),
                    framework=version.framework,
                    threads=threads,
                )
                return fast
            except MlEngineError as exc:  # stale or foreign file: serve the original
                LOG.warning("not using the compiled %s: %s", version.name, exc.message)
        load_predictor = importlib.import_module("mlengine.serving.predictor").load_predictor
        loaded: Predictor = load_predictor(
            version.model_dir,
            framework=version.framework,
            prediction_class=version.prediction_class,
            package_paths=version.package_paths,
            allow_pickle=version.allow_pickle,
            threads=threads,
        )
        return loaded

    return load


@dataclass
class _Loaded:
    version: DeployedVersion
    predictor: Predictor
    batcher: MicroBatcher
    last_used: float


class _BadRequest(Exception):
    """A request the data plane refuses: (status, flat error message)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PredictionApp:
    """The ASGI app of the data plane (see the module docstring)."""

    def __init__(
        self,
        source: VersionSource,
        loader: Loader,
        *,
        batch: BatchSettings | None = None,
        max_body_bytes: int = DEFAULT_MAX_BODY_BYTES,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._loader = loader
        self._batch = batch or BatchSettings()
        self._max_body = max_body_bytes
        self._clock = clock
        self._loaded: dict[tuple[str, str], _Loaded] = {}
        self._loading: dict[tuple[str, str], asyncio.Future[_Loaded]] = {}
        self._failed: dict[tuple[str, str], tuple[float, _BadRequest]] = {}
        self._last_sweep = clock()

    # -- ASGI -----------------------------------------------------------------------------

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        match = PREDICT_PATH.match(scope["path"])
        if match is None:
            missing = NotFound(
                f"No prediction method at {scope['path']}; use POST "
                "/v1/projects/P/models/M:predict or …/models/M/versions/V:predict."
            )
            await _envelope(send, missing)
            return
        if scope["method"] != "POST":
            await _json(send, 405, {"error": "Use POST for :predict."}, allow="POST")
            return
        try:
            status, body = await self._predict(scope, receive, match)
        except _BadRequest as exc:
            await _json(send, exc.status, {"error": str(exc)})
            return
        except MlEngineError as exc:
            await _envelope(send, exc)
            return
        await _send(send, status, body)

    async def _predict(
        self, scope: Scope, receive: Receive, match: re.Match[str]
    ) -> tuple[int, bytes]:
        _check_content_type(scope)
        raw = await self._read_body(scope, receive)
        instances, kwargs = _parse(raw)
        version = match.group("version")
        deployed = self._source.resolve(match.group("project"), match.group("model"), version)
        if deployed.framework != "TENSORFLOW":
            kwargs.pop("signature_name", None)  # only SavedModels have signatures
        loaded = await self._get(deployed)
        try:
            outputs = await loaded.batcher.predict(instances, kwargs)
        except PredictionError as exc:
            raise _BadRequest(400, f"Prediction failed: {exc}") from None
        loaded.last_used = self._clock()
        self._sweep()
        try:
            return 200, orjson.dumps({"predictions": outputs}, option=orjson.OPT_SERIALIZE_NUMPY)
        except TypeError as exc:
            message = f"There was a problem processing the outputs: {exc}"
            raise _BadRequest(400, message) from None

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes:
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_body:
            raise _too_large(int(declared), self._max_body)
        chunks: list[bytes] = []
        size = 0
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _BadRequest(400, "Invalid inputs: the client closed the connection.")
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self._max_body:
                raise _too_large(size, self._max_body)
            chunks.append(chunk)
            more = bool(message.get("more_body", False))
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    # -- predictors -------------------------------------------------------------------------

    async def _get(self, version: DeployedVersion) -> _Loaded:
        key = (version.name, version.revision)
        loaded = self._loaded.get(key)
        if loaded is not None:
            return loaded
        failed = self._failed.get(key)
        if failed is not None and self._clock() - failed[0] < LOAD_FAILURE_SECONDS:
            raise failed[1]
        pending = self._loading.get(key)
        if pending is None:
            loop = asyncio.get_running_loop()
            pending = loop.create_future()
            self._loading[key] = pending
            try:
                predictor = await loop.run_in_executor(None, self._load_and_warm, version)
            except _BadRequest as exc:
                self._failed[key] = (self._clock(), exc)
                pending.set_exception(exc)
                pending.exception()  # retrieved: no "never retrieved" warning without waiters
                del self._loading[key]
                raise
            loaded = _Loaded(version, predictor, self._batcher(predictor), self._clock())
            self._loaded[key] = loaded
            del self._loading[key]
            pending.set_result(loaded)
            return loaded
        return await asyncio.shield(pending)

    def _load_and_warm(self, version: DeployedVersion) -> Predictor:
        started = time.perf_counter()
        try:
            predictor = self._loader(version)
        except MlEngineError as exc:
            raise _BadRequest(400, f"Failed to load model: {exc.message}") from None
        except Exception as exc:
            raise _BadRequest(400, f"Failed to load model: {type(exc).__name__}: {exc}") from None
        try:
            probe = predictor.probe_instances()
            if probe:
                predictor.predict(list(probe))
        except Exception as exc:  # the deployer checked it; log, and let requests tell
            LOG.warning("warm-up of %s failed: %s", version.name, exc)
        LOG.info(
            "loaded %s (%s) in %.0f ms",
            version.name,
            predictor.framework,
            (time.perf_counter() - started) * 1000,
        )
        return predictor

    def _batcher(self, predictor: Predictor) -> MicroBatcher:
        def call(instances: list[Any], kwargs: dict[str, Any]) -> list[Any]:
            return predictor.predict(instances, **kwargs)

        return MicroBatcher(call, self._batch)

    def _sweep(self) -> None:
        now = self._clock()
        if now - self._last_sweep < 10.0:
            return
        self._last_sweep = now
        for key, loaded in list(self._loaded.items()):
            if now - loaded.last_used > IDLE_UNLOAD_SECONDS:
                loaded.batcher.close()
                del self._loaded[key]

    def loaded_versions(self) -> list[str]:
        """Names of the versions loaded in this process (for tests and /metrics)."""
        return sorted(name for name, _ in self._loaded)

    def close(self) -> None:
        for loaded in self._loaded.values():
            loaded.batcher.close()
        self._loaded.clear()


# -- request parsing ----------------------------------------------------------------------


def _parse(raw: bytes) -> tuple[list[Any], dict[str, Any]]:
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise _BadRequest(400, f"Invalid inputs: the body is not valid JSON ({exc}).") from None
    if not isinstance(body, dict):
        raise _BadRequest(
            400, 'Invalid inputs: the body must be a JSON object: {"instances": [...]}.'
        )
    instances = body.get("instances")
    if instances is None:
        raise _BadRequest(
            400, 'Invalid inputs: "instances" is missing; send {"instances": [<instance>, ...]}.'
        )
    if not isinstance(instances, list):
        raise _BadRequest(
            400,
            f'Invalid inputs: "instances" must be a list, not {type(instances).__name__}.',
        )
    if not instances:
        raise _BadRequest(400, 'Invalid inputs: "instances" is empty; send at least one.')
    kwargs = {k: v for k, v in body.items() if k not in _DROPPED_KEYS}
    return instances, kwargs


def _check_content_type(scope: Scope) -> None:
    value = _header(scope, b"content-type") or ""
    media = value.split(";", 1)[0].strip().lower()
    if media != "application/json" and not media.endswith("+json"):
        shown = value or "none"
        raise _BadRequest(
            400,
            f"Invalid inputs: Content-Type must be application/json (got {shown}).",
        )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return bytes(value).decode("latin-1")
    return None


def _too_large(size: int, limit: int) -> _BadRequest:
    return _BadRequest(
        413,
        f"Invalid inputs: the request is {size} bytes, over the limit of {limit} bytes; send "
        "fewer instances per request.",
    )


# -- responses ------------------------------------------------------------------------------


async def _send(send: Send, status: int, body: bytes, **extra: str) -> None:
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]
    headers += [(k.encode(), v.encode()) for k, v in extra.items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _json(send: Send, status: int, document: dict[str, Any], **extra: str) -> None:
    await _send(send, status, orjson.dumps(document), **extra)


async def _envelope(send: Send, exc: MlEngineError) -> None:
    await _json(send, exc.http_status, exc.envelope())
