"""Serve an ONNX model: JSON instances in, one JSON-ready dict per instance out.

Instances follow the v1 online-prediction body (``{"instances": [...]}``):

* an object keyed by input name feeds the model's named inputs; a key the instance lacks (or
  sets to ``null``) takes the value from the model's ``mlengine.input_defaults`` metadata and
  is an error when the model gives no default for it;
* for a model with exactly one input, any other value (a scalar or a nested list) is that
  input's value.

All instances are batched into one ``InferenceSession.run``: every input's first dimension is
the batch. Values are coerced to the input's element type (``"25"`` and ``25`` feed a float
input alike; numbers feed a string input as their ``str``), and a value of rank one less
than an input whose last dimension is 1 is lifted (``25`` feeds ``float [N, 1]``); the
instances of one request use one form.

``mlengine.input_defaults`` (string metadata property) is a JSON object mapping input names to
the value used for an absent field; ``null`` means NaN for float inputs (``""`` for strings).

Outputs: one object per instance keyed by output name, even for a single output. Request
keys other than ``instances`` (``signature_name`` included) are ignored.

Probe: ``input_example.json``, else one object built from the input metadata — ``0`` (or
``""``, ``false``) in each input's per-instance shape — when every input's shape beyond the
batch dimension is fixed; else none.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from mlengine.domain.errors import FailedPrecondition, Internal, InvalidArgument
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import filled_value, read_input_example

DEFAULTS_KEY = "mlengine.input_defaults"
MODEL_FILE = "model.onnx"

_DTYPES: dict[str, npt.DTypeLike] = {
    "tensor(float)": np.float32,
    "tensor(double)": np.float64,
    "tensor(float16)": np.float16,
    "tensor(int64)": np.int64,
    "tensor(int32)": np.int32,
    "tensor(int16)": np.int16,
    "tensor(int8)": np.int8,
    "tensor(uint64)": np.uint64,
    "tensor(uint32)": np.uint32,
    "tensor(uint16)": np.uint16,
    "tensor(uint8)": np.uint8,
    "tensor(bool)": np.bool_,
    "tensor(string)": np.object_,
}
_MISSING = object()


@dataclass(frozen=True)
class InputSpec:
    """One model input: element type, shape (``None``/a name for a free dim), default.

    ``has_default`` tells "no default" apart from a default of ``None`` (NaN).
    """

    name: str
    onnx_type: str
    dtype: np.dtype[Any]
    shape: tuple[int | str | None, ...]
    default: Any = None
    has_default: bool = False

    @property
    def is_string(self) -> bool:
        return self.dtype == np.dtype(np.object_)


def _find_model_file(model_dir: str) -> str:
    """``model_dir`` itself when it is a file, else its ``model.onnx`` or its only ``*.onnx``."""
    if os.path.isfile(model_dir):
        return model_dir
    if not os.path.isdir(model_dir):
        raise InvalidArgument(f"model path {model_dir} does not exist", field="deploymentUri")
    preferred = os.path.join(model_dir, MODEL_FILE)
    if os.path.isfile(preferred):
        return preferred
    found = sorted(f for f in os.listdir(model_dir) if f.endswith(".onnx"))
    if len(found) != 1:
        raise InvalidArgument(
            f"{model_dir} must contain {MODEL_FILE} or exactly one *.onnx file; found {found}",
            field="deploymentUri",
        )
    return os.path.join(model_dir, found[0])


def _read_defaults(metadata: Mapping[str, str], path: str) -> dict[str, Any]:
    raw = metadata.get(DEFAULTS_KEY)
    if raw is None:
        return {}
    try:
        defaults = json.loads(raw)
    except json.JSONDecodeError as exc:
        raise InvalidArgument(f"{path}: metadata {DEFAULTS_KEY} is not JSON: {exc}") from exc
    if not isinstance(defaults, dict):
        raise InvalidArgument(f"{path}: metadata {DEFAULTS_KEY} must be a JSON object")
    return defaults


def _input_specs(session: Any, defaults: Mapping[str, Any], path: str) -> tuple[InputSpec, ...]:
    specs = []
    for node in session.get_inputs():
        if node.type not in _DTYPES:
            raise InvalidArgument(f"{path}: input {node.name!r} has unsupported type {node.type}")
        specs.append(
            InputSpec(
                name=node.name,
                onnx_type=node.type,
                dtype=np.dtype(_DTYPES[node.type]),
                shape=tuple(node.shape),
                default=defaults.get(node.name),
                has_default=node.name in defaults,
            )
        )
    return tuple(specs)


class OnnxModel:
    """A loaded ONNX model that predicts JSON instances (see the module docstring).

    Meets :class:`mlengine.serving.predictor.Predictor`. Thread-safe: onnxruntime sessions
    may run concurrently.
    """

    framework = "ONNX"

    def __init__(self, session: Any, inputs: Sequence[InputSpec], path: str = "") -> None:
        self._session = session
        self.inputs = tuple(inputs)
        self.path = path
        self.output_names: tuple[str, ...] = tuple(o.name for o in session.get_outputs())

    @classmethod
    def from_path(cls, model_dir: str, *, intra_op_threads: int = 1) -> OnnxModel:
        """Load ``model_dir`` (a directory holding ``model.onnx``, or the file itself).

        Raises :class:`InvalidArgument` (field ``deploymentUri``) when no model file is found
        or onnxruntime cannot load it. (:func:`~mlengine.serving.predictor.load_predictor`
        uses :meth:`from_file`, which reports an unloadable file as FailedPrecondition, as
        every framework loader does.)
        """
        path = _find_model_file(model_dir)
        try:
            return cls.from_file(Path(path), intra_op_threads=intra_op_threads)
        except FailedPrecondition as exc:
            raise InvalidArgument(exc.message, field="deploymentUri") from exc

    @classmethod
    def from_file(cls, path: Path, *, intra_op_threads: int = 1) -> OnnxModel:
        """Load the ONNX file ``path``.

        Raises :class:`FailedPrecondition` (field ``deploymentUri``) when onnxruntime is not
        installed or cannot load the file, or the model has an input type JSON cannot feed.
        """
        onnxruntime = import_framework("onnxruntime", needed_for=f"{path.name} (ONNX)")
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = intra_op_threads
        options.inter_op_num_threads = 1
        try:
            session = onnxruntime.InferenceSession(
                str(path), options, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # onnxruntime raises several unrelated exception types
            raise FailedPrecondition(
                f"{path} is not a loadable ONNX model: {exc}", field="deploymentUri"
            ) from exc
        metadata = session.get_modelmeta().custom_metadata_map
        try:
            specs = _input_specs(session, _read_defaults(metadata, str(path)), str(path))
        except InvalidArgument as exc:
            raise FailedPrecondition(exc.message, field="deploymentUri") from exc
        return cls(session, specs, str(path))

    @property
    def model_dir(self) -> Path:
        """The directory of the model file (where ``input_example.json`` may be)."""
        return Path(self.path).parent

    def probe_instances(self) -> list[Any] | None:
        """``input_example.json``, else one instance from the input metadata, else ``None``."""
        example = read_input_example(self.model_dir) if self.path else None
        if example is not None:
            return example
        instance: dict[str, Any] = {}
        for spec in self.inputs:
            if not spec.shape:  # no shape recorded: nothing to build from
                return None
            batch, dims = spec.shape[0], spec.shape[1:]
            fixed = [d for d in dims if isinstance(d, int) and d > 0]
            if len(fixed) != len(dims) or (isinstance(batch, int) and batch > 1):
                return None
            fill: Any = "" if spec.is_string else spec.dtype.type(0).item()
            instance[spec.name] = filled_value(fixed, fill)
        return [instance]

    def predict(self, instances: list[Any], **kwargs: Any) -> list[dict[str, Any]]:
        """One dict ``{output name: JSON-ready value}`` per instance, in order.

        ``kwargs`` (the request's other top-level keys) are ignored.

        Raises :class:`InvalidArgument` naming the instance index and field of a bad instance,
        or (field ``instances``) when the model rejects the batch.
        """
        if not isinstance(instances, list) or not instances:
            raise InvalidArgument("instances must be a non-empty list", field="instances")
        columns = self._columns(instances)
        feed = {spec.name: _to_array(spec, columns[spec.name]) for spec in self.inputs}
        try:
            outputs = self._session.run(list(self.output_names), feed)
        except Exception as exc:  # onnxruntime's errors are not one exception hierarchy
            raise InvalidArgument(
                f"the model rejected the instances: {exc}", field="instances"
            ) from exc
        return _split_outputs(self.output_names, outputs, len(instances))

    def _columns(self, instances: list[Any]) -> dict[str, list[Any]]:
        """Per input, the list of its per-instance values (defaults filled in)."""
        names = {spec.name for spec in self.inputs}
        columns: dict[str, list[Any]] = {spec.name: [] for spec in self.inputs}
        single = self.inputs[0].name if len(self.inputs) == 1 else None
        for index, instance in enumerate(instances):
            if isinstance(instance, dict) and (single is None or set(instance) <= names):
                unknown = sorted(set(instance) - names)
                if unknown:
                    raise InvalidArgument(
                        f"instance {index} has unknown field(s) {unknown}; the model's inputs "
                        f"are {sorted(names)}",
                        field=f"instances[{index}].{unknown[0]}",
                    )
                for spec in self.inputs:
                    columns[spec.name].append(_field_value(spec, instance, index))
            elif single is not None:
                columns[single].append(instance)
            else:
                raise InvalidArgument(
                    f"instance {index} must be an object keyed by input name; the model's "
                    f"inputs are {sorted(names)}",
                    field=f"instances[{index}]",
                )
        return columns


def _field_value(spec: InputSpec, instance: Mapping[str, Any], index: int) -> Any:
    value = instance.get(spec.name, _MISSING)
    if value is not _MISSING and value is not None:
        return value
    if spec.has_default and spec.default is not None:
        return spec.default
    if spec.has_default:  # null: NaN for numbers, the empty string for strings
        return "" if spec.is_string else math.nan
    raise InvalidArgument(
        f"instance {index} lacks the required field {spec.name!r} ({spec.onnx_type})",
        field=f"instances[{index}].{spec.name}",
    )


def _to_array(spec: InputSpec, values: list[Any]) -> npt.NDArray[Any]:
    """Batch ``values`` into ``spec``'s dtype and shape, naming the first bad instance."""
    try:
        array = _convert(spec, values)
    except (TypeError, ValueError, OverflowError):
        for index, value in enumerate(values):
            try:
                _convert(spec, [value])
            except (TypeError, ValueError, OverflowError) as exc:
                raise _bad_value(spec, index, str(exc)) from exc
        array = None  # every value converts alone: they differ in shape
    if array is not None and len(spec.shape) == array.ndim + 1 and spec.shape[-1] == 1:
        array = array.reshape(*array.shape, 1)
    if array is None or not _fits(spec.shape, array.shape):
        index = next((i for i, v in enumerate(values) if not _fits_one(spec.shape, v)), 0)
        expected = _shape_text(spec.shape[1:])
        got = list(np.shape(values[index]))
        raise _bad_value(spec, index, f"expected shape {expected} per instance, got {got}")
    return array


def _fits(declared: tuple[int | str | None, ...], shape: tuple[int, ...]) -> bool:
    """Whether ``shape`` matches ``declared`` (free dims match anything; no shape: anything)."""
    if not declared:
        return True
    if len(declared) != len(shape):
        return False
    return all(
        not isinstance(d, int) or d <= 0 or d == n for d, n in zip(declared, shape, strict=True)
    )


def _fits_one(declared: tuple[int | str | None, ...], value: Any) -> bool:
    """Whether one instance's ``value`` fits ``declared`` minus the batch dim (or minus a 1)."""
    shape = (1, *np.shape(value))
    lifted = declared[:-1] if declared and declared[-1] == 1 else None
    return _fits(declared, shape) or (lifted is not None and _fits(lifted, shape))


def _convert(spec: InputSpec, values: list[Any]) -> npt.NDArray[Any]:
    if spec.is_string:
        array = np.array(values, dtype=object)
        flat = array.reshape(-1)
        for position, item in enumerate(flat):
            if isinstance(item, (int, float)):  # bool is an int
                flat[position] = str(item)
            elif not isinstance(item, str):
                raise TypeError(f"expected a string, got {type(item).__name__}")
        return array
    if np.issubdtype(spec.dtype, np.integer):
        wide = np.array(values, dtype=np.float64)
        if not np.all(np.isfinite(wide)) or np.any(wide != np.round(wide)):
            raise ValueError(f"expected whole numbers for {spec.onnx_type}")
        return wide.astype(spec.dtype)
    return np.array(values, dtype=spec.dtype)


def _bad_value(spec: InputSpec, index: int, reason: str) -> InvalidArgument:
    return InvalidArgument(
        f"instance {index}: field {spec.name!r} does not fit the model input "
        f"{spec.onnx_type} {_shape_text(spec.shape)}: {reason}",
        field=f"instances[{index}].{spec.name}",
    )


def _shape_text(shape: tuple[int | str | None, ...]) -> str:
    return "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"


def _split_outputs(
    names: Sequence[str], outputs: Sequence[Any], count: int
) -> list[dict[str, Any]]:
    """Row ``i`` of every output, converted to plain Python values."""
    results: list[dict[str, Any]] = [{} for _ in range(count)]
    for name, output in zip(names, outputs, strict=True):
        array = np.asarray(output)
        if array.ndim == 0 or array.shape[0] != count:
            raise Internal(
                f"model output {name!r} has shape {list(array.shape)}; expected its first "
                f"dimension to be the batch of {count} instance(s)"
            )
        rows = array.tolist()
        if array.dtype == np.object_:  # string tensors may hold bytes
            rows = [_plain(row) for row in rows]
        for result, row in zip(results, rows, strict=True):
            result[name] = row
    return results


def _plain(value: Any) -> Any:
    """Bytes as text; numbers from ``tolist`` are already plain Python values."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
