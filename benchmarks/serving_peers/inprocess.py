"""The compute ceiling: the census model called in this process, no HTTP.

    taskset -c 0 python inprocess.py {sklearn|onnx} MODEL_DIR BODY_1 BODY_64 SECONDS

Prints one JSON object: per case and body size, calls and rows per CPU-second
(``time.process_time``, so other tenants of the core do not count) and wall-clock p50/p99 per
call, plus ``expected``: the raw case's predictions for the 64-row body (what every server
must answer; with SECONDS 0 nothing else). Cases:

* ``raw``: ``orjson.loads(body)`` → model input → the model → ``orjson.dumps`` of
  ``{"predictions": [...]}``. sklearn: ``pandas.DataFrame(instances)`` → ``predict``; ONNX:
  one numpy array per named input (absent → ``""`` / NaN) → ``InferenceSession.run`` (1 thread)
  → ``{"probabilities", "classes"}`` per row.
* ``mlengine``: the same through ``mlengine.serving.predictor.load_predictor`` (the predictor
  the server uses), when this checkout has it.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import orjson


def sklearn_raw(model_dir: Path) -> Callable[[bytes], bytes]:
    import joblib
    import pandas as pd

    model = joblib.load(model_dir / "model.joblib")

    def call(body: bytes) -> bytes:
        instances = orjson.loads(body)["instances"]
        out = model.predict(pd.DataFrame(instances))
        return orjson.dumps({"predictions": out.tolist()})

    return call


def onnx_raw(model_dir: Path) -> Callable[[bytes], bytes]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(
        str(model_dir / "model.onnx"), options, providers=["CPUExecutionProvider"]
    )
    inputs = [(i.name, i.type == "tensor(string)") for i in session.get_inputs()]

    def call(body: bytes) -> bytes:
        instances = orjson.loads(body)["instances"]
        feeds = {}
        for name, is_text in inputs:
            if is_text:
                values = [str(x.get(name) or "") for x in instances]
                feeds[name] = np.array(values, dtype=object)
            else:
                numbers = [x.get(name) for x in instances]
                feeds[name] = np.array(
                    [math.nan if v is None else float(v) for v in numbers], dtype=np.float32
                )
        probabilities, classes = session.run(["probabilities", "classes"], feeds)
        rows = [
            {"probabilities": p, "classes": c}
            for p, c in zip(probabilities.tolist(), classes.tolist(), strict=True)
        ]
        return orjson.dumps({"predictions": rows})

    return call


def mlengine_case(model_dir: Path) -> Callable[[bytes], bytes]:
    from mlengine.serving.predictor import load_predictor

    predictor = load_predictor(model_dir, threads=1)

    def call(body: bytes) -> bytes:
        instances = orjson.loads(body)["instances"]
        out = predictor.predict(instances)
        return orjson.dumps({"predictions": out}, option=orjson.OPT_SERIALIZE_NUMPY)

    return call


def measure(call: Callable[[bytes], bytes], body: bytes, rows: int, seconds: float) -> dict:
    for _ in range(5):  # warm-up
        call(body)
    walls: list[float] = []
    cpu0 = time.process_time()
    while time.process_time() - cpu0 < seconds:
        started = time.perf_counter()
        call(body)
        walls.append(time.perf_counter() - started)
    cpu = time.process_time() - cpu0
    walls.sort()
    return {
        "rows_per_call": rows,
        "calls": len(walls),
        "cpu_seconds": round(cpu, 3),
        "calls_per_cpu_s": round(len(walls) / cpu, 1),
        "rows_per_cpu_s": round(len(walls) * rows / cpu, 1),
        "wall_p50_ms": round(statistics.median(walls) * 1000, 3),
        "wall_p99_ms": round(walls[min(len(walls) - 1, int(len(walls) * 0.99))] * 1000, 3),
    }


def main(kind: str, model_dir: str, body1: str, body64: str, seconds: str) -> None:
    folder = Path(model_dir)
    bodies = {1: Path(body1).read_bytes(), 64: Path(body64).read_bytes()}
    raw = (sklearn_raw if kind == "sklearn" else onnx_raw)(folder)
    result: dict[str, Any] = {
        "expected": orjson.loads(raw(bodies[64]))["predictions"],
        "cases": {},
    }
    if float(seconds) <= 0:  # only the expected predictions
        print(json.dumps(result))
        return
    cases: dict[str, Callable[[bytes], bytes]] = {"raw": raw}
    try:
        cases["mlengine"] = mlengine_case(folder)
    except Exception as exc:  # not in this checkout, or it refuses the model
        result["mlengine_error"] = f"{type(exc).__name__}: {exc}"
    for name, call in cases.items():
        result["cases"][name] = {
            str(rows): measure(call, body, rows, float(seconds)) for rows, body in bodies.items()
        }
    print(json.dumps(result))


if __name__ == "__main__":
    main(*sys.argv[1:6])
