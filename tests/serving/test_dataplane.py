"""The data plane's request handling and micro-batching, through its ASGI interface.

The models here are small Python predictors written for the tests (the framework loaders
have their own tests); the registry is an in-test VersionSource. Everything else — the ASGI
app, the batcher and its model thread — is the real code.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from mlengine.domain.errors import FailedPrecondition, NotFound
from mlengine.serving.batching import BatchSettings, MicroBatcher, PredictionError
from mlengine.serving.dataplane import PredictionApp
from mlengine.serving.versions import CachedVersionSource, DeployedVersion

URL = "/v1/projects/p/models/m:predict"


class Doubler:
    """Predicts 2x; raises on the instance "boom"; records every batch it saw."""

    framework = "CUSTOM"

    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay
        self.batches: list[int] = []
        self.kwargs: list[dict[str, Any]] = []
        self.seen: list[tuple[list[Any], dict[str, Any]]] = []

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        self.batches.append(len(instances))
        self.kwargs.append(kwargs)
        self.seen.append((list(instances), kwargs))
        if "boom" in instances:
            raise ValueError("cannot double 'boom'")
        time.sleep(self.delay)
        return [x * 2 for x in instances]

    def probe_instances(self) -> list[Any] | None:
        return [1]


class Registry:
    def __init__(self) -> None:
        self.versions: dict[tuple[str, str | None], DeployedVersion | Exception] = {
            ("m", None): DeployedVersion("projects/p/models/m/versions/v1", Path("/nowhere"))
        }
        self.calls = 0

    def resolve(self, project: str, model: str, version: str | None) -> DeployedVersion:
        self.calls += 1
        answer = self.versions.get((model, version))
        if answer is None:
            raise NotFound(f"Model {model} not found.", field="name")
        if isinstance(answer, Exception):
            raise answer
        return answer


def make_app(predictor: Any = None, **kwargs: Any) -> tuple[PredictionApp, Registry, list[int]]:
    registry = Registry()
    loads: list[int] = []
    model = predictor or Doubler()

    def loader(version: DeployedVersion) -> Any:
        loads.append(1)
        time.sleep(0.05)
        return model

    return PredictionApp(registry, loader, **kwargs), registry, loads


async def post(app: PredictionApp, body: Any, url: str = URL, **headers: str) -> httpx.Response:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        if isinstance(body, bytes):
            return await client.post(url, content=body, headers=headers)
        return await client.post(url, json=body, headers=headers)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_predictions_come_back_in_order_and_extra_keys_become_kwargs() -> None:
    model = Doubler()
    app, _, _ = make_app(model)
    response = run(post(app, {"instances": [1, 2, 3], "scale": 1, "signature_name": "x"}))
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"predictions": [2, 4, 6]}
    assert model.kwargs[-1] == {"scale": 1}  # signature_name is dropped
    assert model.batches[0] == 1  # the warm-up probe ran first


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"rows": [1]}', '"instances" is missing'),
        (b'{"instances": {"a": 1}}', "must be a list"),
        (b'{"instances": []}', "is empty"),
    ],
)
def test_bad_bodies_get_400_with_the_reason(body: bytes, reason: str) -> None:
    app, _, loads = make_app()
    response = run(post(app, body, **{"content-type": "application/json"}))
    assert response.status_code == 400
    assert reason in response.json()["error"]
    assert response.json()["error"].startswith("Invalid inputs: ")
    assert not loads  # nothing was loaded for a bad request


def test_a_non_json_content_type_is_refused() -> None:
    app, _, _ = make_app()
    response = run(post(app, b'{"instances": [1]}', **{"content-type": "text/plain"}))
    assert response.status_code == 400 and "Content-Type" in response.json()["error"]


def test_oversized_bodies_get_413_before_parsing() -> None:
    app, _, loads = make_app(max_body_bytes=100)
    big = b'{"instances": [' + b"1," * 100 + b"1]}"
    response = run(post(app, big, **{"content-type": "application/json"}))
    assert response.status_code == 413 and "over the limit of 100 bytes" in response.json()["error"]

    async def streamed() -> httpx.Response:  # no Content-Length: counted while reading
        async def chunks() -> Any:
            for _ in range(10):
                yield b" " * 20

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.post(
                URL, content=chunks(), headers={"content-type": "application/json"}
            )

    assert run(streamed()).status_code == 413
    assert not loads


def test_unknown_models_and_unready_versions_use_the_error_envelope() -> None:
    app, registry, _ = make_app()
    response = run(post(app, {"instances": [1]}, url="/v1/projects/p/models/nope:predict"))
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"
    registry.versions[("m", "v2")] = FailedPrecondition("Version v2 is CREATING, not READY.")
    response = run(post(app, {"instances": [1]}, url="/v1/projects/p/models/m/versions/v2:predict"))
    assert response.status_code == 400
    assert response.json()["error"]["status"] == "FAILED_PRECONDITION"
    response = run(post(app, {"instances": [1]}, url="/v1/projects/p/jobs/j:predict"))
    assert response.status_code == 404


def test_a_model_error_is_a_flat_400_and_other_requests_in_its_batch_still_succeed() -> None:
    model = Doubler(delay=0.05)
    app, _, _ = make_app(model)

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            await client.post(URL, json={"instances": [0]})  # load first
            bodies = [{"instances": [i]} for i in range(6)] + [{"instances": ["boom"]}]
            return await asyncio.gather(*(client.post(URL, json=b) for b in bodies))

    responses = run(burst())
    assert [r.json() for r in responses[:6]] == [{"predictions": [2 * i]} for i in range(6)]
    assert responses[6].status_code == 400
    assert responses[6].json() == {"error": "Prediction failed: ValueError: cannot double 'boom'"}


def test_a_failed_load_is_reported_and_not_retried_on_every_request() -> None:
    attempts: list[int] = []

    def loader(version: DeployedVersion) -> Any:
        attempts.append(1)
        raise OSError("model.onnx is truncated")

    app = PredictionApp(Registry(), loader)
    for _ in range(3):
        response = run(post(app, {"instances": [1]}))
        assert response.status_code == 400
        assert response.json()["error"] == "Failed to load model: OSError: model.onnx is truncated"
    assert len(attempts) == 1


def test_concurrent_first_requests_load_the_model_once() -> None:
    app, _, loads = make_app()

    async def burst() -> list[httpx.Response]:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await asyncio.gather(
                *(client.post(URL, json={"instances": [i]}) for i in range(8))
            )

    assert all(r.status_code == 200 for r in run(burst()))
    assert len(loads) == 1
    assert app.loaded_versions() == ["projects/p/models/m/versions/v1"]


def test_get_is_not_allowed() -> None:
    app, _, _ = make_app()

    async def get() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            return await client.get(URL)

    response = run(get())
    assert response.status_code == 405 and response.headers["allow"] == "POST"


# -- the batcher on its own ------------------------------------------------------------------


def test_concurrent_requests_share_model_calls() -> None:
    model = Doubler(delay=0.02)

    async def scenario() -> list[list[Any]]:
        batcher = MicroBatcher(lambda xs, kw: model.predict(xs, **kw), BatchSettings(16, 0.002))
        try:
            return await asyncio.gather(*(batcher.predict([i, i]) for i in range(40)))
        finally:
            batcher.close()

    results = run(scenario())
    assert results == [[2 * i, 2 * i] for i in range(40)]
    assert sum(model.batches) == 80 and len(model.batches) < 20  # batched
    assert max(model.batches) <= 16  # bounded


def test_a_request_larger_than_a_batch_runs_alone() -> None:
    model = Doubler()

    async def scenario() -> list[list[Any]]:
        batcher = MicroBatcher(lambda xs, kw: model.predict(xs, **kw), BatchSettings(4, 0.0))
        try:
            return await asyncio.gather(batcher.predict(list(range(10))), batcher.predict([1]))
        finally:
            batcher.close()

    big, small = run(scenario())
    assert big == [2 * i for i in range(10)] and small == [2]
    assert sorted(model.batches) == [1, 10]


def test_requests_with_different_kwargs_are_never_mixed() -> None:
    model = Doubler(delay=0.01)

    async def scenario() -> None:
        batcher = MicroBatcher(lambda xs, kw: model.predict(xs, **kw), BatchSettings(64, 0.002))
        try:
            await asyncio.gather(
                *(batcher.predict([i], {"k": i % 2}) for i in range(10)),
            )
        finally:
            batcher.close()

    run(scenario())
    # Each call got one kwargs dict; every instance in it must come from a request with it.
    assert model.seen and all(x % 2 == kw["k"] for xs, kw in model.seen for x in xs)
    assert sum(model.batches) == 10 and any(len(xs) > 1 for xs, _ in model.seen)


def test_a_lone_client_never_waits_for_company() -> None:
    model = Doubler()

    async def scenario() -> float:
        batcher = MicroBatcher(lambda xs, kw: model.predict(xs, **kw), BatchSettings(64, 0.2))
        try:
            started = time.perf_counter()
            for i in range(20):
                await batcher.predict([i])
            return (time.perf_counter() - started) / 20
        finally:
            batcher.close()

    assert run(scenario()) < 0.05  # far below the 0.2 s bound on waiting


def test_a_wrong_number_of_outputs_is_a_prediction_error() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(lambda xs, kw: xs[:1], BatchSettings())
        try:
            with pytest.raises(PredictionError, match="returned 1 predictions for 2 instances"):
                await batcher.predict([1, 2])
        finally:
            batcher.close()

    run(scenario())


def test_the_cached_source_remembers_answers_and_errors_for_its_ttl() -> None:
    registry = Registry()
    now = [0.0]
    cached = CachedVersionSource(registry, ttl_seconds=1.0, clock=lambda: now[0])
    for _ in range(5):
        cached.resolve("p", "m", None)
        with pytest.raises(NotFound):
            cached.resolve("p", "nope", None)
    assert registry.calls == 2
    now[0] = 1.5
    cached.resolve("p", "m", None)
    assert registry.calls == 3
    cached.invalidate()
    cached.resolve("p", "m", None)
    assert registry.calls == 4
