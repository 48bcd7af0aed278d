"""Export the trained DNN as one self-contained ONNX model that takes raw census fields.

The exported graph = string/number preprocessing built here with ``onnx.helper`` + the
network exported by ``torch.onnx.export`` + a class-name lookup:

    8 string inputs [N] ─► StringNormalizer ─► StringSplit ─► LabelEncoder ─► categorical_ids
    5 float32 inputs [N] ─► Unsqueeze ─► Concat ──────────────────────────► numeric_features
    (categorical_ids, numeric_features) ─► DNN ─► probabilities ─► ArgMax/Gather ─► classes

A server therefore needs nothing from this package: vocabularies, normalisation, NaN
imputation and standardisation all live in the graph. ``docs/census-model-format.md``
documents the contract.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import onnx
import torch
from onnx import TensorProto
from onnx import helper as oh

from trainer import data
from trainer.model import CensusDNN, ProbabilityHead

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"
DEFAULTS_KEY = "mlengine.input_defaults"
OPSET = 20  # StringSplit needs ai.onnx 20
ML_OPSET = 3  # LabelEncoder keys_strings/values_int64s
TOLERANCE = 1e-4
_IDS, _NUMERICS, _PROBABILITIES, _CLASSES = (
    "categorical_ids",
    "numeric_features",
    "probabilities",
    "classes",
)


def input_defaults() -> dict[str, str | None]:
    """Value for each input when an instance lacks it: ``""`` (string) or ``None`` (= NaN)."""
    return {c: "" if c in data.CATEGORICAL_COLUMNS else None for c in data.FEATURE_COLUMNS}


def _network_proto(model: CensusDNN) -> onnx.ModelProto:
    """Export ``ids [N,8] int64, numerics [N,5] float32 -> probabilities [N,2]``."""
    sample = (
        torch.zeros(2, len(data.CATEGORICAL_COLUMNS), dtype=torch.int64),
        torch.zeros(2, len(data.NUMERIC_COLUMNS)),
    )
    batch = torch.export.Dim("batch")
    # The exporter warns about optional packages (torchvision) and internal deprecations that
    # say nothing about this model; keep them out of the job log. Real errors still raise.
    exporter_logger = logging.getLogger("torch.onnx")
    previous_level = exporter_logger.level
    exporter_logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.onnx.export(
                ProbabilityHead(model).eval(),
                sample,
                input_names=[_IDS, _NUMERICS],
                output_names=[_PROBABILITIES],
                opset_version=OPSET,
                dynamic_shapes=({0: batch}, {0: batch}),
                dynamo=True,
                verbose=False,
            )
    finally:
        exporter_logger.setLevel(previous_level)
    if program is None:
        raise RuntimeError("torch.onnx.export returned no program")
    proto = program.model_proto
    for value in list(proto.graph.input) + list(proto.graph.output):
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param:
                dim.dim_param = "N"  # one batch name across the merged graph
    return proto


def _categorical_nodes(column: str) -> list[onnx.NodeProto]:
    """Nodes turning string ``column`` [N] into its vocabulary id [N, 1] (0 = unknown).

    StringSplit (no delimiter) drops leading/trailing/repeated spaces. A value of exactly one
    token is looked up; anything else (empty, missing, several words) is unknown. The max over
    the token ids, padded with a zero column, picks the single token's id without needing a
    non-empty token matrix.
    """
    vocab = data.VOCABULARIES[column]
    p = f"preprocess/{column}/"
    return [
        oh.make_node(
            "StringNormalizer", [column], [p + "lower"], case_change_action="LOWER", locale="C"
        ),
        oh.make_node("StringSplit", [p + "lower"], [p + "tokens", p + "count"]),
        oh.make_node(
            "LabelEncoder",
            [p + "tokens"],
            [p + "token_ids"],
            domain="ai.onnx.ml",
            keys_strings=list(vocab),
            values_int64s=list(range(1, len(vocab) + 1)),
            default_int64=data.UNKNOWN_INDEX,
        ),
        oh.make_node("Concat", [p + "token_ids", "preprocess/zeros"], [p + "padded"], axis=1),
        oh.make_node("ReduceMax", [p + "padded", "preprocess/axis1"], [p + "max"], keepdims=0),
        oh.make_node("Equal", [p + "count", "preprocess/one"], [p + "single"]),
        oh.make_node("Where", [p + "single", p + "max", "preprocess/unknown"], [p + "id"]),
        oh.make_node("Unsqueeze", [p + "id", "preprocess/axis1"], [p + "column"]),
    ]


def _preprocessing_proto(ir_version: int) -> onnx.ModelProto:
    """Graph from the 13 named raw inputs to ``categorical_ids`` and ``numeric_features``."""
    zero = oh.make_tensor("zero", TensorProto.INT64, [1], [0])
    nodes = [
        oh.make_node("Shape", [data.CATEGORICAL_COLUMNS[0]], ["preprocess/batch"]),
        oh.make_node(
            "Concat", ["preprocess/batch", "preprocess/one"], ["preprocess/zshape"], axis=0
        ),
        oh.make_node("ConstantOfShape", ["preprocess/zshape"], ["preprocess/zeros"], value=zero),
    ]
    for column in data.CATEGORICAL_COLUMNS:
        nodes += _categorical_nodes(column)
    id_columns = [f"preprocess/{c}/column" for c in data.CATEGORICAL_COLUMNS]
    nodes.append(oh.make_node("Concat", id_columns, [_IDS], axis=1))
    numeric_columns = [f"preprocess/{c}" for c in data.NUMERIC_COLUMNS]
    for column, lifted in zip(data.NUMERIC_COLUMNS, numeric_columns, strict=True):
        nodes.append(oh.make_node("Unsqueeze", [column, "preprocess/axis1"], [lifted]))
    nodes.append(oh.make_node("Concat", numeric_columns, [_NUMERICS], axis=1))
    string, number = TensorProto.STRING, TensorProto.FLOAT
    inputs = [oh.make_tensor_value_info(c, string, ["N"]) for c in data.CATEGORICAL_COLUMNS]
    inputs += [oh.make_tensor_value_info(c, number, ["N"]) for c in data.NUMERIC_COLUMNS]
    outputs = [
        oh.make_tensor_value_info(_IDS, TensorProto.INT64, ["N", len(id_columns)]),
        oh.make_tensor_value_info(_NUMERICS, number, ["N", len(numeric_columns)]),
    ]
    constants = [
        oh.make_tensor("preprocess/one", TensorProto.INT64, [1], [1]),
        oh.make_tensor("preprocess/axis1", TensorProto.INT64, [1], [1]),
        oh.make_tensor("preprocess/unknown", TensorProto.INT64, [], [data.UNKNOWN_INDEX]),
    ]
    graph = oh.make_graph(nodes, "census_preprocessing", inputs, outputs, constants)
    opsets = [oh.make_opsetid("", OPSET), oh.make_opsetid("ai.onnx.ml", ML_OPSET)]
    return oh.make_model(graph, opset_imports=opsets, ir_version=ir_version)


def _add_class_names(model: onnx.ModelProto) -> None:
    """Append ``classes`` (string [N]): the label of the most probable class."""
    graph = model.graph
    graph.initializer.append(
        oh.make_tensor(
            "postprocess/labels",
            TensorProto.STRING,
            [len(data.LABELS)],
            [label.encode() for label in data.LABELS],
        )
    )
    graph.node.extend(
        [
            oh.make_node("ArgMax", [_PROBABILITIES], ["postprocess/best"], axis=1, keepdims=0),
            oh.make_node("Gather", ["postprocess/labels", "postprocess/best"], [_CLASSES], axis=0),
        ]
    )
    graph.output.append(oh.make_tensor_value_info(_CLASSES, TensorProto.STRING, ["N"]))


def build_onnx(model: CensusDNN, metadata: Mapping[str, Any]) -> onnx.ModelProto:
    """The complete serving graph, checked, with ``mlengine.input_defaults`` in its metadata."""
    network = _network_proto(model)
    if not any(o.domain == "ai.onnx.ml" for o in network.opset_import):
        network.opset_import.append(oh.make_opsetid("ai.onnx.ml", ML_OPSET))
    pre = _preprocessing_proto(network.ir_version)
    merged = onnx.compose.merge_models(
        pre, network, io_map=[(_IDS, _IDS), (_NUMERICS, _NUMERICS)], name="census_dnn"
    )
    _add_class_names(merged)
    merged.producer_name = "census-pytorch-trainer"
    oh.set_model_props(
        merged,
        {
            DEFAULTS_KEY: json.dumps(input_defaults()),
            "mlengine.labels": json.dumps(list(data.LABELS)),
            "mlengine.metadata": json.dumps(metadata, sort_keys=True),
        },
    )
    onnx.checker.check_model(merged, full_check=True)
    return merged


def _verification_feed(table: data.CensusTable, rows: int) -> dict[str, np.ndarray]:
    """Raw inputs from ``table`` with case and spacing disturbed, to exercise normalisation."""
    feed: dict[str, np.ndarray] = {}
    for i, column in enumerate(data.CATEGORICAL_COLUMNS):
        values = ["" if v is None else v for v in table.categorical[column][:rows]]
        styles = (str.upper, lambda v: f"  {v} ", str.lower, lambda v: v)
        feed[column] = np.array([styles[(j + i) % 4](v) for j, v in enumerate(values)], object)
    for column in data.NUMERIC_COLUMNS:
        feed[column] = table.numeric[column][:rows].astype(np.float32)
    return feed


def verify(onnx_path: str, model: CensusDNN, table: data.CensusTable, rows: int = 256) -> float:
    """Compare onnxruntime with torch on ``rows`` rows; raise ``RuntimeError`` on mismatch.

    Returns the largest absolute probability difference seen.
    """
    import onnxruntime

    feed = _verification_feed(table, rows)
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = 1
    session = onnxruntime.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    got, classes = session.run([_PROBABILITIES, _CLASSES], feed)
    ids = np.stack([data.encode(c, feed[c]) for c in data.CATEGORICAL_COLUMNS], axis=1)
    numerics = np.stack([feed[c] for c in data.NUMERIC_COLUMNS], axis=1)
    with torch.no_grad():
        expected = ProbabilityHead(model).eval()(torch.as_tensor(ids), torch.as_tensor(numerics))
    gap = float(np.max(np.abs(got - expected.numpy()), initial=0.0))
    labels = np.array(data.LABELS, dtype=object)[expected.numpy().argmax(axis=1)]
    if gap > TOLERANCE or not np.array_equal(classes, labels):
        raise RuntimeError(
            f"exported ONNX model disagrees with the torch model: max |Δp| = {gap:.3g} "
            f"(tolerance {TOLERANCE}); class names equal: {np.array_equal(classes, labels)}"
        )
    return gap


def _publish(staging: str, target: str) -> None:
    """Move the finished ``staging`` dir to ``target``, replacing an older export whole."""
    if "://" in target:
        import fsspec

        fs, path = fsspec.core.url_to_fs(target)
        fs.put(staging, path, recursive=True)
        shutil.rmtree(staging)
        return
    old = None
    if os.path.exists(target):
        old = tempfile.mkdtemp(prefix=".model-old-", dir=os.path.dirname(target))
        os.replace(target, os.path.join(old, "model"))
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export(
    model: CensusDNN, job_dir: str, table: data.CensusTable, metadata: Mapping[str, Any]
) -> str:
    """Write ``<job_dir>/model/{model.onnx,metadata.json}`` after verifying it on ``table``.

    The directory appears complete or not at all: files are written to a temporary sibling
    (a local temp dir for remote job dirs) and renamed into place. Returns the model dir.
    """
    target = job_dir.rstrip("/") + "/model"
    local_parent = None if "://" in job_dir else job_dir
    if local_parent is not None:
        os.makedirs(local_parent, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".model-", dir=local_parent)
    try:
        proto = build_onnx(model, metadata)
        path = os.path.join(staging, MODEL_FILE)
        onnx.save(proto, path)
        gap = verify(path, model, table)
        described = dict(metadata, verification_max_abs_diff=gap, **_feature_description())
        with open(os.path.join(staging, METADATA_FILE), "w", encoding="utf-8") as out:
            json.dump(described, out, indent=2, sort_keys=True)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from a server user
        _publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return target


def _feature_description() -> dict[str, Any]:
    return {
        "inputs": {
            c: "string [N]" if c in data.CATEGORICAL_COLUMNS else "float32 [N]"
            for c in data.FEATURE_COLUMNS
        },
        "input_defaults": input_defaults(),
        "outputs": {_PROBABILITIES: "float32 [N, 2]", _CLASSES: "string [N]"},
        "labels": list(data.LABELS),
        "vocabularies": {c: list(v) for c, v in data.VOCABULARIES.items()},
        "unknown_index": data.UNKNOWN_INDEX,
    }
