"""Health, readiness and Prometheus metrics.

* ``GET /healthz`` — liveness: 200 while the process serves requests. Never needs a token.
* ``GET /readyz`` — readiness: 200 when the metadata store answers a query, else 503
  UNAVAILABLE with the store's reason (a load balancer stops sending traffic).
* ``GET /metrics`` — Prometheus text format, from a registry private to the app:

  ``mlengine_http_requests_total{method,route,status}``
      requests by route *template* (``/v1/projects/{project}/jobs/{job}``), so ids never
      become label values; requests that matched no route count under ``route="unmatched"``.
  ``mlengine_http_request_duration_seconds{method,route}``
      latency histogram, same labels.
  ``mlengine_jobs{state}``
      jobs of every project by state, counted by the store at scrape time (one grouped
      query, no job read); every state is present, zero where no job is in it.
  ``mlengine_models`` and ``mlengine_versions{state}``
      the model registry, counted the same way.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

from fastapi import APIRouter
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from mlengine import __version__
from mlengine.api.rendering import json_response
from mlengine.domain.errors import MlEngineError, Unavailable
from mlengine.domain.resources import JobState, VersionState
from mlengine.stores.base import MetadataStore

LOG = logging.getLogger(__name__)
UNMATCHED = "unmatched"


class JobStateCollector(Collector):
    """``mlengine_jobs{state}``, counted from the store whenever Prometheus scrapes."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            "mlengine_jobs", "Jobs of every project by state.", labels=["state"]
        )
        try:
            counts = self._store.count_jobs_by_state()
        except Exception:  # a scrape must not fail because the database is away
            LOG.warning("could not count jobs by state for /metrics", exc_info=True)
            return
        for state in JobState:
            family.add_metric([state.value], counts.get(state, 0))
        yield family


class RegistryCollector(Collector):
    """``mlengine_models`` and ``mlengine_versions{state}``, counted at scrape time."""

    def __init__(self, store: MetadataStore) -> None:
        self._store = store

    def collect(self) -> Iterator[Metric]:
        try:
            model_count = self._store.count_models()
            counts = self._store.count_versions_by_state()
        except Exception:  # a scrape must not fail because the database is away
            LOG.warning("could not count models and versions for /metrics", exc_info=True)
            return
        yield GaugeMetricFamily("mlengine_models", "Models of every project.", value=model_count)
        versions = GaugeMetricFamily(
            "mlengine_versions", "Model versions of every project by state.", labels=["state"]
        )
        for state in VersionState:
            versions.add_metric([state.value], counts.get(state, 0))
        yield versions


class ApiMetrics:
    """The app's Prometheus registry and the request instruments in it."""

    def __init__(self, store: MetadataStore) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "mlengine_http_requests",
            "HTTP requests by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "mlengine_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["method", "route"],
            registry=self.registry,
        )
        self.registry.register(JobStateCollector(store))
        self.registry.register(RegistryCollector(store))

    def observe(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestMetricsMiddleware:
    """Counts and times every HTTP request; the outermost layer, so 401s and 500s count."""

    def __init__(self, app: ASGIApp, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def recording_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, recording_send)
        finally:
            route = scope.get("route")
            template = getattr(route, "path_format", None) or UNMATCHED
            self.metrics.observe(scope["method"], template, status, time.perf_counter() - started)


def health_router(store: MetadataStore, metrics: ApiMetrics) -> APIRouter:
    """``/healthz``, ``/readyz`` and ``/metrics``."""
    router = APIRouter()

    @router.get("/healthz")
    async def healthz() -> Response:
        return json_response({"status": "ok", "version": __version__}, pretty=False)

    @router.get("/readyz")
    def readyz() -> Response:
        check_store(store)
        return json_response({"status": "ready"}, pretty=False)

    @router.get("/metrics")
    def prometheus() -> Response:
        return Response(metrics.exposition(), media_type=CONTENT_TYPE_LATEST)

    return router


def check_store(store: MetadataStore) -> None:
    """Raise :class:`Unavailable` unless the store answers a small query."""
    try:
        store.jobs_in_states([JobState.PREPARING])
    except MlEngineError as exc:
        raise Unavailable(f"Not ready: the metadata store does not answer: {exc.message}") from None
    except Exception as exc:
        LOG.warning("readiness check failed", exc_info=True)
        raise Unavailable(
            f"Not ready: the metadata store does not answer ({type(exc).__name__})."
        ) from None
