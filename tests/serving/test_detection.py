"""Choosing the loader: detection by file name, framework names, and refusals."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from mlengine.domain.errors import FailedPrecondition, InvalidArgument
from mlengine.serving import predictor as predictor_module
from mlengine.serving.predictor import (
    FRAMEWORKS,
    detect_framework,
    load_predictor,
    model_file,
    resolve_framework,
)


def _folder(tmp_path: Path, *names: str) -> Path:
    folder = tmp_path / "model"
    folder.mkdir(parents=True)
    for name in names:
        (folder / name).write_bytes(b"")
    return folder


@pytest.mark.parametrize(
    ("name", "framework"),
    [
        ("model.joblib", "SCIKIT_LEARN"),
        ("model.pkl", "SCIKIT_LEARN"),
        ("model.bst", "XGBOOST"),
        ("model.json", "XGBOOST"),
        ("model.ubj", "XGBOOST"),
        ("model.txt", "LIGHTGBM"),
        ("model.onnx", "ONNX"),
        ("model.pt", "PYTORCH"),
        ("model.pt2", "PYTORCH"),
    ],
)
def test_each_file_name_detects_its_framework(tmp_path: Path, name: str, framework: str) -> None:
    folder = _folder(tmp_path, name, "metadata.json", "input_example.json")
    assert detect_framework(folder) == framework
    assert framework in FRAMEWORKS


def test_a_saved_model_needs_tensorflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = _folder(tmp_path, "saved_model.pb")
    (folder / "variables").mkdir()
    monkeypatch.setattr(predictor_module, "tensorflow_available", lambda: False)
    with pytest.raises(FailedPrecondition) as caught:
        detect_framework(folder)
    assert "pip install 'mlengine[tf]'" in caught.value.message
    (folder / "model.onnx").write_bytes(b"")  # a SavedModel exported beside an ONNX copy
    assert detect_framework(folder) == "ONNX"
    monkeypatch.setattr(predictor_module, "tensorflow_available", lambda: True)
    (folder / "model.onnx").unlink()
    assert detect_framework(folder) == "TENSORFLOW"


def test_files_of_one_framework_are_not_ambiguous(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "model.pkl", "model.joblib")
    assert detect_framework(folder) == "SCIKIT_LEARN"
    assert model_file(folder, "SCIKIT_LEARN").name == "model.joblib"  # spec §3.6 order


def test_files_of_two_frameworks_ask_for_the_framework(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "model.onnx", "model.pt")
    with pytest.raises(InvalidArgument) as caught:
        detect_framework(folder)
    assert caught.value.field == "framework"
    assert "model.onnx (ONNX)" in caught.value.message
    assert "model.pt (PYTORCH)" in caught.value.message
    assert model_file(folder, "PYTORCH").name == "model.pt"


def test_no_model_file_lists_what_is_there_and_what_is_expected(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "weights.h5", "notes.md")
    (folder / "assets").mkdir()
    with pytest.raises(InvalidArgument) as caught:
        detect_framework(folder)
    assert caught.value.field == "deploymentUri"
    message = caught.value.message
    assert "assets/, notes.md, weights.h5" in message
    for expected in ("model.joblib", "model.bst", "model.txt", "model.onnx", "model.pt2"):
        assert expected in message
    with pytest.raises(InvalidArgument) as caught:
        detect_framework(tmp_path / "absent")
    assert caught.value.field == "deploymentUri"


def test_an_explicit_framework_needs_its_file(tmp_path: Path) -> None:
    folder = _folder(tmp_path, "model.onnx")
    with pytest.raises(InvalidArgument) as caught:
        load_predictor(folder, framework="XGBOOST")
    assert caught.value.field == "deploymentUri"
    assert "model.bst" in caught.value.message and "found model.onnx" in caught.value.message
    assert model_file(_folder(tmp_path / "x", "model.bst", "model.pkl"), "XGBOOST").name == (
        "model.pkl"
    )


@pytest.mark.parametrize(
    ("given", "resolved"),
    [
        (None, None),
        ("FRAMEWORK_UNSPECIFIED", None),
        ("SCIKIT_LEARN", "SCIKIT_LEARN"),
        ("XGBOOST", "XGBOOST"),
        ("TENSORFLOW", "TENSORFLOW"),
        ("lightgbm", "LIGHTGBM"),
        (" onnx ", "ONNX"),
        ("PYTORCH", "PYTORCH"),
    ],
)
def test_framework_names(given: str | None, resolved: str | None) -> None:
    assert resolve_framework(given, None) == resolved


def test_framework_and_prediction_class_rules() -> None:
    with pytest.raises(InvalidArgument) as caught:
        resolve_framework("KERAS", None)
    assert caught.value.field == "framework"
    assert resolve_framework(None, "predictor.Routine") == "CUSTOM"
    assert resolve_framework("CUSTOM", "predictor.Routine") == "CUSTOM"
    with pytest.raises(InvalidArgument) as caught:
        resolve_framework("XGBOOST", "predictor.Routine")
    assert caught.value.field == "framework"
    with pytest.raises(InvalidArgument) as caught:
        resolve_framework("CUSTOM", None)
    assert caught.value.field == "predictionClass"


def test_custom_routines_are_refused_when_pickles_are(tmp_path: Path) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(_folder(tmp_path), prediction_class="predictor.Routine", allow_pickle=False)
    assert caught.value.field == "predictionClass"
    assert "runs the code" in caught.value.message


@pytest.mark.parametrize(
    ("module", "file", "extra"),
    [
        ("xgboost", "model.json", "xgboost"),
        ("lightgbm", "model.txt", "lightgbm"),
        ("torch", "model.pt", "torch"),
        ("onnxruntime", "model.onnx", "onnx"),
        ("joblib", "model.joblib", "sklearn"),
    ],
)
def test_a_missing_framework_names_the_extra_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, module: str, file: str, extra: str
) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(_folder(tmp_path, file))
    assert f"pip install 'mlengine[{extra}]'" in caught.value.message
    assert file in caught.value.message


def test_threads_must_be_positive(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        load_predictor(_folder(tmp_path, "model.onnx"), threads=0)
