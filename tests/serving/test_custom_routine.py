"""Custom prediction routines (spec §3.7): from_path, predict(instances, **kwargs), packages."""

from __future__ import annotations

import io
import sys
import tarfile
import tempfile
import uuid
from pathlib import Path

import pytest

orjson = pytest.importorskip("orjson")

from mlengine.domain.errors import FailedPrecondition, Internal, InvalidArgument  # noqa: E402
from mlengine.serving.predictor import Predictor, load_predictor  # noqa: E402

ROUTINE = '''
import numpy as np


class Scaler:
    """Multiplies each row by the factor in the model directory's factor.txt."""

    def __init__(self, factor):
        self.factor = factor

    @classmethod
    def from_path(cls, model_dir):
        with open(model_dir + "/factor.txt") as handle:
            return cls(float(handle.read()))

    def predict(self, instances, **kwargs):
        if kwargs.get("fail"):
            raise RuntimeError("asked to fail")
        if kwargs.get("short"):
            return instances[:-1]
        scaled = np.asarray(instances, dtype=np.float64) * self.factor
        return [
            {"scaled": row, "sum": row.sum(), "tag": kwargs.get("tag", "none").encode()}
            for row in scaled
        ]

    def probe_instances(self):
        return [[1.0, 2.0]]
'''


def _unique(prefix: str) -> str:
    """A module name no other test (or earlier run in this process) has imported."""
    return f"{prefix}_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "factor.txt").write_text("2")
    return folder


def _package(folder: Path, module: str, source: str = ROUTINE) -> Path:
    folder.mkdir(parents=True)
    (folder / f"{module}.py").write_text(source)
    return folder


def test_a_routine_from_a_directory(tmp_path: Path, model_dir: Path) -> None:
    module = _unique("routine")
    package = _package(tmp_path / "code", module)
    predictor = load_predictor(
        model_dir, prediction_class=f"{module}.Scaler", package_paths=[package]
    )
    assert isinstance(predictor, Predictor) and predictor.framework == "CUSTOM"
    predictions = predictor.predict([[1, 2], [3, 4]], tag="x")
    assert predictions == [
        {"scaled": [2.0, 4.0], "sum": 6.0, "tag": {"b64": "eA=="}},
        {"scaled": [6.0, 8.0], "sum": 14.0, "tag": {"b64": "eA=="}},
    ]
    assert type(predictions[0]["sum"]) is float
    orjson.dumps(predictions)
    assert predictor.probe_instances() == [[1.0, 2.0]]
    (model_dir / "input_example.json").write_text("[[5, 5]]")
    assert predictor.probe_instances() == [[5, 5]]


def test_routine_errors(tmp_path: Path, model_dir: Path) -> None:
    module = _unique("routine")
    package = _package(tmp_path / "code", module)
    predictor = load_predictor(
        model_dir, prediction_class=f"{module}.Scaler", package_paths=[package]
    )
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[1, 2]], fail=True)
    assert "RuntimeError: asked to fail" in caught.value.message
    with pytest.raises(Internal) as internal:
        predictor.predict([[1, 2], [3, 4]], short=True)
    assert "one prediction per instance" in internal.value.message
    with pytest.raises(InvalidArgument):
        predictor.predict([])


@pytest.fixture
def install_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Where packages get installed: the test's own folder, not the system's /tmp."""
    root = tmp_path / "temporary"
    root.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(root))
    return root


def test_a_routine_from_an_sdist(tmp_path: Path, model_dir: Path, install_root: Path) -> None:
    module = _unique("packaged")
    archive = tmp_path / f"{module}-0.1.tar.gz"
    setup = (
        "from setuptools import setup\n"
        f"setup(name={module!r}, version='0.1', py_modules=[{module!r}])\n"
    )
    with tarfile.open(archive, "w:gz") as tar:
        for name, text in ((f"{module}.py", ROUTINE), ("setup.py", setup)):
            data = text.encode()
            info = tarfile.TarInfo(f"{module}-0.1/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    predictor = load_predictor(
        model_dir, prediction_class=f"{module}.Scaler", package_paths=[archive]
    )
    assert predictor.predict([[1, 1]])[0]["sum"] == 4.0
    installed = Path(sys.modules[module].__file__ or "")
    assert installed.parent.parent == install_root  # <root>/mlengine-packages-*/module.py


def test_a_new_version_of_a_module_runs_its_own_code(tmp_path: Path, model_dir: Path) -> None:
    module = _unique("versioned")
    source = "class Echo:\n    @classmethod\n    def from_path(cls, d):\n        return cls()\n"
    first = _package(
        tmp_path / "v1", module, source + "    def predict(self, x):\n        return [1] * len(x)\n"
    )
    second = _package(
        tmp_path / "v2", module, source + "    def predict(self, x):\n        return [2] * len(x)\n"
    )
    old = load_predictor(model_dir, prediction_class=f"{module}.Echo", package_paths=[first])
    new = load_predictor(model_dir, prediction_class=f"{module}.Echo", package_paths=[second])
    assert old.predict(["a"]) == [1] and new.predict(["a"]) == [2]


def test_loading_errors_name_the_class(tmp_path: Path, model_dir: Path) -> None:
    module = _unique("broken")
    package = _package(
        tmp_path / "code",
        module,
        "class NoFromPath:\n    pass\n"
        "class Failing:\n    @classmethod\n    def from_path(cls, d):\n"
        "        raise OSError('no weights')\n",
    )
    with pytest.raises(InvalidArgument) as caught:
        load_predictor(model_dir, prediction_class="NoModule")
    assert caught.value.field == "predictionClass"
    cases = {
        f"{module}_absent.Scaler": "cannot be imported",
        f"{module}.Missing": "has no 'Missing'",
        f"{module}.NoFromPath": "from_path",
        f"{module}.Failing": "OSError: no weights",
    }
    for prediction_class, expected in cases.items():
        with pytest.raises(FailedPrecondition) as failed:
            load_predictor(model_dir, prediction_class=prediction_class, package_paths=[package])
        assert expected in failed.value.message and failed.value.field == "predictionClass"


def test_bad_package_paths(tmp_path: Path, model_dir: Path, install_root: Path) -> None:
    with pytest.raises(InvalidArgument) as caught:
        load_predictor(model_dir, prediction_class="m.C", package_paths=[tmp_path / "absent.whl"])
    assert caught.value.field == "packageUris"
    broken = tmp_path / "broken-0.1.tar.gz"
    broken.write_bytes(b"not a tarball")
    with pytest.raises(FailedPrecondition) as failed:
        load_predictor(model_dir, prediction_class="m.C", package_paths=[broken])
    assert "broken-0.1.tar.gz" in failed.value.message
    assert not list(install_root.iterdir())  # the failed install left nothing behind
