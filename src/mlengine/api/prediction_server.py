"""``mlengine serve``: the prediction data plane as a process of its own.

A stateless process that answers ``POST /v1/projects/P/models/M[/versions/V]:predict`` from
the registry of an mlengine installation (the same ``MLENGINE_DATABASE_URL`` and
``MLENGINE_ARTIFACT_ROOT`` as the server, read only) — start as many as needed behind a load
balancer. Each worker process loads the versions it is asked for, follows default-version
changes within ``cache_seconds``, and batches concurrent requests per version.

Besides ``:predict`` it answers ``GET /healthz`` (the process is up) and ``GET /readyz`` (the
registry can be read). Bearer-token auth applies exactly as on the server.

uvicorn starts the workers and builds each one's app with :func:`create_prediction_app`
(``factory=True``); the command line's options reach the workers through ``MLENGINE_SERVE_*``
environment variables (:class:`ServeOptions`).
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass

import orjson

from mlengine.api.auth import BearerAuthMiddleware, BearerTokens
from mlengine.artifacts.store import ArtifactStore
from mlengine.config import Settings
from mlengine.serving.batching import BatchSettings
from mlengine.serving.dataplane import (
    DEFAULT_MAX_BODY_BYTES,
    PredictionApp,
    Receive,
    Scope,
    Send,
    default_loader,
)
from mlengine.serving.registry_source import StoreVersionSource
from mlengine.serving.versions import CachedVersionSource
from mlengine.stores.sql import SqlMetadataStore

ENV_PREFIX = "MLENGINE_SERVE_"


@dataclass(frozen=True)
class ServeOptions:
    """Data-plane settings (flags of ``mlengine serve``; ``MLENGINE_SERVE_*`` variables)."""

    threads: int = 1
    max_batch_rows: int = 256
    max_batch_wait_ms: float = 2.0
    cache_seconds: float = 1.0
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    refuse_pickle: bool = False

    def to_env(self) -> dict[str, str]:
        return {
            f"{ENV_PREFIX}THREADS": str(self.threads),
            f"{ENV_PREFIX}MAX_BATCH_ROWS": str(self.max_batch_rows),
            f"{ENV_PREFIX}MAX_BATCH_WAIT_MS": str(self.max_batch_wait_ms),
            f"{ENV_PREFIX}CACHE_SECONDS": str(self.cache_seconds),
            f"{ENV_PREFIX}MAX_BODY_BYTES": str(self.max_body_bytes),
            f"{ENV_PREFIX}REFUSE_PICKLE": "true" if self.refuse_pickle else "false",
        }

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> ServeOptions:
        env = os.environ if env is None else env
        default = cls()

        def get(name: str, fallback: object) -> str:
            return env.get(f"{ENV_PREFIX}{name}", str(fallback))

        return cls(
            threads=int(get("THREADS", default.threads)),
            max_batch_rows=int(get("MAX_BATCH_ROWS", default.max_batch_rows)),
            max_batch_wait_ms=float(get("MAX_BATCH_WAIT_MS", default.max_batch_wait_ms)),
            cache_seconds=float(get("CACHE_SECONDS", default.cache_seconds)),
            max_body_bytes=int(get("MAX_BODY_BYTES", default.max_body_bytes)),
            refuse_pickle=get("REFUSE_PICKLE", "false").lower() in ("1", "true", "yes"),
        )

    def batch_settings(self) -> BatchSettings:
        return BatchSettings(self.max_batch_rows, self.max_batch_wait_ms / 1000.0)


class _PredictionService:
    """Routes ``/healthz`` and ``/readyz``; everything else goes to the data plane."""

    def __init__(self, plane: PredictionApp, store: SqlMetadataStore) -> None:
        self._plane = plane
        self._store = store

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path = scope["path"]
        if path == "/healthz":
            await _plain(send, 200, {"status": "ok"})
        elif path == "/readyz":
            try:
                self._store.count_jobs_by_state()
            except Exception as exc:  # the registry cannot be read: not ready
                await _plain(send, 503, {"status": "unavailable", "reason": str(exc)})
                return
            await _plain(send, 200, {"status": "ready"})
        else:
            await self._plane(scope, receive, send)


def create_prediction_app(
    settings: Settings | None = None, options: ServeOptions | None = None
) -> BearerAuthMiddleware:
    """The app of one ``mlengine serve`` worker (see the module docstring)."""
    settings = settings or Settings.from_env()
    options = options or ServeOptions.from_env()
    store = SqlMetadataStore(settings.database_url)
    artifacts = ArtifactStore(settings.artifact_root)
    source = CachedVersionSource(
        StoreVersionSource(store, artifacts, allow_pickle=not options.refuse_pickle),
        ttl_seconds=options.cache_seconds,
    )
    plane = PredictionApp(
        source,
        default_loader(options.threads),
        batch=options.batch_settings(),
        max_body_bytes=options.max_body_bytes,
    )
    return BearerAuthMiddleware(
        _PredictionService(plane, store), tokens=BearerTokens.from_settings(settings)
    )


async def _plain(send: Send, status: int, document: dict[str, str]) -> None:
    body = orjson.dumps(document)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


def main(argv: list[str] | None = None) -> int:
    """``python -m mlengine.api.prediction_server``: what ``mlengine serve`` runs."""
    import uvicorn

    from mlengine.api.auth import check_bind_address
    from mlengine.domain.errors import MlEngineError

    parser = argparse.ArgumentParser(prog="mlengine serve")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8580)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--max-batch-rows", type=int, default=256)
    parser.add_argument("--max-batch-wait-ms", type=float, default=2.0)
    parser.add_argument("--cache-seconds", type=float, default=1.0)
    parser.add_argument("--refuse-pickle", action="store_true")
    parser.add_argument("--insecure", action="store_true")
    args = parser.parse_args(argv)
    try:
        settings = Settings.from_env()
        check_bind_address(
            args.host, tokens=BearerTokens.from_settings(settings), insecure=args.insecure
        )
        options = ServeOptions(
            threads=args.threads,
            max_batch_rows=args.max_batch_rows,
            max_batch_wait_ms=args.max_batch_wait_ms,
            cache_seconds=args.cache_seconds,
            refuse_pickle=args.refuse_pickle,
        )
        options.batch_settings()  # bounds checked here, not in every worker
    except MlEngineError as exc:
        print(f"ERROR: ({exc.code.value}) {exc.message}", file=sys.stderr)
        return exc.exit_code
    except ValueError as exc:
        print(f"ERROR: {exc}", file=sys.stderr)
        return 2
    os.environ.update(options.to_env())
    for variable in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(variable, str(args.threads))
    print(
        f"Serving predictions from {settings.home} at http://{args.host}:{args.port} "
        f"({args.workers} worker(s)); Ctrl-C stops.",
        file=sys.stderr,
        flush=True,
    )
    uvicorn.run(
        "mlengine.api.prediction_server:create_prediction_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_level="warning",
        access_log=False,
        lifespan="on",
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
