"""The shared halves of every loader: instances in (forms, matrices, examples), JSON out."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

np = pytest.importorskip("numpy")

from mlengine.domain.errors import FailedPrecondition, Internal, InvalidArgument  # noqa: E402
from mlengine.serving.instances import (  # noqa: E402
    check_instances,
    feature_matrix,
    filled_value,
    instance_form,
    read_input_example,
)
from mlengine.serving.outputs import batch_rows, json_ready  # noqa: E402


def test_json_ready_makes_plain_python() -> None:
    value = {
        "f": np.float32(0.5),
        "i": np.int64(3),
        "b": np.bool_(True),
        "s": np.str_("x"),
        "raw": b"\x00\xff",
        "array": np.array([[1, 2]], dtype=np.int8),
        "tuple": (np.float64(1.5), None),
        1: "key made a string",
    }
    plain = json_ready(value)
    assert plain == {
        "f": 0.5,
        "i": 3,
        "b": True,
        "s": "x",
        "raw": {"b64": "AP8="},
        "array": [[1, 2]],
        "tuple": [1.5, None],
        "1": "key made a string",
    }
    assert [type(plain[k]) for k in ("f", "i", "b", "s")] == [float, int, bool, str]
    assert json.loads(json.dumps(plain)) == plain
    with pytest.raises(Internal):
        json_ready(object())


def test_batch_rows_splits_arrays_and_dicts_of_arrays() -> None:
    assert batch_rows(np.array([1.5, 2.5]), 2) == [1.5, 2.5]
    assert batch_rows(np.array([[1, 2], [3, 4]]), 2) == [[1, 2], [3, 4]]
    labels = np.array([b"yes", b"no"], dtype=object)
    rows = batch_rows({"p": np.array([0.9, 0.1]), "label": labels}, 2)
    assert rows == [
        {"p": 0.9, "label": {"b64": "eWVz"}},
        {"p": 0.1, "label": {"b64": "bm8="}},
    ]
    assert batch_rows(np.array(["a", "b"]), 2) == ["a", "b"]
    assert math.isnan(batch_rows(np.array([math.nan]), 1)[0])


def test_outputs_must_share_the_batch_dimension() -> None:
    with pytest.raises(Internal) as caught:
        batch_rows({"ok": np.zeros(3), "summary": np.zeros(1)}, 3)
    assert "'summary'" in caught.value.message and "differing sizes" in caught.value.message
    with pytest.raises(Internal):
        batch_rows(np.float32(1.0), 1)


@pytest.mark.parametrize("instances", [[], "abc", None, {"instances": []}])
def test_instances_must_be_a_non_empty_list(instances: object) -> None:
    with pytest.raises(InvalidArgument) as caught:
        check_instances(instances)
    assert caught.value.field == "instances"


def test_instance_forms() -> None:
    assert instance_form([[1, 2], "text", 3]) == "rows"
    assert instance_form([{"a": 1}, {}]) == "objects"
    with pytest.raises(InvalidArgument) as caught:
        instance_form([{"a": 1}, {"a": 2}, [1]])
    assert caught.value.field == "instances[2]"


def test_feature_matrix_from_rows_and_objects() -> None:
    rows = feature_matrix([[1, "2", None], [4, 5, 6]], names=None, width=3)
    assert rows.dtype == np.float64 and rows.shape == (2, 3) and math.isnan(rows[0, 2])
    objects = feature_matrix([{"b": 2, "a": 1}, {"c": 3}], names=["a", "b", "c"], width=3)
    assert objects[0, :2].tolist() == [1.0, 2.0] and math.isnan(objects[1, 0])


@pytest.mark.parametrize(
    ("instances", "field"),
    [
        ([[1, 2, 3], [1, 2]], "instances[1]"),
        ([[1, 2, 3], 4], "instances[1]"),
        ([[1, 2, 3], [1, "two", 3]], "instances[1][1]"),
        ([{"a": 1, "b": "x"}], "instances[0].b"),
        ([{"a": 1, "z": 1}], "instances[0].z"),
    ],
)
def test_feature_matrix_names_the_bad_instance(instances: list[object], field: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        feature_matrix(
            instances, names=["a", "b", "c"] if field.endswith(("b", "z")) else None, width=3
        )
    assert caught.value.field == field


def test_input_example_forms(tmp_path: Path) -> None:
    assert read_input_example(tmp_path) is None
    (tmp_path / "input_example.json").write_text("[[1, 2]]")
    assert read_input_example(tmp_path) == [[1, 2]]
    (tmp_path / "input_example.json").write_text('{"instances": [{"a": 1}]}')
    assert read_input_example(tmp_path) == [{"a": 1}]
    for bad in ("[]", "{", '"text"'):
        (tmp_path / "input_example.json").write_text(bad)
        with pytest.raises(FailedPrecondition):
            read_input_example(tmp_path)


def test_filled_value() -> None:
    assert filled_value([], 0) == 0
    assert filled_value([2, 1], "") == [[""], [""]]
