"""The SavedModel loader's own rules (spec §3.1–3.2), against a stand-in ``tensorflow``.

TensorFlow is an optional extra the test environment does not install; the stand-in offers
the few calls the loader makes (``saved_model.load``, ``constant``, signatures with
``structured_input_signature``), computing with numpy.
"""

from __future__ import annotations

import sys
import types
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")

from mlengine.domain.errors import FailedPrecondition, InvalidArgument  # noqa: E402
from mlengine.serving import predictor as predictor_module  # noqa: E402
from mlengine.serving.predictor import Predictor, load_predictor  # noqa: E402


class DType:
    def __init__(self, name: str, numpy_type: Any) -> None:
        self.name = name
        self.as_numpy_dtype = numpy_type


FLOAT32 = DType("float32", np.float32)
STRING = DType("string", object)


class Shape:
    def __init__(self, dims: list[int | None] | None) -> None:
        self.dims = dims
        self.rank = None if dims is None else len(dims)

    def as_list(self) -> list[int | None]:
        assert self.dims is not None
        return list(self.dims)


class Spec:
    def __init__(self, dtype: DType, dims: list[int | None] | None) -> None:
        self.dtype = dtype
        self.shape = Shape(dims)


class Tensor:
    def __init__(self, array: Any) -> None:
        self.array = array

    def numpy(self) -> Any:
        return self.array


class OpError(Exception):
    pass


def constant(values: Any, dtype: DType) -> Tensor:
    if dtype is STRING:
        array = np.empty(len(values), dtype=object)
        array[:] = [v if isinstance(v, bytes) else str(v).encode() for v in values]
        return Tensor(array)
    return Tensor(np.asarray(values, dtype=dtype.as_numpy_dtype))


class Signature:
    """``x`` float [N, 2] and ``word`` string [N] → ``total``, ``word`` echoed as text and bytes."""

    structured_input_signature = ((), {"x": Spec(FLOAT32, [None, 2]), "word": Spec(STRING, [None])})

    def __call__(self, x: Tensor, word: Tensor) -> dict[str, Tensor]:
        if np.isnan(x.array).any():
            raise OpError("NaN input")
        return {"total": Tensor(x.array.sum(axis=1)), "echo": word, "echo_bytes": word}


class Single:
    """One input ``v`` float [N] → ``doubled``."""

    structured_input_signature = ((), {"v": Spec(FLOAT32, [None])})

    def __call__(self, v: Tensor) -> dict[str, Tensor]:
        return {"doubled": Tensor(v.array * 2)}


@pytest.fixture
def fake_tensorflow(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    loaded = types.SimpleNamespace(signatures={"serving_default": Signature(), "single": Single()})
    tf = types.SimpleNamespace(
        saved_model=types.SimpleNamespace(load=lambda path, tags: loaded),
        constant=constant,
        errors=types.SimpleNamespace(OpError=OpError),
        config=types.SimpleNamespace(
            threading=types.SimpleNamespace(
                set_intra_op_parallelism_threads=lambda n: None,
                set_inter_op_parallelism_threads=lambda n: None,
            )
        ),
        loaded=loaded,
    )
    monkeypatch.setitem(sys.modules, "tensorflow", tf)
    monkeypatch.setattr(predictor_module, "tensorflow_available", lambda: True)
    return tf


@pytest.fixture
def saved_model(tmp_path: Path) -> Path:
    (tmp_path / "saved_model.pb").write_bytes(b"")
    (tmp_path / "variables").mkdir()
    return tmp_path


def test_named_inputs_are_columnarised_and_outputs_rowified(
    fake_tensorflow: Any, saved_model: Path
) -> None:
    predictor = load_predictor(saved_model)
    assert isinstance(predictor, Predictor) and predictor.framework == "TENSORFLOW"
    result = predictor.predict([{"x": [1, 2], "word": "héllo"}, {"word": "b", "x": [0, 0.5]}])
    assert result == [
        {"total": 3.0, "echo": "héllo", "echo_bytes": {"b64": "aMOpbGxv"}},
        {"total": 0.5, "echo": "b", "echo_bytes": {"b64": "Yg=="}},
    ]
    binary = predictor.predict([{"x": [0, 0], "word": {"b64": "aGk="}}])
    assert binary[0]["echo"] == "hi"


def test_signature_resolution(fake_tensorflow: Any, saved_model: Path) -> None:
    predictor = load_predictor(saved_model, framework="TENSORFLOW")
    assert predictor.predict([1.5, 2], signature_name="single") == [3.0, 4.0]  # one output
    assert predictor.predict([{"v": 1}], signature_name="single") == [2.0]
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([1.0], signature_name="absent")
    assert "No signature found for signature key 'absent'" in caught.value.message
    fake_tensorflow.loaded.signatures = {"only": Single()}
    assert load_predictor(saved_model).predict([1.0]) == [2.0]


def test_tensorflow_instance_errors(fake_tensorflow: Any, saved_model: Path) -> None:
    predictor = load_predictor(saved_model)
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"x": [1, 2], "word": "a", "extra": 1}])
    assert "Unexpected tensor name: extra" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"x": [1, 2], "word": "a"}, {"x": [1, 2]}])
    assert "Input word was missing in at least one input instance" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"w": 1}], signature_name="single")
    assert "Expected tensor name: v" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"x": ["a", "b"], "word": "a"}])
    assert caught.value.field == "instances[].x"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"x": [None, 1], "word": "a"}])
    assert "NaN input" in caught.value.message


def test_tensorflow_probe_from_the_signature(fake_tensorflow: Any, saved_model: Path) -> None:
    predictor = load_predictor(saved_model)
    instances = predictor.probe_instances()
    assert instances == [{"x": [0, 0], "word": ""}]
    predictor.predict(instances)


def test_a_saved_model_that_does_not_load(
    fake_tensorflow: Any, saved_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(path: str, tags: list[str]) -> None:
        raise OSError("SavedModel file does not exist")

    monkeypatch.setattr(fake_tensorflow.saved_model, "load", refuse)
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(saved_model)
    assert "saved_model.pb" in caught.value.message
    assert "SavedModel file does not exist" in caught.value.message
