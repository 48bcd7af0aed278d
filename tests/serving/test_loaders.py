"""Every framework loader on a tiny model the test trains itself, through load_predictor."""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any

import pytest

np = pytest.importorskip("numpy")
orjson = pytest.importorskip("orjson")

from mlengine.domain.errors import FailedPrecondition, InvalidArgument  # noqa: E402
from mlengine.serving.predictor import Predictor, load_predictor  # noqa: E402

pytestmark = [
    # TorchScript is deprecated upstream but still what many model.pt files are.
    pytest.mark.filterwarnings("ignore:`torch.jit.*` is deprecated:DeprecationWarning"),
    # XGBoost names model.bst's format on save and load ("UBJSON as a guess").
    pytest.mark.filterwarnings("ignore:.*UBJSON:UserWarning"),
]

ROWS = [[0.1, 0.9, 0.5], [0.8, 0.2, 0.4], [0.6, 0.7, 0.1]]


def _train_data(rows: int = 40) -> tuple[Any, Any]:
    features = np.random.RandomState(0).rand(rows, 3)
    return features, (features[:, 0] > 0.5).astype(int)


def predict(predictor: Predictor, instances: list[Any], **kwargs: Any) -> list[Any]:
    """Predict and check the contract: one JSON-serialisable prediction per instance."""
    predictions = predictor.predict(instances, **kwargs)
    assert isinstance(predictions, list) and len(predictions) == len(instances)
    assert orjson.loads(orjson.dumps(predictions)) is not None
    return predictions


def probe(predictor: Predictor) -> list[Any]:
    """The probe instances exist and the model predicts them."""
    instances = predictor.probe_instances()
    assert instances
    predict(predictor, instances)
    return instances


# --- scikit-learn -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sklearn_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A LogisticRegression fitted on a bare array, saved with joblib."""
    joblib = pytest.importorskip("joblib")
    linear_model = pytest.importorskip("sklearn.linear_model")
    model = linear_model.LogisticRegression().fit(*_train_data())
    folder = tmp_path_factory.mktemp("sklearn")
    joblib.dump(model, folder / "model.joblib")
    return folder


@pytest.fixture(scope="module")
def pipeline_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Pipeline(ColumnTransformer on named columns, LogisticRegression), pickled."""
    pd = pytest.importorskip("pandas")
    pytest.importorskip("sklearn")
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    frame = pd.DataFrame(
        {"age": [20, 30, 40, 50, 25, 60, 35, 45], "job": ["a", "b", "a", "c", "b", "c", "a", "c"]}
    )
    labels = ["no", "yes", "no", "yes", "no", "yes", "no", "yes"]
    columns = ColumnTransformer(
        [
            ("numbers", StandardScaler(), ["age"]),
            ("words", OneHotEncoder(handle_unknown="ignore"), ["job"]),
        ]
    )
    model = Pipeline([("columns", columns), ("classifier", LogisticRegression())])
    model.fit(frame, labels)
    folder = tmp_path_factory.mktemp("pipeline")
    (folder / "model.pkl").write_bytes(pickle.dumps(model))
    return folder


def test_sklearn_rows_become_an_array(sklearn_dir: Path) -> None:
    predictor = load_predictor(sklearn_dir)
    assert isinstance(predictor, Predictor) and predictor.framework == "SCIKIT_LEARN"
    assert predict(predictor, ROWS) == [0, 1, 1]
    assert all(type(label) is int for label in predictor.predict(ROWS))


def test_sklearn_probabilities_on_request(sklearn_dir: Path) -> None:
    predictor = load_predictor(sklearn_dir)
    rows = predict(predictor, ROWS, probabilities=True)
    assert all(len(row) == 2 and math.isclose(sum(row), 1.0) for row in rows)
    assert rows[0][0] > 0.5 > rows[1][0]
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict(ROWS, probabilities="yes")
    assert caught.value.field == "probabilities"


def test_sklearn_signature_name_is_dropped_and_other_keys_reach_predict(
    sklearn_dir: Path,
) -> None:
    predictor = load_predictor(sklearn_dir)
    assert predict(predictor, ROWS, signature_name="serving_default") == [0, 1, 1]
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict(ROWS, unknown_option=1)
    assert "unknown_option" in caught.value.message


def test_sklearn_rows_of_the_wrong_width_name_the_instance(sklearn_dir: Path) -> None:
    predictor = load_predictor(sklearn_dir)
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[1, 2, 3], [1, 2, 3, 4], [1, 2, 3]])
    assert caught.value.field == "instances[1]"
    with pytest.raises(InvalidArgument):
        predictor.predict([[1, 2, 3], [1, 2]])  # ragged


def test_sklearn_probe_is_a_row_of_zeros(sklearn_dir: Path) -> None:
    assert probe(load_predictor(sklearn_dir)) == [[0.0, 0.0, 0.0]]


def test_pipeline_objects_become_a_dataframe_in_fit_order(pipeline_dir: Path) -> None:
    predictor = load_predictor(pipeline_dir)
    assert predictor.framework == "SCIKIT_LEARN"
    young, old = {"job": "a", "age": 21}, {"age": 58, "job": "c"}  # keys in any order
    assert predict(predictor, [young, old]) == ["no", "yes"]
    unseen_job = predict(predictor, [{"age": 59, "job": "never seen"}])
    assert unseen_job == ["yes"]
    probabilities = predict(predictor, [young], probabilities=True)
    assert len(probabilities[0]) == 2


def test_pipeline_rows_take_the_feature_names(pipeline_dir: Path) -> None:
    predictor = load_predictor(pipeline_dir)
    assert predict(predictor, [[21, "a"], [58, "c"]]) == ["no", "yes"]
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[21, "a"], [58]])
    assert caught.value.field == "instances[1]" and "age, job" in caught.value.message


def test_pipeline_refuses_unknown_fields_and_reports_model_errors(pipeline_dir: Path) -> None:
    predictor = load_predictor(pipeline_dir)
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"age": 30, "job": "a"}, {"age": 30, "hours-per-week": 40}])
    assert caught.value.field == "instances[1].hours-per-week"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"job": "a"}])  # age missing: NaN, which the scaler+LR refuse
    assert caught.value.field == "instances"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"age": 30, "job": "a"}, [30, "a"]])
    assert caught.value.field == "instances[1]"


def test_pipeline_probe_takes_categories_from_the_fitted_encoder(pipeline_dir: Path) -> None:
    assert probe(load_predictor(pipeline_dir)) == [{"age": 0.0, "job": "a"}]


def test_input_example_file_is_the_probe(pipeline_dir: Path, tmp_path: Path) -> None:
    folder = tmp_path / "with-example"
    folder.mkdir()
    (folder / "model.pkl").write_bytes((pipeline_dir / "model.pkl").read_bytes())
    example = [{"age": 33, "job": "b"}]
    (folder / "input_example.json").write_text(json.dumps({"instances": example}))
    assert probe(load_predictor(folder)) == example
    (folder / "input_example.json").write_text('{"not": "instances"}')
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(folder).probe_instances()
    assert "input_example.json" in caught.value.message


def test_pickles_are_refused_when_not_allowed(sklearn_dir: Path, pipeline_dir: Path) -> None:
    for folder in (sklearn_dir, pipeline_dir):
        with pytest.raises(FailedPrecondition) as caught:
            load_predictor(folder, allow_pickle=False)
        assert "pickle" in caught.value.message and "runs code" in caught.value.message
        assert caught.value.field == "deploymentUri"


def test_corrupt_pickles_fail_with_the_reason(tmp_path: Path) -> None:
    (tmp_path / "model.joblib").write_bytes(b"this is not a pickle")
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(tmp_path)
    assert "model.joblib" in caught.value.message and "cannot be unpickled" in caught.value.message
    (tmp_path / "model.joblib").unlink()
    (tmp_path / "model.pkl").write_bytes(b"\x80\x04\x95")  # truncated
    with pytest.raises(FailedPrecondition):
        load_predictor(tmp_path)


def test_a_pickle_of_code_the_server_lacks_names_the_module(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(b"cmlengine_test_absent_module\nThing\n.")
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(tmp_path)
    assert "mlengine_test_absent_module" in caught.value.message
    assert "packageUris" in caught.value.message


def test_a_pickle_of_user_code_loads_with_its_package(tmp_path: Path) -> None:
    package = tmp_path / "package"
    package.mkdir()
    (package / "mlengine_test_halver.py").write_text(
        "class Halver:\n"
        "    def predict(self, rows):\n"
        "        return [sum(row) / 2 for row in rows]\n"
    )
    # The pickle names mlengine_test_halver.Halver without the module being importable here.
    (tmp_path / "model.pkl").write_bytes(b"cmlengine_test_halver\nHalver\n)\x81.")
    with pytest.raises(FailedPrecondition):
        load_predictor(tmp_path)
    predictor = load_predictor(tmp_path, package_paths=[package])
    assert predict(predictor, [[1, 3], [2, 2]]) == [2.0, 2.0]
    assert predictor.probe_instances() is None


def test_an_object_without_predict_is_refused(tmp_path: Path) -> None:
    (tmp_path / "model.pkl").write_bytes(pickle.dumps({"weights": [1, 2]}))
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(tmp_path)
    assert "no predict method" in caught.value.message


# --- XGBoost ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def xgboost_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Boosters with feature names (model.json), without (model.ubj), multiclass (model.bst)."""
    xgboost = pytest.importorskip("xgboost")
    features, labels = _train_data()
    params = {"objective": "binary:logistic", "nthread": 1, "max_depth": 2}
    named = xgboost.train(
        params, xgboost.DMatrix(features, label=labels, feature_names=["a", "b", "c"]), 4
    )
    bare = xgboost.train(params, xgboost.DMatrix(features, label=labels), 4)
    classes = (features[:, 0] * 3).astype(int)
    multi = xgboost.train(
        {"objective": "multi:softprob", "num_class": 3, "nthread": 1, "max_depth": 2},
        xgboost.DMatrix(features, label=classes),
        4,
    )
    folders = {}
    for name, booster, file in (
        ("named", named, "model.json"),
        ("bare", bare, "model.ubj"),
        ("multi", multi, "model.bst"),
    ):
        folders[name] = tmp_path_factory.mktemp(f"xgboost-{name}")
        booster.save_model(str(folders[name] / file))
    pickled = tmp_path_factory.mktemp("xgboost-pickled")
    (pickled / "model.joblib").write_bytes(pickle.dumps(named))
    folders["pickled"] = pickled
    return folders


def test_xgboost_rows_and_objects(xgboost_dirs: dict[str, Path]) -> None:
    predictor = load_predictor(xgboost_dirs["named"])
    assert isinstance(predictor, Predictor) and predictor.framework == "XGBOOST"
    from_rows = predict(predictor, ROWS)
    assert all(type(p) is float and 0 < p < 1 for p in from_rows)
    assert from_rows[0] < 0.5 < from_rows[1]
    objects = [dict(zip("abc", row, strict=True)) for row in ROWS]
    assert predict(predictor, objects) == from_rows
    with_missing = predict(predictor, [{"a": 0.9}, {"a": 0.9, "b": None, "c": "0.5"}])
    assert with_missing[0] == with_missing[1]


def test_xgboost_instance_errors(xgboost_dirs: dict[str, Path]) -> None:
    predictor = load_predictor(xgboost_dirs["named"])
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"a": 1, "d": 2}])
    assert caught.value.field == "instances[0].d"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[1, 2, 3], [1, 2]])
    assert caught.value.field == "instances[1]"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"a": 1, "b": "many", "c": 3}])
    assert caught.value.field == "instances[0].b"
    bare = load_predictor(xgboost_dirs["bare"])
    with pytest.raises(InvalidArgument) as caught:
        bare.predict([{"a": 1}])
    assert "feature names" in caught.value.message
    assert predict(bare, ROWS) == predict(predictor, ROWS)


def test_xgboost_multiclass_gives_a_list_per_instance(xgboost_dirs: dict[str, Path]) -> None:
    predictor = load_predictor(xgboost_dirs["multi"], framework="XGBOOST")
    rows = predict(predictor, ROWS)
    assert all(len(row) == 3 and math.isclose(sum(row), 1.0, rel_tol=1e-5) for row in rows)
    margins = predict(predictor, ROWS, output_margin=True)
    assert margins != rows


def test_xgboost_probe_and_pickled_booster(xgboost_dirs: dict[str, Path]) -> None:
    assert probe(load_predictor(xgboost_dirs["bare"])) == [[0.0, 0.0, 0.0]]
    pickled = load_predictor(xgboost_dirs["pickled"])
    assert pickled.framework == "XGBOOST"
    assert predict(pickled, ROWS) == predict(load_predictor(xgboost_dirs["named"]), ROWS)
    with pytest.raises(FailedPrecondition):
        load_predictor(xgboost_dirs["pickled"], framework="XGBOOST", allow_pickle=False)


def test_corrupt_xgboost_file(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    (tmp_path / "model.json").write_text("not a model")
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(tmp_path)
    assert "model.json" in caught.value.message and "Stack trace" not in caught.value.message


# --- LightGBM -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lightgbm_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    lightgbm = pytest.importorskip("lightgbm")
    pd = pytest.importorskip("pandas")
    features, labels = _train_data()
    frame = pd.DataFrame(features, columns=["a", "b", "c"])
    params = {"objective": "binary", "num_threads": 1, "verbose": -1, "min_data_in_leaf": 2}
    booster = lightgbm.train(params, lightgbm.Dataset(frame, label=labels), 4)
    folder = tmp_path_factory.mktemp("lightgbm")
    booster.save_model(str(folder / "model.txt"))
    return folder


def test_lightgbm_rows_objects_and_probe(lightgbm_dir: Path) -> None:
    predictor = load_predictor(lightgbm_dir, threads=1)
    assert isinstance(predictor, Predictor) and predictor.framework == "LIGHTGBM"
    from_rows = predict(predictor, ROWS)
    assert from_rows[0] < 0.5 < from_rows[1]
    assert predict(predictor, [dict(zip("abc", row, strict=True)) for row in ROWS]) == from_rows
    assert predict(predictor, ROWS, raw_score=True) != from_rows
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"a": 1, "z": 2}])
    assert caught.value.field == "instances[0].z"
    assert probe(predictor) == [[0.0, 0.0, 0.0]]


def test_corrupt_lightgbm_file(tmp_path: Path) -> None:
    pytest.importorskip("lightgbm")
    (tmp_path / "model.txt").write_text("garbage")
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(tmp_path)
    assert "model.txt" in caught.value.message


# --- ONNX ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``x`` float [N, 2] and ``s`` string [N] → ``y`` = row sums, ``t`` = s."""
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxruntime")
    from onnx import TensorProto
    from onnx import helper as oh

    graph = oh.make_graph(
        [
            oh.make_node("ReduceSum", ["x", "axis"], ["y"], keepdims=0),
            oh.make_node("Identity", ["s"], ["t"]),
        ],
        "two-inputs",
        [
            oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 2]),
            oh.make_tensor_value_info("s", TensorProto.STRING, ["N"]),
        ],
        [
            oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]),
            oh.make_tensor_value_info("t", TensorProto.STRING, ["N"]),
        ],
        [oh.make_tensor("axis", TensorProto.INT64, [1], [1])],
    )
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)
    folder = tmp_path_factory.mktemp("onnx")
    onnx.save(model, str(folder / "model.onnx"))
    return folder


def test_onnx_through_load_predictor(onnx_dir: Path) -> None:
    predictor = load_predictor(onnx_dir, framework="onnx")
    assert isinstance(predictor, Predictor) and predictor.framework == "ONNX"
    result = predict(predictor, [{"x": [1, 2], "s": "a"}], signature_name="ignored")
    assert result == [{"y": 3.0, "t": "a"}]
    assert probe(predictor) == [{"x": [0.0, 0.0], "s": ""}]


def test_corrupt_onnx_file_is_a_failed_precondition(tmp_path: Path) -> None:
    pytest.importorskip("onnxruntime")
    (tmp_path / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(tmp_path)
    assert caught.value.field == "deploymentUri"


# --- PyTorch ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def torch() -> Any:
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    return torch


@pytest.fixture(scope="module")
def torchscript_dirs(torch: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Scripted modules (two inputs → a dict; a parameter with a default), a traced Linear."""

    class TwoInputs(torch.nn.Module):  # type: ignore[misc]
        def forward(self, age: torch.Tensor, hours: torch.Tensor) -> dict[str, torch.Tensor]:
            return {"total": age + hours, "pair": torch.stack([age, hours], dim=1)}

    class Scaled(torch.nn.Module):  # type: ignore[misc]
        def forward(self, x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
            return x * scale

    torch.manual_seed(0)
    linear = torch.nn.Linear(3, 2).eval()
    folders = {"named": tmp_path_factory.mktemp("torchscript-named")}
    torch.jit.script(TwoInputs()).save(str(folders["named"] / "model.pt"))
    folders["default"] = tmp_path_factory.mktemp("torchscript-default")
    torch.jit.script(Scaled()).save(str(folders["default"] / "model.pt"))
    folders["linear"] = tmp_path_factory.mktemp("torchscript-linear")
    torch.jit.trace(linear, torch.zeros(2, 3)).save(str(folders["linear"] / "model.pt"))
    folders["checkpoint"] = tmp_path_factory.mktemp("torch-checkpoint")
    torch.save(linear.state_dict(), str(folders["checkpoint"] / "model.pt"))
    return folders


@pytest.fixture(scope="module")
def exported_dir(torch: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """torch.export of a module taking int64 ids [N, 2] and returning a tuple."""

    class Ids(torch.nn.Module):  # type: ignore[misc]
        def forward(self, ids: Any) -> tuple[Any, Any]:
            return ids.sum(dim=1).float(), ids * 2

    batch = torch.export.Dim("batch")
    example = (torch.tensor([[1, 2], [3, 4]]),)
    program = torch.export.export(Ids(), example, dynamic_shapes=({0: batch},))
    folder = tmp_path_factory.mktemp("exported")
    torch.export.save(program, str(folder / "model.pt2"))
    return folder


def test_torchscript_named_inputs_and_dict_outputs(torchscript_dirs: dict[str, Path]) -> None:
    predictor = load_predictor(torchscript_dirs["named"])
    assert isinstance(predictor, Predictor) and predictor.framework == "PYTORCH"
    result = predict(predictor, [{"age": 30, "hours": 40}, {"hours": "2", "age": 1.5}])
    assert result == [{"total": 70.0, "pair": [30.0, 40.0]}, {"total": 3.5, "pair": [1.5, 2.0]}]
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[30, 40]])
    assert "age, hours" in caught.value.message
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"age": 30, "hours": 40}, {"age": 1}])
    assert caught.value.field == "instances[1].hours"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([{"age": 30, "hours": 40}, {"age": "old", "hours": 1}])
    assert caught.value.field == "instances[1].age"
    assert predictor.probe_instances() is None


def test_torchscript_parameters_with_defaults_are_not_inputs(
    torchscript_dirs: dict[str, Path],
) -> None:
    predictor = load_predictor(torchscript_dirs["default"])
    assert predict(predictor, [[1, 2], [3, 4]]) == [[2.0, 4.0], [6.0, 8.0]]
    assert predict(predictor, [{"x": 1.5}]) == [3.0]


def test_torchscript_rows_become_one_float_batch(
    torch: Any, torchscript_dirs: dict[str, Path]
) -> None:
    predictor = load_predictor(torchscript_dirs["linear"])
    rows = predict(predictor, ROWS)
    module = torch.jit.load(str(torchscript_dirs["linear"] / "model.pt"))
    expected = module(torch.tensor(ROWS, dtype=torch.float32)).tolist()
    assert rows == expected and all(len(row) == 2 for row in rows)
    assert predict(predictor, [{"input": ROWS[0]}]) == expected[:1]  # its one input, by name
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[1, 2, 3], [1, 2]])
    assert caught.value.field == "instances[1]"
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[1, 2]])  # the model's matmul refuses the width
    assert caught.value.field == "instances"


def test_exported_program_keeps_input_types_and_example(exported_dir: Path) -> None:
    predictor = load_predictor(exported_dir)
    assert predictor.framework == "PYTORCH"
    result = predict(predictor, [[1, 2], [5, "6"], [0, 0]])
    assert result[1] == {"output_0": 11.0, "output_1": [10, 12]}
    assert type(result[1]["output_1"][0]) is int
    with pytest.raises(InvalidArgument) as caught:
        predictor.predict([[1, 2], [1, 2.5]])
    assert caught.value.field == "instances[1]" and "whole numbers" in caught.value.message
    assert probe(predictor) == [[1, 2], [3, 4]]


def test_a_torch_save_checkpoint_is_refused_with_the_fix(
    torchscript_dirs: dict[str, Path],
) -> None:
    with pytest.raises(FailedPrecondition) as caught:
        load_predictor(torchscript_dirs["checkpoint"])
    assert "torch.jit" in caught.value.message and "torch.export" in caught.value.message


def test_every_prediction_is_plain_json(
    pipeline_dir: Path, exported_dir: Path, onnx_dir: Path
) -> None:
    for folder in (pipeline_dir, exported_dir, onnx_dir):
        predictor = load_predictor(folder)
        instances = predictor.probe_instances()
        assert instances is not None
        predictions = predictor.predict(instances)
        assert json.loads(json.dumps(predictions)) == predictions
