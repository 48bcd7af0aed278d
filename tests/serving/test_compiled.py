"""Compiling models to ONNX Runtime: verified before use, answering exactly like the original.

Each model is trained here on a few hundred synthetic rows, compiled, loaded with
``load_compiled`` and compared with ``load_predictor`` on fresh requests that the probe set
never saw: labels and JSON types identical, numbers within the documented tolerances.
"""

from __future__ import annotations

import importlib.util
import math
import sys
import time
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
pd = pytest.importorskip("pandas")
joblib = pytest.importorskip("joblib")
pytest.importorskip("sklearn")
pytest.importorskip("onnxruntime")
pytest.importorskip("skl2onnx")
pytest.importorskip("onnxmltools")

from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import HistGradientBoostingClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.linear_model import LogisticRegression, Ridge  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import OneHotEncoder, StandardScaler  # noqa: E402

from mlengine.domain.errors import FailedPrecondition, InvalidArgument  # noqa: E402
from mlengine.serving.compiled import (  # noqa: E402
    CompiledPredictor,
    CompileResult,
    compile_model,
    load_compiled,
)
from mlengine.serving.predictor import Predictor, load_predictor  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[2]
CENSUS_SKLEARN = REPO_ROOT / "examples" / "census" / "sklearn" / "trainer"
CATEGORIES = {"workclass": ["Private", "State-gov", "Self-emp"], "sex": ["Male", "Female"]}
NUMBERS = {"age": (38.0, 13.0), "hours": (40.0, 12.0), "gain": (1000.0, 700.0)}


# --- models ----------------------------------------------------------------------------------


def _frame(rows: int, seed: int) -> Any:
    """Census-shaped data: two string columns, three numeric ones, 'gain' 10 % missing."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({name: rng.choice(values, rows) for name, values in CATEGORIES.items()})
    for name, (mean, spread) in NUMBERS.items():
        frame[name] = rng.normal(mean, spread, rows).round()
    frame.loc[rng.random(rows) < 0.1, "gain"] = np.nan
    return frame


def _labels(frame: Any) -> Any:
    score = frame["age"] / 10 + (frame["workclass"] == "Private") * 2 + frame["hours"] / 20
    return np.where(score > 7.5, ">50K", "<=50K")


def _columns(dense: bool = False) -> ColumnTransformer:
    return ColumnTransformer(
        [
            (
                "categorical",
                OneHotEncoder(handle_unknown="ignore", sparse_output=not dense),
                list(CATEGORIES),
            ),
            ("scaled", StandardScaler(), ["age", "hours"]),
            (
                "imputed",
                Pipeline([("fill", SimpleImputer()), ("scale", StandardScaler())]),
                ["gain"],
            ),
        ]
    )


def _save(folder: Path, model: Any) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """Model directories by name, trained on first use."""
    root = tmp_path_factory.mktemp("models")
    built: dict[str, Path] = {}
    frame = _frame(600, seed=0)

    def build(name: str) -> Path:
        if name not in built:
            built[name] = BUILDERS[name](root / name, frame)
        return built[name]

    return build


def _dataframe_lr(folder: Path, frame: Any) -> Path:
    return _save(
        folder,
        Pipeline([("features", _columns()), ("model", LogisticRegression())]).fit(
            frame, _labels(frame)
        ),
    )


def _dataframe_hgb(folder: Path, frame: Any) -> Path:
    model = Pipeline(
        [("features", _columns(dense=True)), ("model", HistGradientBoostingClassifier(max_iter=30))]
    )
    return _save(folder, model.fit(frame, _labels(frame)))


def _dataframe_ridge(folder: Path, frame: Any) -> Path:
    target = frame["age"] * 120 + frame["hours"] * 30 + (frame["sex"] == "Male") * 900
    return _save(
        folder, Pipeline([("features", _columns()), ("model", Ridge())]).fit(frame, target)
    )


def _array_lr(folder: Path, frame: Any) -> Path:
    features = frame[list(NUMBERS)].fillna(0).to_numpy()
    return _save(
        folder, LogisticRegression(max_iter=500).fit(features, (features[:, 0] > 38).astype(int))
    )


def _xgboost(folder: Path, frame: Any) -> Path:
    xgboost = pytest.importorskip("xgboost")
    features = frame[list(NUMBERS)]
    labels = (features["age"] + features["hours"] / 2 > 58).astype(int)
    booster = xgboost.train(
        {"objective": "binary:logistic", "max_depth": 4, "nthread": 1},
        xgboost.DMatrix(features, labels),
        num_boost_round=20,
    )
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.json"))
    return folder


def _lightgbm(folder: Path, frame: Any, **params: Any) -> Path:
    lightgbm = pytest.importorskip("lightgbm")
    features = frame[list(NUMBERS)].to_numpy()
    target = features[:, 0] * 2 + np.nan_to_num(features[:, 2]) / 100
    settings = {"objective": "regression", "verbose": -1, "num_threads": 1, **params}
    booster = lightgbm.train(settings, lightgbm.Dataset(features, target), num_boost_round=20)
    folder.mkdir(parents=True)
    booster.save_model(str(folder / "model.txt"))
    return folder


def _hgb_native_categories(folder: Path, frame: Any) -> Path:
    """Native categorical splits: skl2onnx converts them as numeric ones, silently."""
    rng = np.random.default_rng(1)
    codes = rng.integers(0, 6, size=(600, 2)).astype(float)
    labels = ((codes[:, 0] % 2 == 1) ^ (codes[:, 1] > 2)).astype(int)
    model = HistGradientBoostingClassifier(max_iter=10, categorical_features=[0])
    return _save(folder, model.fit(codes, labels))


BUILDERS: dict[str, Callable[[Path, Any], Path]] = {
    "dataframe_lr": _dataframe_lr,
    "dataframe_hgb": _dataframe_hgb,
    "dataframe_ridge": _dataframe_ridge,
    "array_lr": _array_lr,
    "xgboost": _xgboost,
    "lightgbm": _lightgbm,
    "lightgbm_linear_tree": lambda folder, frame: _lightgbm(folder, frame, linear_tree=True),
    "hgb_native_categories": _hgb_native_categories,
}
FRAMEWORKS = {"xgboost": "XGBOOST", "lightgbm": "LIGHTGBM", "lightgbm_linear_tree": "LIGHTGBM"}


def _compiled(
    models: Callable[[str], Path], name: str
) -> tuple[CompiledPredictor, Predictor, CompileResult]:
    """(compiled, original, result) for a model that must compile."""
    folder, framework = models(name), FRAMEWORKS.get(name, "SCIKIT_LEARN")
    result = compile_model(folder, folder / "compiled", framework=framework)
    assert result.path == folder / "compiled" / "model.onnx", result.reason
    assert result.reason.startswith("verified equal on 512 rows"), result.reason
    assert result.rows_checked == 512
    compiled = load_compiled(folder, folder / "compiled", framework=framework)
    assert isinstance(compiled, CompiledPredictor)
    return compiled, load_predictor(folder, framework=framework), result


# --- fresh requests and comparing answers -------------------------------------------------------


def _fresh_objects(count: int, seed: int, *, missing: bool = True) -> list[dict[str, Any]]:
    """Instances the probe set never saw: unknown categories, absent and null fields, ints."""
    rng = np.random.default_rng(seed)
    instances = []
    for _ in range(count):
        instance: dict[str, Any] = {}
        for name, values in CATEGORIES.items():
            u = rng.random()
            if missing and u < 0.1:
                instance[name] = None
            elif not (missing and u < 0.2):
                instance[name] = "Never-worked" if u > 0.9 else str(rng.choice(values))
        for name, (mean, spread) in NUMBERS.items():
            value = float(rng.normal(mean, spread))
            if name != "gain" or not missing or rng.random() > 0.2:
                instance[name] = round(value) if rng.random() < 0.5 else value
        instances.append(instance)
    return instances


def assert_same(expected: Any, actual: Any, *, relative: bool = False) -> None:
    """Same JSON shape and types; labels equal; numbers within 1e-5 (relative: of the value)."""
    assert type(expected) is type(actual), (expected, actual)
    if isinstance(expected, list):
        assert len(expected) == len(actual)
        for e, a in zip(expected, actual, strict=True):
            assert_same(e, a, relative=relative)
    elif isinstance(expected, float):
        scale = max(abs(expected), 1.0) if relative else 1.0
        assert math.isclose(expected, actual, abs_tol=1e-5 * scale), (expected, actual)
    else:
        assert expected == actual


def _same_answers(
    compiled: Predictor, original: Predictor, instances: list[Any], **kwargs: Any
) -> None:
    """Both answer alike, or both refuse with the same error."""
    try:
        expected = original.predict(instances, **kwargs)
    except InvalidArgument as error:
        with pytest.raises(InvalidArgument) as refused:
            compiled.predict(instances, **kwargs)
        assert refused.value.message == error.message
        return
    relative = not kwargs and isinstance(expected[0], float)
    assert_same(expected, compiled.predict(instances, **kwargs), relative=relative)


# --- scikit-learn -------------------------------------------------------------------------------


def test_logistic_regression_on_arrays(models: Callable[[str], Path]) -> None:
    compiled, original, result = _compiled(models, "array_lr")
    rows = [[float(v) for v in np.random.default_rng(5).normal(40, 12, 3)] for _ in range(64)]
    rows[3] = [41, 35, 0]  # JSON ints
    assert compiled.compute(rows, probabilities=True) is not None
    _same_answers(compiled, original, rows)
    _same_answers(compiled, original, rows, probabilities=True)
    _same_answers(compiled, original, rows[:1])
    assert isinstance(compiled.predict(rows)[0], int)
    # null is outside the served forms (the model rejects NaN): the original's own error.
    with pytest.raises(InvalidArgument):
        compiled.predict([[40.0, None, 0.0]])
    assert "null values" in result.reason


@pytest.mark.parametrize("name", ["dataframe_lr", "dataframe_hgb"])
def test_dataframe_pipeline(models: Callable[[str], Path], name: str) -> None:
    compiled, original, _result = _compiled(models, name)
    assert compiled.framework == "SCIKIT_LEARN"
    batch = _fresh_objects(64, seed=11)
    assert compiled.compute(batch) is not None  # the graph answers, not the original
    _same_answers(compiled, original, batch)
    _same_answers(compiled, original, batch, probabilities=True)
    labels = compiled.predict(batch)
    assert {type(label) for label in labels} == {str} and set(labels) <= {">50K", "<=50K"}
    for instance in _fresh_objects(12, seed=12):  # one per request: absent fields alone too
        _same_answers(compiled, original, [instance])
        _same_answers(compiled, original, [instance], probabilities=True)
    names = list(CATEGORIES) + list(NUMBERS)
    rows = [
        [instance.get(n) for n in names] for instance in _fresh_objects(16, seed=13, missing=False)
    ]
    _same_answers(compiled, original, rows)


def test_dataframe_pipeline_refusals_match_the_original(models: Callable[[str], Path]) -> None:
    compiled, original, _ = _compiled(models, "dataframe_lr")
    good = _fresh_objects(1, seed=3, missing=False)[0]
    for bad in ({**good, "hours-per-week": 40}, {**good, "age": None}):
        with pytest.raises(InvalidArgument) as want:
            original.predict([bad])
        with pytest.raises(InvalidArgument) as got:
            compiled.predict([bad])
        assert (got.value.field, got.value.message) == (want.value.field, want.value.message)
    # Keys the compiled graph does not know reach the original model as they are.
    with pytest.raises(InvalidArgument, match="probabilities must be true or false"):
        compiled.predict([good], probabilities="yes")
    assert compiled.predict([{**good, "age": "39"}]) == original.predict([{**good, "age": "39"}])


def test_regression_pipeline(models: Callable[[str], Path]) -> None:
    compiled, original, result = _compiled(models, "dataframe_ridge")
    assert "max relative Δ" in result.reason
    batch = _fresh_objects(64, seed=21)
    assert compiled.compute(batch) is not None
    _same_answers(compiled, original, batch)
    assert all(type(v) is float for v in compiled.predict(batch))


def _per_call(predictor: Predictor, instances: list[Any], calls: int = 30) -> float:
    """Median seconds per predict call (after a warm-up call)."""
    predictor.predict(instances)
    times = []
    for _ in range(calls):
        start = time.perf_counter()
        predictor.predict(instances)
        times.append(time.perf_counter() - start)
    return float(np.median(times))


@pytest.mark.parametrize("name", ["dataframe_lr", "dataframe_hgb"])
def test_compiled_pipeline_is_faster_per_call(models: Callable[[str], Path], name: str) -> None:
    compiled, original, _ = _compiled(models, name)
    for rows in (1, 64):
        instances = _fresh_objects(rows, seed=31, missing=False)
        assert compiled.compute(instances) is not None
        fast, slow = _per_call(compiled, instances), _per_call(original, instances)
        print(
            f"{name}, {rows} row(s) per call: original {slow * 1e3:.2f} ms, "
            f"compiled {fast * 1e3:.3f} ms, {slow / fast:.0f}x"
        )
        if rows == 1:
            assert slow / fast >= 2, (slow, fast)


def test_census_pipeline_is_not_converted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The census sample normalises strings with FunctionTransformers: no ONNX for those."""
    package = types.ModuleType("trainer")
    package.__path__ = [str(CENSUS_SKLEARN)]
    monkeypatch.setitem(sys.modules, "trainer", package)
    modules = {}
    for name in ("data", "pipeline"):
        spec = importlib.util.spec_from_file_location(
            f"trainer.{name}", CENSUS_SKLEARN / f"{name}.py"
        )
        assert spec is not None and spec.loader is not None
        modules[name] = importlib.util.module_from_spec(spec)
        monkeypatch.setitem(sys.modules, f"trainer.{name}", modules[name])
        monkeypatch.setattr(package, name, modules[name], raising=False)
        spec.loader.exec_module(modules[name])
    data = modules["data"]
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({c: rng.choice(["a", "b", "c"], 80) for c in data.CATEGORICAL_COLUMNS})
    for column in data.NUMERIC_COLUMNS:
        frame[column] = rng.integers(0, 60, 80).astype(float)
    labels = np.where(frame["age"] > 30, ">50K", "<=50K")
    folder = _save(tmp_path / "census", modules["pipeline"].build(max_iter=5).fit(frame, labels))
    result = compile_model(folder, tmp_path / "out", framework="SCIKIT_LEARN")
    assert result.path is None and result.rows_checked == 0
    assert (
        "no ONNX conversion for step 'columns' (FunctionTransformer of DataFrame.reindex)"
        in result.reason
    )
    assert "'features/categorical/as_text'" in result.reason
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("name", ["hgb_native_categories", "lightgbm_linear_tree"])
def test_lossy_conversion_is_refused(models: Callable[[str], Path], name: str) -> None:
    """Both convert without an error and predict something else: the probe set shows it."""
    folder = models(name)
    result = compile_model(
        folder, folder / "compiled", framework=FRAMEWORKS.get(name, "SCIKIT_LEARN")
    )
    assert result.path is None
    assert "differs: original prediction" in result.reason, result.reason
    assert not (folder / "compiled" / "model.onnx").exists()


# --- boosters --------------------------------------------------------------------------------


def test_xgboost_booster(models: Callable[[str], Path]) -> None:
    compiled, original, result = _compiled(models, "xgboost")
    assert compiled.framework == "XGBOOST" and "split-threshold probes" in result.reason
    objects = _fresh_objects(64, seed=41)
    instances = [{k: v for k, v in o.items() if k in NUMBERS} for o in objects]
    assert compiled.compute(instances) is not None
    _same_answers(compiled, original, instances)
    rows = [[o.get(n) for n in NUMBERS] for o in instances]
    _same_answers(compiled, original, rows)
    _same_answers(compiled, original, rows[:1])
    # Booster.predict keywords go to the original model.
    assert compiled.predict(rows, output_margin=True) == original.predict(rows, output_margin=True)


def test_lightgbm_booster(models: Callable[[str], Path]) -> None:
    compiled, original, result = _compiled(models, "lightgbm")
    assert compiled.framework == "LIGHTGBM" and "max relative Δ" in result.reason
    rows = [[o.get(n) for n in NUMBERS] for o in _fresh_objects(64, seed=51)]
    assert compiled.compute(rows) is not None
    _same_answers(compiled, original, rows)
    objects = [{f"Column_{i}": v for i, v in enumerate(row) if v is not None} for row in rows]
    _same_answers(compiled, original, objects)


# --- contract ------------------------------------------------------------------------------


def test_compiled_file_belongs_to_its_model(models: Callable[[str], Path], tmp_path: Path) -> None:
    folder = models("array_lr")
    result = compile_model(folder, tmp_path / "compiled", framework="SCIKIT_LEARN")
    assert result.path is not None
    copy = _save(tmp_path / "retrained", LogisticRegression().fit([[0, 1, 2], [2, 1, 0]], [0, 1]))
    with pytest.raises(FailedPrecondition, match="changed since"):
        load_compiled(copy, tmp_path / "compiled", framework="SCIKIT_LEARN")
    with pytest.raises(FailedPrecondition, match=r"holds no model\.onnx"):
        load_compiled(folder, tmp_path / "nothing", framework="SCIKIT_LEARN")
    onnx_only = tmp_path / "onnx"
    onnx_only.mkdir()
    (onnx_only / "model.onnx").write_bytes(result.path.read_bytes())
    refused = compile_model(onnx_only, tmp_path / "again", framework="ONNX")
    assert refused.path is None and "only SCIKIT_LEARN, XGBOOST, LIGHTGBM" in refused.reason
