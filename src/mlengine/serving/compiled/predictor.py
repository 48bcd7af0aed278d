"""The compiled predictor: an onnxruntime session answering exactly as the original model.

:func:`load_compiled` serves ``compiled_dir/model.onnx`` as a
:class:`~mlengine.serving.predictor.Predictor` whose predictions have exactly the JSON shape and
types of ``load_predictor``'s for the same model (``str`` labels stay ``str``, ``int`` stay
``int``; ``"probabilities": true`` works as for scikit-learn).

**Request forms.** Before the probe set, each column is checked alone: a missing value in a
batch, a column missing from every instance (absent, and ``null``), an unknown category. Forms
the original rejects, or the compiled graph does not reproduce, are recorded, and requests
using them — like any request the fast path does not cover (other request keys, values of
another JSON type, unknown fields, a failing graph) — are passed to the original model,
loaded on first need. So every answer is the original's, or verified equal to it.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.errors import FailedPrecondition
from mlengine.serving.compiled.spec import (
    _ABSENT,
    COMPILED_FILE,
    MISSING_STRING,
    SPEC_KEY,
    ColumnSpec,
    CompiledSpec,
)
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import (
    check_instances,
    feature_matrix,
    instance_form,
    read_input_example,
)
from mlengine.serving.predictor import (
    Predictor,
    detect_framework,
    load_predictor,
    model_file,
    resolve_framework,
)

_DTYPES: dict[str, Any] = {"tensor(float)": np.float32, "tensor(double)": np.float64}


class CompiledPredictor:
    """An onnxruntime session answering like the original predictor (module docstring).

    Thread-safe. ``framework`` is the original's; requests outside the verified forms go to
    the original, loaded by ``fallback`` on first need.
    """

    def __init__(
        self,
        session: Any,
        spec: CompiledSpec,
        model_dir: Path,
        fallback: Callable[[], Predictor],
    ) -> None:
        self.framework = spec.serves
        self.spec = spec
        self.model_dir = model_dir
        self._session = session
        self._fallback = fallback
        self._original: Predictor | None = None
        self._lock = threading.Lock()
        inputs = {node.name: node.type for node in session.get_inputs()}
        self._columns = [  # (spec, position, ONNX type, strings served)
            (c, j, inputs[c.input], None if c.categories is None else frozenset(c.categories))
            for j, c in enumerate(spec.columns)
        ]
        self._matrix = next(iter(inputs), "")
        self._float = np.float64 if "tensor(double)" in inputs.values() else np.float32
        self._known = frozenset(c.name for c in spec.columns)
        self._labels = {
            out: {_label_key(c): c for c in out.classes}
            for out in (spec.predict, spec.probabilities)
            if out is not None and out.classes is not None
        }

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        check_instances(instances)
        rest = {k: v for k, v in kwargs.items() if k != "signature_name"}
        probabilities: Any = False
        if self.spec.layout != "booster":  # a Booster's predict takes no such keyword
            probabilities = rest.pop("probabilities", False)
        if not rest and isinstance(probabilities, bool):
            result = self.compute(instances, probabilities=probabilities)
            if result is not None:
                return result
        return self._original_predictor().predict(instances, **kwargs)

    def probe_instances(self) -> list[Any] | None:
        return read_input_example(self.model_dir) or self.spec.probe

    def compute(self, instances: list[Any], *, probabilities: bool = False) -> list[Any] | None:
        """The compiled answer, or ``None`` when the request is outside the served forms."""
        out = self.spec.probabilities if probabilities else self.spec.predict
        feed = self._feed(instances)
        if out is None or feed is None:
            return None
        try:
            outputs = self._session.run(None, feed)
        except Exception:  # onnxruntime's errors share no base class; the original decides
            return None
        array = np.asarray(outputs[out.output])
        if array.ndim == 0 or array.shape[0] != len(instances):
            return None
        if out.column is not None:
            array = array.reshape(len(instances), -1)[:, out.column]
        if out.classes is not None:
            lookup = self._labels[out]
            labels = [lookup.get(_label_key(label), _ABSENT) for label in array.tolist()]
            return None if any(label is _ABSENT for label in labels) else labels
        rows: list[Any] = array.astype(np.float64).tolist() if out.as_float else array.tolist()
        return rows

    def _original_predictor(self) -> Predictor:
        with self._lock:
            if self._original is None:
                self._original = self._fallback()
            return self._original

    def _feed(self, instances: list[Any]) -> dict[str, Any] | None:
        if self.spec.layout == "booster":
            matrix = feature_matrix(instances, names=self.spec.names, width=self.spec.width)
            return {self._matrix: matrix.astype(np.float32)}
        form = instance_form(instances)
        if self.spec.layout == "matrix":
            return self._matrix_feed(instances) if form == "rows" else None
        return self._columns_feed(instances, form)

    def _matrix_feed(self, rows: list[Any]) -> dict[str, Any] | None:
        width, missing = self.spec.width, self.spec.missing
        for row in rows:
            if not isinstance(row, list) or len(row) != width:
                return None
            for value in row:
                if not (_plain_number(value) or (missing and value is None)):
                    return None
        return {self._matrix: np.array(rows, dtype=self._float)}

    def _columns_feed(self, instances: list[Any], form: str) -> dict[str, Any] | None:
        if form == "objects":
            if any(not self._known.issuperset(instance) for instance in instances):
                return None  # the original names the unknown field
        elif any(not isinstance(row, list) or len(row) != len(self._known) for row in instances):
            return None
        feed = {}
        for spec, j, onnx_type, categories in self._columns:
            if form == "objects":
                values = [instance.get(spec.name, _ABSENT) for instance in instances]
            else:
                values = [row[j] for row in instances]
            array = self._column(spec, onnx_type, categories, values, form)
            if array is None:
                return None
            feed[spec.input] = array
        return feed

    def _column(
        self,
        spec: ColumnSpec,
        onnx_type: str,
        categories: frozenset[str] | None,
        values: list[Any],
        form: str,
    ) -> Any:
        """One column as a [N, 1] array, or ``None`` when its values leave the served forms."""
        string = spec.kind == "string"
        absent = null = 0
        filled: list[Any] = []
        for value in values:
            if value is _ABSENT or value is None:
                absent += value is _ABSENT
                null += value is None
                filled.append(MISSING_STRING if string else math.nan)
            elif (
                type(value) is str and (categories is None or value in categories)
                if string
                else _plain_number(value)
            ):
                filled.append(value)
            else:
                return None
        if absent or null:
            if absent + null < len(values):
                if not spec.missing:
                    return None
            elif form == "rows" or (absent and null):
                return None  # pandas types these columns by the whole request: not verified
            elif ("absent" if absent else "null") not in spec.alone:
                return None
        dtype = object if onnx_type == "tensor(string)" else _DTYPES.get(onnx_type)
        return None if dtype is None else np.array(filled, dtype=dtype).reshape(-1, 1)


def _plain_number(value: Any) -> bool:
    """A JSON number the original reads as that same number (no bool, NaN, huge int)."""
    kind = type(value)
    if kind is float:
        return math.isfinite(value)
    return kind is int and abs(value) <= 2**53


def _label_key(value: Any) -> tuple[str, Any]:
    """ONNX labels (int64, str) and the original's JSON classes, compared by value."""
    if isinstance(value, bytes):
        value = value.decode("utf-8")
    if isinstance(value, str | bool):
        return (type(value).__name__, value)
    return ("number", float(value))


# --- loading -------------------------------------------------------------------------------


def load_compiled(
    model_dir: Path, compiled_dir: Path, *, framework: str, threads: int = 1
) -> Predictor:
    """Serve ``compiled_dir/model.onnx`` for the model in ``model_dir`` (module docstring).

    ``framework`` is the version's, as for ``load_predictor``; ``threads`` caps onnxruntime's
    intra-op threads (and the original's, when a request goes to it). Raises
    :class:`FailedPrecondition` when the file is missing, not from :func:`compile_model`, or
    compiled from another model file or framework.
    """
    if threads < 1:
        raise ValueError(f"threads must be at least 1, got {threads}")
    model_dir, path = Path(model_dir), Path(compiled_dir) / COMPILED_FILE
    if not path.is_file():
        raise FailedPrecondition(
            f"{compiled_dir} holds no {COMPILED_FILE}; compile the model with compile_model first"
        )
    session = _session(path.read_bytes(), threads, str(path))
    raw = session.get_modelmeta().custom_metadata_map.get(SPEC_KEY)
    if raw is None:
        raise FailedPrecondition(f"{path} was not written by compile_model (no {SPEC_KEY})")
    spec = CompiledSpec.from_json(raw)
    chosen = resolve_framework(framework, None) or detect_framework(model_dir)
    source = model_file(model_dir, chosen) if chosen in _COMPILABLE else None
    if chosen != spec.framework or source is None or source.name != spec.source:
        raise FailedPrecondition(
            f"{path} was compiled from {spec.source} ({spec.framework}), not from this "
            f"version's {source.name if source else 'model'} ({chosen}); compile it again"
        )
    if _sha256(source) != spec.sha256:
        raise FailedPrecondition(f"{source} changed since {path} was compiled; compile it again")

    def fallback() -> Predictor:
        return load_predictor(model_dir, framework=spec.framework, threads=threads)

    return CompiledPredictor(session, spec, model_dir, fallback)


_COMPILABLE = ("SCIKIT_LEARN", "XGBOOST", "LIGHTGBM")


def _session(model: bytes, threads: int, what: str) -> Any:
    onnxruntime = import_framework("onnxruntime", needed_for=f"{what} (compiled)")
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3  # onnxmltools declares label shapes [1]: a warning per run
    try:
        return onnxruntime.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises several unrelated exception types
        raise FailedPrecondition(f"{what} is not a loadable ONNX model: {exc}") from exc


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
