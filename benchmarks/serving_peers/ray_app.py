"""Ray Serve app for the census pipeline: ``python ray_app.py PORT MODEL_JOBLIB``.

``POST /predict`` with ``{"instances": [...]}`` → ``{"predictions": [...]}``. Settings from
the environment:

* ``RAY_BATCH=1``: requests go through ``@serve.batch(max_batch_size=64,
  batch_wait_timeout_s=0.005)`` (one ``predict`` on the concatenated instances);
* ``RAY_MAX_ONGOING`` (default 100): the replica's ``max_ongoing_requests``. Ray's default of
  5 collapses at 64 connections on one core (SERVING_NOTES.md §3.2).

One local cluster of its own (``address="local"``; temp dir ``RAY_BENCH_TMP``, kept short since
Ray puts its sockets there), no dashboard, token auth off (``RAY_AUTH_MODE=disabled``, set by
the harness for every Ray process). SIGTERM shuts Serve and Ray down.
"""

from __future__ import annotations

import os
import signal
import sys
import tempfile
import threading
from typing import Any

import joblib
import pandas as pd
import ray
from ray import serve
from starlette.requests import Request

BATCH = os.environ.get("RAY_BATCH") == "1"
MAX_ONGOING = int(os.environ.get("RAY_MAX_ONGOING", "100"))
BATCH_SIZE = int(os.environ.get("RAY_BATCH_SIZE", "64"))
BATCH_WAIT_S = float(os.environ.get("RAY_BATCH_WAIT_S", "0.005"))


@serve.deployment(max_ongoing_requests=MAX_ONGOING)
class Census:
    def __init__(self, path: str) -> None:
        self.model = joblib.load(path)

    async def __call__(self, request: Request) -> dict[str, Any]:
        instances = (await request.json())["instances"]
        if BATCH:
            predictions = await self.batched(instances)
        else:
            predictions = self.model.predict(pd.DataFrame(instances)).tolist()
        return {"predictions": predictions}

    @serve.batch(max_batch_size=BATCH_SIZE, batch_wait_timeout_s=BATCH_WAIT_S)
    async def batched(self, requests: list[list[dict[str, Any]]]) -> list[list[Any]]:
        flat = [instance for instances in requests for instance in instances]
        predictions = self.model.predict(pd.DataFrame(flat)).tolist()
        out, start = [], 0
        for instances in requests:
            out.append(predictions[start : start + len(instances)])
            start += len(instances)
        return out


def main(port: int, model_path: str) -> None:
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    ray.init(
        address="local",
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=200 * 1024 * 1024,
        _temp_dir=os.environ.get("RAY_BENCH_TMP") or tempfile.mkdtemp(prefix="raybench-"),
        log_to_driver=False,
    )
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    serve.run(Census.bind(model_path), route_prefix="/predict", name="census")
    print("ray serve ready", flush=True)
    while not stop.wait(1.0):
        pass
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]), sys.argv[2])
