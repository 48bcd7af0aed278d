"""Online prediction over real HTTP against a real server: deploy, predict, fail, switch.

Every model here is trained by the test itself (the census pipeline by the example trainer
on a slice of the UCI data) and deployed through the REST API; the server validates it in a
subprocess, compiles it to ONNX where that is verified safe, and serves it from its data
plane. Predictions are compared with the same model called in-process.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import google.auth.credentials
import httpx
import joblib
import numpy as np
import pandas as pd
import pytest
from googleapiclient import discovery
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

from tests.api.conftest import ServerProcess, wait_for_operation
from tests.examples.census_files import (
    ADULT_DATA,
    ADULT_TEST,
    INSTANCES,
    requires_census,
    start_trainer,
    trainer_env,
    write_slice,
)
from tests.registry import predictor_available

pytestmark = pytest.mark.skipif(not predictor_available(), reason="no predictor module")


def create_model(api: httpx.Client, project: str, name: str) -> None:
    response = api.post(f"/v1/projects/{project}/models", json={"name": name})
    assert response.status_code == 200, response.text


def deploy(api: httpx.Client, project: str, model: str, version: str, origin: Path) -> dict:
    body = {"name": version, "deploymentUri": str(origin)}
    response = api.post(f"/v1/projects/{project}/models/{model}/versions", json=body)
    assert response.status_code == 200, response.text
    done = wait_for_operation(api, response.json()["name"])
    assert "error" not in done, done
    return done


def predict(api: httpx.Client, target: str, instances: list[Any], **extra: Any) -> httpx.Response:
    return api.post(f"/v1/{target}:predict", json={"instances": instances, **extra})


@pytest.fixture(scope="module")
def census_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The census scikit-learn pipeline, trained by the example trainer on 3,000 rows."""
    if not (ADULT_DATA.exists() and ADULT_TEST.exists() and INSTANCES.exists()):
        pytest.skip("the shared census data is not present")
    folder = tmp_path_factory.mktemp("census-sklearn")
    train = write_slice(ADULT_DATA, folder / "train.csv", 3000)
    test = write_slice(ADULT_TEST, folder / "test.csv", 500)
    args = ["--train-files", str(train), "--eval-files", str(test)]
    args += ["--job-dir", str(folder / "job"), "--max-iter=30"]
    trainer = start_trainer("sklearn", args, trainer_env(folder / "metrics"))
    output, _ = trainer.communicate(timeout=300)
    assert trainer.returncode == 0, output
    return folder / "job" / "model"


@pytest.fixture(scope="module")
def compilable_model(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame]:
    """A DataFrame pipeline that converts to ONNX: one-hot + scaler + logistic regression."""
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(
        {
            "color": rng.choice(["red", "green", "blue"], 400),
            "size": rng.normal(10, 3, 400),
            "weight": rng.normal(50, 10, 400),
        }
    )
    labels = np.where((frame["color"] == "red") | (frame["size"] > 11), "yes", "no")
    pipeline = Pipeline(
        [
            (
                "features",
                ColumnTransformer(
                    [
                        ("onehot", OneHotEncoder(handle_unknown="ignore"), ["color"]),
                        ("scale", StandardScaler(), ["size", "weight"]),
                    ]
                ),
            ),
            ("classifier", LogisticRegression()),
        ]
    ).fit(frame, labels)
    folder = tmp_path_factory.mktemp("compilable")
    joblib.dump(pipeline, folder / "model.joblib")
    return folder, frame.head(20)


def constant_model(folder: Path, label: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model = DummyClassifier(strategy="constant", constant=label)
    model.fit(np.zeros((4, 2)), [label, label, "other", "other"])
    joblib.dump(model, folder / "model.joblib")
    return folder


@requires_census
def test_census_instances_get_sensible_predictions(
    api: httpx.Client, project: str, census_model: Path
) -> None:
    create_model(api, project, "census")
    deploy(api, project, "census", "v1", census_model)
    instances = [json.loads(line) for line in INSTANCES.read_text().splitlines() if line.strip()]
    response = predict(api, f"projects/{project}/models/census", instances)
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    pipeline = joblib.load(census_model / "model.joblib")
    expected = pipeline.predict(pd.DataFrame(instances)).tolist()
    assert predictions == expected and len(predictions) == 2
    by_version = predict(api, f"projects/{project}/models/census/versions/v1", instances)
    assert by_version.json() == response.json()
    probabilities = predict(
        api, f"projects/{project}/models/census", instances, probabilities=True
    ).json()["predictions"]
    assert all(abs(sum(p) - 1) < 1e-6 for p in probabilities)


def test_a_compilable_pipeline_is_served_compiled_with_identical_answers(
    api: httpx.Client, project: str, server: ServerProcess, compilable_model: tuple[Path, Any]
) -> None:
    folder, frame = compilable_model
    create_model(api, project, "fast")
    deploy(api, project, "fast", "v1", folder)
    compiled = list((server.home / "artifacts" / "compiled").glob("*/model.onnx"))
    assert compiled, "the deployer did not compile a convertible pipeline"
    instances = frame.to_dict(orient="records")
    response = predict(api, f"projects/{project}/models/fast", instances)
    assert response.status_code == 200, response.text
    pipeline = joblib.load(folder / "model.joblib")
    assert response.json()["predictions"] == pipeline.predict(frame).tolist()


def test_the_official_client_predicts(
    server: ServerProcess, api: httpx.Client, project: str, tmp_path: Path
) -> None:
    create_model(api, project, "const")
    deploy(api, project, "const", "v1", constant_model(tmp_path / "v1", "alpha"))
    ml = discovery.build(
        "ml",
        "v1",
        client_options={"api_endpoint": server.url},
        credentials=google.auth.credentials.AnonymousCredentials(),
        static_discovery=True,
        cache_discovery=False,
    )
    name = f"projects/{project}/models/const"
    answer = ml.projects().predict(name=name, body={"instances": [[1, 2], [3, 4]]}).execute()
    assert answer == {"predictions": ["alpha", "alpha"]}


def test_bad_requests_get_clear_errors_and_never_a_500(
    api: httpx.Client, project: str, tmp_path: Path
) -> None:
    create_model(api, project, "strict")
    deploy(api, project, "strict", "v1", constant_model(tmp_path / "v1", "alpha"))
    url = f"/v1/projects/{project}/models/strict:predict"
    cases = [
        (b"{oops", "application/json", 400, "not valid JSON"),
        (b'{"rows": []}', "application/json", 400, '"instances" is missing'),
        (b'{"instances": 3}', "application/json", 400, "must be a list"),
        (b'{"instances": [[1, 2]]}', "text/plain", 400, "Content-Type"),
        (b'{"instances": [' + b"[1, 2]," * 300_000 + b"[1, 2]]}", "application/json", 413, ""),
    ]
    for body, content_type, status, reason in cases:
        response = api.post(url, content=body, headers={"content-type": content_type})
        assert response.status_code == status, response.text[:300]
        assert reason in response.json()["error"]
    response = predict(api, f"projects/{project}/models/strict", [["a", "b", "c", "d"]])
    assert response.status_code == 400 and response.json()["error"].startswith("Prediction failed")
    missing = predict(api, f"projects/{project}/models/nope", [[1]])
    assert missing.status_code == 404 and missing.json()["error"]["status"] == "NOT_FOUND"
    no_version = predict(api, f"projects/{project}/models/strict/versions/v9", [[1]])
    assert no_version.status_code == 404
    create_model(api, project, "empty")
    empty = predict(api, f"projects/{project}/models/empty", [[1]])
    assert empty.status_code == 400 and empty.json()["error"]["status"] == "FAILED_PRECONDITION"


def test_switching_versions_under_load_fails_no_request_and_mixes_none(
    api: httpx.Client, project: str, server: ServerProcess, tmp_path: Path
) -> None:
    create_model(api, project, "switch")
    deploy(api, project, "switch", "v1", constant_model(tmp_path / "v1", "one"))
    stop = threading.Event()
    seen: Counter[str] = Counter()
    failures: list[str] = []

    def load() -> None:
        with httpx.Client(base_url=server.url, timeout=30) as client:
            while not stop.is_set():
                response = predict(client, f"projects/{project}/models/switch", [[0, 0]] * 8)
                if response.status_code != 200:
                    failures.append(f"{response.status_code} {response.text[:200]}")
                    continue
                labels = set(response.json()["predictions"])
                if len(labels) != 1:
                    failures.append(f"mixed versions in one response: {labels}")
                seen[labels.pop()] += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for thread in threads:
        thread.start()
    try:
        time.sleep(0.5)
        deploy(api, project, "switch", "v2", constant_model(tmp_path / "v2", "two"))
        time.sleep(0.5)
        response = api.post(f"/v1/projects/{project}/models/switch/versions/v2:setDefault", json={})
        assert response.status_code == 200, response.text
        time.sleep(1.5)  # the data plane follows within its cache time
        response = api.delete(f"/v1/projects/{project}/models/switch/versions/v1")
        assert response.status_code == 200, response.text
        wait_for_operation(api, response.json()["name"])
        seen_before = seen["two"]
        time.sleep(1.0)
    finally:
        stop.set()
        for thread in threads:
            thread.join(30)
    assert not failures, failures[:5]
    assert seen["one"] > 0 and seen["two"] > seen_before > 0
