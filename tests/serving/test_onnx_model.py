"""OnnxModel on tiny hand-built graphs: named inputs, defaults, coercion, errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import TensorProto  # noqa: E402
from onnx import helper as oh  # noqa: E402

from mlengine.domain.errors import Internal, InvalidArgument  # noqa: E402
from mlengine.serving.onnx_model import DEFAULTS_KEY, OnnxModel  # noqa: E402


def _save(graph: onnx.GraphProto, folder: Path, defaults: dict[str, object] | None = None) -> Path:
    model = oh.make_model(graph, opset_imports=[oh.make_opsetid("", 17)], ir_version=8)
    if defaults is not None:
        oh.set_model_props(model, {DEFAULTS_KEY: json.dumps(defaults)})
    onnx.checker.check_model(model)
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(folder / "model.onnx"))
    return folder


@pytest.fixture
def named_model(tmp_path: Path) -> OnnxModel:
    """``x`` float [N] and ``s`` string [N] → ``y = 2x`` and ``t = s``; both have defaults."""
    graph = oh.make_graph(
        [
            oh.make_node("Mul", ["x", "two"], ["y"]),
            oh.make_node("Identity", ["s"], ["t"]),
        ],
        "named",
        [
            oh.make_tensor_value_info("x", TensorProto.FLOAT, ["N"]),
            oh.make_tensor_value_info("s", TensorProto.STRING, ["N"]),
        ],
        [
            oh.make_tensor_value_info("y", TensorProto.FLOAT, ["N"]),
            oh.make_tensor_value_info("t", TensorProto.STRING, ["N"]),
        ],
        [oh.make_tensor("two", TensorProto.FLOAT, [], [2.0])],
    )
    return OnnxModel.from_path(str(_save(graph, tmp_path / "named", {"x": None, "s": "none"})))


@pytest.fixture
def vector_model(tmp_path: Path) -> OnnxModel:
    """One input ``v`` float [N, 3], no defaults → ``total`` = row sums [N]."""
    graph = oh.make_graph(
        [oh.make_node("ReduceSum", ["v", "axis"], ["total"], keepdims=0)],
        "vector",
        [oh.make_tensor_value_info("v", TensorProto.FLOAT, ["N", 3])],
        [oh.make_tensor_value_info("total", TensorProto.FLOAT, ["N"])],
        [oh.make_tensor("axis", TensorProto.INT64, [1], [1])],
    )
    return OnnxModel.from_path(str(_save(graph, tmp_path / "vector")))


@pytest.fixture
def column_model(tmp_path: Path) -> OnnxModel:
    """``a`` int64 [N, 1] and ``b`` float [N] without defaults → ``a`` + 1."""
    graph = oh.make_graph(
        [
            oh.make_node("Add", ["a", "one"], ["next"]),
            oh.make_node("Identity", ["b"], ["b_out"]),
        ],
        "column",
        [
            oh.make_tensor_value_info("a", TensorProto.INT64, ["N", 1]),
            oh.make_tensor_value_info("b", TensorProto.FLOAT, ["N"]),
        ],
        [
            oh.make_tensor_value_info("next", TensorProto.INT64, ["N", 1]),
            oh.make_tensor_value_info("b_out", TensorProto.FLOAT, ["N"]),
        ],
        [oh.make_tensor("one", TensorProto.INT64, [], [1])],
    )
    return OnnxModel.from_path(str(_save(graph, tmp_path / "column")))


def test_named_inputs_are_fed_and_outputs_are_plain_python(named_model: OnnxModel) -> None:
    result = named_model.predict([{"x": 1.5, "s": "a"}, {"x": 4, "s": "b"}])
    assert result == [{"y": 3.0, "t": "a"}, {"y": 8.0, "t": "b"}]
    assert type(result[0]["y"]) is float and type(result[0]["t"]) is str
    json.dumps(result)


def test_missing_and_null_fields_take_the_metadata_defaults(named_model: OnnxModel) -> None:
    result = named_model.predict([{"s": "only s"}, {"x": 2.0}, {"x": None, "s": None}])
    assert math.isnan(result[0]["y"]) and result[0]["t"] == "only s"
    assert result[1] == {"y": 4.0, "t": "none"}
    assert math.isnan(result[2]["y"]) and result[2]["t"] == "none"


def test_values_are_coerced_to_the_input_type(named_model: OnnxModel) -> None:
    result = named_model.predict([{"x": "2.5", "s": 7}, {"x": True, "s": 1.5}])
    assert result == [{"y": 5.0, "t": "7"}, {"y": 2.0, "t": "1.5"}]


def test_single_input_model_takes_bare_lists(vector_model: OnnxModel) -> None:
    result = vector_model.predict([[1, 2, 3], [0.5, 0.5, 0.5], {"v": [1, 1, 1]}])
    assert result == [{"total": 6.0}, {"total": 1.5}, {"total": 3.0}]


def test_scalars_are_lifted_to_a_trailing_dimension_of_one(column_model: OnnxModel) -> None:
    lifted = column_model.predict([{"a": 4, "b": 1}, {"a": "3.0", "b": 0}])
    assert [r["next"] for r in lifted] == [[5], [4]]
    as_declared = column_model.predict([{"a": [9], "b": "2"}])
    assert as_declared == [{"next": [10], "b_out": 2.0}]


def test_a_bad_value_names_the_instance_and_field(named_model: OnnxModel) -> None:
    with pytest.raises(InvalidArgument) as caught:
        named_model.predict([{"x": 1}, {"x": 2}, {"x": "not a number"}])
    assert "instance 2" in caught.value.message
    assert caught.value.field == "instances[2].x"


def test_a_wrong_shape_names_the_instance(vector_model: OnnxModel) -> None:
    with pytest.raises(InvalidArgument) as caught:
        vector_model.predict([[1, 2, 3], [1, 2]])
    assert caught.value.field == "instances[1].v"
    assert "instance 1" in caught.value.message


def test_fractional_values_are_refused_for_integer_inputs(column_model: OnnxModel) -> None:
    with pytest.raises(InvalidArgument) as caught:
        column_model.predict([{"a": 1, "b": 0}, {"a": 2.5, "b": 0}])
    assert caught.value.field == "instances[1].a"


def test_a_field_without_default_is_required(column_model: OnnxModel) -> None:
    with pytest.raises(InvalidArgument) as caught:
        column_model.predict([{"a": 1, "b": 0}, {"a": 1}])
    assert caught.value.field == "instances[1].b"
    assert "lacks" in caught.value.message


def test_unknown_fields_are_refused(named_model: OnnxModel) -> None:
    with pytest.raises(InvalidArgument) as caught:
        named_model.predict([{"x": 1, "hours-per-week": 40}])
    assert caught.value.field == "instances[0].hours-per-week"


def test_multi_input_models_need_objects(named_model: OnnxModel) -> None:
    with pytest.raises(InvalidArgument) as caught:
        named_model.predict([{"x": 1}, [1, 2]])
    assert caught.value.field == "instances[1]"


@pytest.mark.parametrize("instances", [[], "abc", None])
def test_instances_must_be_a_non_empty_list(named_model: OnnxModel, instances: object) -> None:
    with pytest.raises(InvalidArgument):
        named_model.predict(instances)  # type: ignore[arg-type]


def test_inputs_describe_the_signature(named_model: OnnxModel) -> None:
    specs = {spec.name: spec for spec in named_model.inputs}
    assert specs["x"].onnx_type == "tensor(float)" and specs["x"].has_default
    assert specs["s"].is_string and specs["s"].default == "none"
    assert named_model.output_names == ("y", "t")


def test_loads_a_file_path_and_the_only_onnx_file_of_a_dir(tmp_path: Path) -> None:
    graph = oh.make_graph(
        [oh.make_node("Identity", ["v"], ["w"])],
        "identity",
        [oh.make_tensor_value_info("v", TensorProto.FLOAT, ["N"])],
        [oh.make_tensor_value_info("w", TensorProto.FLOAT, ["N"])],
    )
    folder = _save(graph, tmp_path / "odd")
    (folder / "model.onnx").rename(folder / "other.onnx")
    assert OnnxModel.from_path(str(folder)).predict([1.0]) == [{"w": 1.0}]
    assert OnnxModel.from_path(str(folder / "other.onnx")).predict([2]) == [{"w": 2.0}]


def test_missing_or_broken_models_are_invalid_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument):
        OnnxModel.from_path(str(tmp_path / "absent"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(InvalidArgument):
        OnnxModel.from_path(str(tmp_path / "empty"))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(InvalidArgument) as caught:
        OnnxModel.from_path(str(tmp_path / "broken"))
    assert caught.value.field == "deploymentUri"


def test_outputs_that_are_not_batch_major_are_internal_errors(tmp_path: Path) -> None:
    graph = oh.make_graph(
        [oh.make_node("ReduceSum", ["v"], ["total"], keepdims=0)],
        "scalar",
        [oh.make_tensor_value_info("v", TensorProto.FLOAT, ["N"])],
        [oh.make_tensor_value_info("total", TensorProto.FLOAT, [])],
    )
    model = OnnxModel.from_path(str(_save(graph, tmp_path / "scalar")))
    with pytest.raises(Internal):
        model.predict([1.0, 2.0])
