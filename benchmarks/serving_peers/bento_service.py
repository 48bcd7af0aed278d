"""BentoML services for the census pipeline (``bentoml serve bento_service:CensusPlain``).

The JSON body's keys are the API's arguments, so the V1 body ``{"instances": [...]}`` is the
request as is; the answer is the bare list of predictions.

* ``CensusPlain``: one ``predict`` per request, 1 worker.
* ``CensusBatch``: adaptive batching (``batchable=True``): requests' ``instances`` lists are
  concatenated up to ``max_batch_size`` rows, waiting at most ``max_latency_ms``.

The model path comes from ``CENSUS_MODEL``.
"""

from __future__ import annotations

import os
from typing import Any

import bentoml
import joblib
import pandas as pd

MODEL = os.environ.get("CENSUS_MODEL", "model.joblib")
MAX_BATCH_SIZE = int(os.environ.get("BENTO_MAX_BATCH_SIZE", "256"))
MAX_LATENCY_MS = int(os.environ.get("BENTO_MAX_LATENCY_MS", "1000"))


@bentoml.service(workers=1)
class CensusPlain:
    def __init__(self) -> None:
        self.model = joblib.load(MODEL)

    @bentoml.api
    def predict(self, instances: list[dict[str, Any]]) -> list[str]:
        return self.model.predict(pd.DataFrame(instances)).tolist()


@bentoml.service(workers=1)
class CensusBatch:
    def __init__(self) -> None:
        self.model = joblib.load(MODEL)

    @bentoml.api(batchable=True, max_batch_size=MAX_BATCH_SIZE, max_latency_ms=MAX_LATENCY_MS)
    def predict(self, instances: list[dict[str, Any]]) -> list[str]:
        return self.model.predict(pd.DataFrame(instances)).tolist()
