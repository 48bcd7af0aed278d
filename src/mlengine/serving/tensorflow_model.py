"""Serve a TensorFlow SavedModel (``saved_model.pb`` + ``variables/``), where TensorFlow is
installed (``pip install 'mlengine[tf]'``); without it such a directory is refused when the
version is created.

The signature (spec §3.1): the request's ``signature_name``; when it is absent, the only
signature if there is one, else ``serving_default``. An unknown name is an error listing
the signatures.

How instances become the signature's inputs (spec §3.2), batched into one call:

* **objects**: keyed by input alias, columnarised (list of objects → one list per alias)
  and fed as one tensor per alias. An unknown key is "Unexpected tensor name"; an alias
  present in some instances but not all, "Input X was missing in at least one input
  instance".
* **rows**: for a signature with one input, each instance is that input's value (a
  scalar, a nested list); ``{"alias": value}`` also works.
* ``{"b64": "<base64>"}`` anywhere in an instance is decoded to bytes (binary inputs).

Outputs: rowified to one prediction per instance — an object keyed by output alias when the
signature has several outputs, the bare value when it has one. String outputs are UTF-8
text, except for aliases ending in ``_bytes``, which are ``{"b64": …}``.

Probe: ``input_example.json``, else one instance of zeros (``""`` for strings) when every
input's shape beyond the batch dimension is known; else none.
Threads: TensorFlow's intra-op pool (process-wide, and only before TensorFlow first runs).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.errors import FailedPrecondition, InvalidArgument
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import check_instances, filled_value, read_input_example
from mlengine.serving.outputs import batch_rows
from mlengine.serving.predictor import first_line, load_failure

DEFAULT_SIGNATURE = "serving_default"


def load(saved_model_dir: Path, *, threads: int = 1) -> TensorflowPredictor:
    """Load the SavedModel in ``saved_model_dir`` (tag ``serve``)."""
    tf = import_framework("tensorflow", needed_for=f"{saved_model_dir} (TENSORFLOW)")
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # TensorFlow already ran: its pools keep their size
        pass
    try:
        loaded = tf.saved_model.load(str(saved_model_dir), tags=["serve"])
    except Exception as exc:  # TensorFlow raises OSError, ValueError, its own errors…
        raise load_failure(saved_model_dir / "saved_model.pb", "a SavedModel", exc) from exc
    signatures = dict(loaded.signatures)
    if not signatures:
        raise FailedPrecondition(
            f"the SavedModel in {saved_model_dir} has no signatures; export it with "
            f"signatures={{'{DEFAULT_SIGNATURE}': …}}",
            field="deploymentUri",
        )
    return TensorflowPredictor(tf, loaded, signatures, saved_model_dir)


class TensorflowPredictor:
    """A SavedModel's signatures serving JSON instances (see the module docstring)."""

    framework = "TENSORFLOW"

    def __init__(
        self, tf: Any, loaded: Any, signatures: Mapping[str, Any], model_dir: Path
    ) -> None:
        self._tf = tf
        self._loaded = loaded  # the signatures reference its variables: keep it alive
        self.signatures = dict(signatures)
        self.model_dir = model_dir

    def predict(
        self, instances: list[Any], signature_name: str | None = None, **kwargs: Any
    ) -> list[Any]:
        check_instances(instances)
        function = self._signature(signature_name)
        specs: Mapping[str, Any] = function.structured_input_signature[1]
        feed = {
            alias: self._tensor(alias, values, specs[alias])
            for alias, values in _columns(instances, list(specs)).items()
        }
        try:
            outputs = function(**feed)
        except (ValueError, TypeError, self._tf.errors.OpError) as exc:
            raise InvalidArgument(
                f"Prediction failed: Error during model execution: {first_line(exc)}",
                field="instances",
            ) from exc
        arrays = {
            str(alias): _plain(str(alias), tensor.numpy()) for alias, tensor in outputs.items()
        }
        rows = batch_rows(arrays, len(instances))
        if len(arrays) == 1:
            (alias,) = arrays
            return [row[alias] for row in rows]
        return rows

    def probe_instances(self) -> list[Any] | None:
        example = read_input_example(self.model_dir)
        if example is not None:
            return example
        function = self._signature(None)
        instance: dict[str, Any] = {}
        for alias, spec in function.structured_input_signature[1].items():
            dims = spec.shape.as_list() if spec.shape.rank is not None else None
            if not dims or any(d is None for d in dims[1:]):
                return None
            fill: Any = {"string": "", "bool": False}.get(spec.dtype.name, 0)
            instance[alias] = filled_value(dims[1:], fill)
        return [instance]

    def _signature(self, name: str | None) -> Any:
        if name is None and len(self.signatures) == 1:
            return next(iter(self.signatures.values()))
        key = name or DEFAULT_SIGNATURE
        if key not in self.signatures:
            raise InvalidArgument(
                f"No signature found for signature key {key!r}; the model has "
                f"{sorted(self.signatures)}",
                field="signature_name",
            )
        return self.signatures[key]

    def _tensor(self, alias: str, values: list[Any], spec: Any) -> Any:
        try:
            return self._tf.constant(_decode_b64(values), dtype=spec.dtype)
        except (TypeError, ValueError) as exc:
            raise InvalidArgument(
                f"Invalid inputs: input {alias!r} does not fit {spec.dtype.name} "
                f"{spec.shape}: {first_line(exc)}",
                field=f"instances[].{alias}",
            ) from exc


def _columns(instances: list[Any], aliases: list[str]) -> dict[str, list[Any]]:
    """Columnarise instances per spec §3.2 (list of objects → one list per alias)."""
    if len(aliases) == 1:
        (alias,) = aliases
        values = []
        for index, instance in enumerate(instances):
            if isinstance(instance, Mapping) and set(instance) != {alias}:
                raise InvalidArgument(
                    f"instance {index}: Expected tensor name: {alias}",
                    field=f"instances[{index}]",
                )
            values.append(instance[alias] if isinstance(instance, Mapping) else instance)
        return {alias: values}
    columns: dict[str, list[Any]] = {}
    for index, instance in enumerate(instances):
        if not isinstance(instance, Mapping):
            raise InvalidArgument(
                f"instance {index} must be an object keyed by input alias {sorted(aliases)}",
                field=f"instances[{index}]",
            )
        for key in instance:
            if key not in aliases:
                raise InvalidArgument(
                    f"Unexpected tensor name: {key}", field=f"instances[{index}].{key}"
                )
            columns.setdefault(key, []).append(instance[key])
    for alias in aliases:
        if len(columns.get(alias, ())) != len(instances):
            raise InvalidArgument(
                f"Input {alias} was missing in at least one input instance",
                field=f"instances[].{alias}",
            )
    return columns


def _decode_b64(value: Any) -> Any:
    """``{"b64": "..."}`` → bytes, anywhere in ``value``."""
    if isinstance(value, Mapping):
        if set(value) == {"b64"}:
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, TypeError) as exc:
                raise InvalidArgument(f"a b64 value is not base64: {exc}") from exc
        return {key: _decode_b64(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_decode_b64(item) for item in value]
    return value


def _plain(alias: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """String outputs as text, unless the alias ends in ``_bytes`` (then base64 later)."""
    if array.dtype.kind not in "OS" or alias.endswith("_bytes"):
        return array
    text = np.vectorize(
        lambda item: item.decode("utf-8", "replace") if isinstance(item, bytes) else item,
        otypes=[object],
    )
    result: np.ndarray[Any, Any] = text(array)
    return result
