"""Adaptive micro-batching: concurrent prediction requests for one version share model calls.

Per-row Python overhead, not the model, is what makes Python model servers slow: a census
model answers 64 rows in about the time it takes to answer one. A :class:`MicroBatcher`
(one per loaded version and worker process) therefore queues requests and runs them
through the model together:

* **Greedy, bounded batches.** When the model is free, everything queued is taken at once,
  up to ``max_batch_rows`` instances (a request is never split; one larger than the bound
  runs alone). While a batch runs, new requests queue up and form the next batch — so under
  load batches grow by themselves and with a single client nothing waits.
* **Adaptive, bounded wait.** Only when recent batches held several requests (there *is*
  concurrency) does the batcher wait up to ``max_wait_seconds`` for more requests before
  running a batch that is not full. A lone client never pays that wait.
* **One model call at a time per version**, on a dedicated thread, so the event loop keeps
  accepting requests and the model's own thread settings (``OMP_NUM_THREADS`` …) hold.
* **Failures stay with their request.** If a batch fails, its requests are run again one by
  one, so only the request that breaks the model gets the error. Requests with extra keys
  (``**kwargs`` for custom routines) are only batched with requests with the same keys.
"""

from __future__ import annotations

import asyncio
import concurrent.futures as cf
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

PredictFn = Callable[[list[Any], dict[str, Any]], list[Any]]


class PredictionError(Exception):
    """The model failed on a request's instances (its message is shown to the caller)."""


@dataclass(frozen=True)
class BatchSettings:
    """Bounds of the micro-batches. ``max_wait_seconds`` = 0 disables waiting."""

    max_batch_rows: int = 256
    max_wait_seconds: float = 0.002

    def __post_init__(self) -> None:
        if self.max_batch_rows < 1:
            raise ValueError("max_batch_rows must be at least 1")
        if not 0 <= self.max_wait_seconds <= 1:
            raise ValueError("max_wait_seconds must be between 0 and 1")


@dataclass
class _Request:
    instances: list[Any]
    kwargs: dict[str, Any]
    future: asyncio.Future[list[Any]]
    key: tuple[tuple[str, str], ...] = field(init=False)

    def __post_init__(self) -> None:
        self.key = tuple(sorted((k, repr(v)) for k, v in self.kwargs.items()))


class MicroBatcher:
    """Batches the requests of one version (see the module docstring).

    ``predict(instances, kwargs)`` must return one output per instance; it runs on this
    batcher's own thread. Create the batcher inside the event loop that will use it.
    """

    def __init__(self, predict: PredictFn, settings: BatchSettings | None = None) -> None:
        self._predict = predict
        self._settings = settings or BatchSettings()
        self._queue: deque[_Request] = deque()
        self._wakeup = asyncio.Event()
        self._thread = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix="predict")
        self._task: asyncio.Task[None] | None = None
        self._recent_requests_per_batch = 1.0
        self.batches = 0
        self.rows = 0

    async def predict(
        self, instances: list[Any], kwargs: dict[str, Any] | None = None
    ) -> list[Any]:
        """The outputs for ``instances``; raises :class:`PredictionError` if the model fails."""
        loop = asyncio.get_running_loop()
        request = _Request(instances, dict(kwargs or {}), loop.create_future())
        self._queue.append(request)
        self._wakeup.set()
        if self._task is None or self._task.done():
            self._task = loop.create_task(self._run())
        return await request.future

    def close(self) -> None:
        """Stop the batching task and the model thread (running calls finish first)."""
        if self._task is not None:
            self._task.cancel()
        self._thread.shutdown(wait=False, cancel_futures=True)

    @property
    def mean_batch_requests(self) -> float:
        """Smoothed number of requests per recent batch (1 = no concurrency seen)."""
        return self._recent_requests_per_batch

    async def _run(self) -> None:
        while True:
            if not self._queue:
                self._wakeup.clear()
                await self._wakeup.wait()
            batch = await self._collect()
            if batch:
                await self._execute(batch)

    async def _collect(self) -> list[_Request]:
        settings = self._settings
        batch = self._take(settings.max_batch_rows)
        rows = sum(len(r.instances) for r in batch)
        if (
            settings.max_wait_seconds > 0
            and rows < settings.max_batch_rows
            and self._recent_requests_per_batch > 1.5
        ):
            loop = asyncio.get_running_loop()
            deadline = loop.time() + settings.max_wait_seconds
            while rows < settings.max_batch_rows:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                self._wakeup.clear()
                try:
                    await asyncio.wait_for(self._wakeup.wait(), remaining)
                except TimeoutError:
                    break
                more = self._take(settings.max_batch_rows - rows, key=batch[0].key)
                batch += more
                rows += sum(len(r.instances) for r in more)
        return batch

    def _take(
        self, max_rows: int, key: tuple[tuple[str, str], ...] | None = None
    ) -> list[_Request]:
        """Queued requests (oldest first) with the same kwargs, up to ``max_rows`` rows.

        Starting a batch (``key`` None), the oldest request is always taken, even when it
        alone is larger than ``max_rows``; topping a batch up, a request that does not fit
        stays queued for the next one.
        """
        starting = key is None
        taken: list[_Request] = []
        kept: list[_Request] = []
        rows = 0
        while self._queue:
            request = self._queue.popleft()
            if request.future.done():  # its client went away
                continue
            if key is None:
                key = request.key
            size = len(request.instances)
            if request.key != key:
                kept.append(request)
                continue
            if rows + size > max_rows and (taken or not starting):
                kept.append(request)
                break
            taken.append(request)
            rows += size
            if rows >= max_rows:
                break
        self._queue.extendleft(reversed(kept))
        return taken

    async def _execute(self, batch: Sequence[_Request]) -> None:
        self.batches += 1
        self.rows += sum(len(r.instances) for r in batch)
        self._recent_requests_per_batch = 0.8 * self._recent_requests_per_batch + 0.2 * len(batch)
        loop = asyncio.get_running_loop()
        instances = [x for r in batch for x in r.instances]
        try:
            outputs = await loop.run_in_executor(
                self._thread, self._call, instances, batch[0].kwargs
            )
        except PredictionError as exc:
            if len(batch) == 1:
                _settle(batch[0], exc)
                return
            for request in batch:  # find the request(s) at fault
                try:
                    _settle(
                        request,
                        await loop.run_in_executor(
                            self._thread, self._call, request.instances, request.kwargs
                        ),
                    )
                except PredictionError as single:
                    _settle(request, single)
            return
        start = 0
        for request in batch:
            end = start + len(request.instances)
            _settle(request, outputs[start:end])
            start = end

    def _call(self, instances: list[Any], kwargs: dict[str, Any]) -> list[Any]:
        try:
            outputs = self._predict(instances, kwargs)
        except PredictionError:
            raise
        except Exception as exc:  # the model's own error, reported to the caller
            raise PredictionError(f"{type(exc).__name__}: {exc}") from exc
        if not isinstance(outputs, list) or len(outputs) != len(instances):
            count = len(outputs) if isinstance(outputs, list) else type(outputs).__name__
            raise PredictionError(
                f"the model returned {count} predictions for {len(instances)} instances"
            )
        return outputs


def _settle(request: _Request, result: list[Any] | PredictionError) -> None:
    if request.future.done():
        return
    if isinstance(result, PredictionError):
        request.future.set_exception(result)
    else:
        request.future.set_result(result)
