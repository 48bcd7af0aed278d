"""The scikit-learn census example: loader, training, metric, and a self-contained pickle."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

pytest.importorskip("sklearn")
pytest.importorskip("pandas")
pytest.importorskip("joblib")

from tests.examples.census_files import (
    ADULT_DATA,
    ADULT_TEST,
    EXAMPLES,
    census_instances,
    hide_mlengine,
    metric_entries,
    requires_census,
    run_trainer,
    trainer_env,
    write_slice,
)

PACKAGE = EXAMPLES / "sklearn"
#: Loads the pickle where neither the trainer package nor mlengine can be imported (-I: no
#: cwd, no PYTHONPATH on sys.path), then predicts instances given as JSON on stdin.
CLEAN_PREDICT = """
import json, sys
import joblib, pandas
model = joblib.load(sys.argv[1])
assert "trainer" not in sys.modules, "the pickle imported the trainer package"
rows = json.load(sys.stdin)
frame = pandas.DataFrame(rows)
print(json.dumps({
    "classes": model.predict(frame).tolist(),
    "probabilities": model.predict_proba(frame).tolist(),
    "labels": model.classes_.tolist(),
}))
"""


def _load_data_module() -> ModuleType:
    """``trainer/data.py`` under a private name (the PyTorch example is ``trainer`` too)."""
    spec = importlib.util.spec_from_file_location(
        "census_sklearn_data", PACKAGE / "trainer/data.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _predict_clean(model_file: Path, instances: list[dict[str, object]], cwd: Path) -> dict:
    result = subprocess.run(
        [sys.executable, "-I", "-c", CLEAN_PREDICT, str(model_file)],
        input=json.dumps(instances), cwd=cwd, capture_output=True, text=True, timeout=120,
        env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"},
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout)


def test_loader_reads_the_uci_quirks(tmp_path: Path) -> None:
    data = _load_data_module()
    test = tmp_path / "adult.test"
    test.write_text(
        "|1x3 Cross validator\n"
        "25, Private, 226802, 11th, 7, Never-married, Machine-op-inspct, Own-child, Black, "
        "Male, 0, 0, 40, United-States, <=50K.\n\n"
        "50, ?, 83311, Bachelors, 13, Married-civ-spouse, ?, Husband, White, Male, 0, 0, 13, "
        "?, >50K.\n"
    )
    features, labels = data.load([str(test), str(test)])
    assert labels.tolist() == ["<=50K", ">50K"] * 2
    assert list(features.columns) == list(data.FEATURE_COLUMNS)
    assert features["workclass"][0] == "Private" and features["workclass"].isna()[1]
    assert features["occupation"].isna().tolist() == [False, True, False, True]
    assert features["age"].tolist() == [25, 50, 25, 50]


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(job dir, metric file) of a run on slices, with mlengine hidden (hypertune fallback)."""
    pytest.importorskip("hypertune")
    folder = tmp_path_factory.mktemp("census-sklearn")
    train = write_slice(ADULT_DATA, folder / "adult.data", 5000)
    test = write_slice(ADULT_TEST, folder / "adult.test", 2000)
    metrics = folder / "output.metrics"
    env = trainer_env(metrics, PYTHONPATH=hide_mlengine(folder / "shadow"))
    args = ["--train-files", str(train), "--eval-files", str(test),
            "--job-dir", str(folder / "job"), "--max-iter=50", "--scale-factor=0.5"]  # fmt: skip
    run_trainer("sklearn", args, env, timeout=300)
    return folder / "job", metrics


@requires_census
def test_reports_accuracy(trained: tuple[Path, Path]) -> None:
    (entry,) = metric_entries(trained[1], "accuracy")
    assert 0.8 < float(str(entry["accuracy"])) <= 1.0
    assert entry["global_step"] == "50" and entry["trial"] == "0"


@requires_census
def test_pickle_predicts_the_census_instances_without_the_trainer(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    model_file = trained[0] / "model" / "model.joblib"
    result = _predict_clean(model_file, census_instances(), cwd=tmp_path)
    assert result["labels"] == ["<=50K", ">50K"]
    assert len(result["classes"]) == 3
    assert all(label in ("<=50K", ">50K") for label in result["classes"])
    first, _, sample = result["probabilities"]
    assert first == pytest.approx(sample)  # spelling and spacing are normalised


@requires_census
def test_pickle_tolerates_absent_columns_and_extra_fields(
    trained: tuple[Path, Path], tmp_path: Path
) -> None:
    instances = [{"age": "40", "gender": " FEMALE"}, {"fnlwgt": 1, "workclass": "?"}]
    result = _predict_clean(trained[0] / "model" / "model.joblib", instances, cwd=tmp_path)
    assert len(result["classes"]) == 2
    metadata = json.loads((trained[0] / "model" / "metadata.json").read_text())
    assert len(metadata["feature_columns"]) == 13


@requires_census
@pytest.mark.slow
def test_default_flags_reach_085_on_the_full_test_set(tmp_path: Path) -> None:
    metrics = tmp_path / "output.metrics"
    args = ["--train-files", str(ADULT_DATA), "--eval-files", str(ADULT_TEST),
            "--job-dir", str(tmp_path / "job")]  # fmt: skip
    run_trainer("sklearn", args, trainer_env(metrics), timeout=300)
    (entry,) = metric_entries(metrics, "accuracy")
    assert float(str(entry["accuracy"])) >= 0.85
