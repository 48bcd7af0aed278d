"""Compile scikit-learn pipelines and XGBoost/LightGBM boosters to ONNX Runtime, where it is safe.

A scikit-learn pipeline pays ~4.5 ms per ``predict`` call whatever the rows (mostly
``ColumnTransformer`` overhead); the same graph in onnxruntime costs tens of microseconds.
:func:`compile_model` converts a version's model — skl2onnx for scikit-learn, onnxmltools
for XGBoost and LightGBM Boosters — and writes ``out_dir/model.onnx`` only once the conversion
is shown equal to the original on a probe set. :func:`load_compiled` serves that file as a
:class:`~mlengine.serving.predictor.Predictor` whose predictions have exactly the JSON shape and
types of ``load_predictor``'s for the same model (``str`` labels stay ``str``, ``int`` stay
``int``; ``"probabilities": true`` works as for scikit-learn).

**Inputs.** A model fitted on a DataFrame (``feature_names_in_``) gets one ONNX input per
column: a string tensor for a column a fitted encoder or imputer knows as text, a float tensor
otherwise. Other scikit-learn models get one float matrix, Boosters one float32 matrix
(XGBoost itself compares in float32). Instances are mapped as the original loader maps them.

**Probe set** (``rows`` instances, ``seed``): the caller's ``probe_rows`` (else the model
directory's ``input_example.json``), then synthetic rows. Each categorical column samples the
fitted encoders' categories plus an unknown value; each numeric column samples around the
fitted imputer/scaler statistics (mean ± 2 scales, whole numbers included, the statistics and
the fitted minima, maxima and bin edges themselves). Where a tree ensemble (scikit-learn
trees, HistGradientBoosting, XGBoost, LightGBM) reads the inputs directly, every split
threshold is probed at the threshold and two float32 steps either side. Missing values (an
absent field and ``null``) are probed wherever the original accepts them.

**Verification**: the original and the compiled model predict the same requests; success
needs identical labels on every row, probabilities within 1e-5 absolute, other numbers within
1e-5 relative (of the larger of the value and the outputs' root mean square). Anything else —
or a conversion error — returns ``CompileResult(path=None, reason=…)``; only I/O errors in
``out_dir`` raise. The one known gap: a float32 graph cannot separate inputs closer to a split
threshold than one float32 step (~6e-8 relative), and the probes stop two steps away.

**Request forms.** Before the probe set, each column is checked alone: a missing value in a
batch, a column missing from every instance (absent, and ``null``), an unknown category. Forms
the original rejects, or the compiled graph does not reproduce, are recorded, and requests
using them — like any request the fast path does not cover (other request keys, values of
another JSON type, unknown fields, a failing graph) — are passed to the original model,
loaded on first need. So every answer is the original's, or verified equal to it.

The compiled file carries its contract as metadata ``mlengine.compiled`` (JSON: inputs, flags,
outputs, the source model file's sha256). :func:`load_compiled` refuses a file compiled from
another model file.
"""

from __future__ import annotations

import hashlib
import importlib
import json
import math
import os
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from mlengine.domain.errors import FailedPrecondition, MlEngineError
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import (
    check_instances,
    feature_matrix,
    instance_form,
    read_input_example,
)
from mlengine.serving.outputs import json_ready
from mlengine.serving.predictor import (
    Predictor,
    detect_framework,
    load_predictor,
    model_file,
    resolve_framework,
)

COMPILED_FILE = "model.onnx"
SPEC_KEY = "mlengine.compiled"
PROBE_ROWS = 512
PROBABILITY_TOLERANCE = 1e-5
RELATIVE_TOLERANCE = 1e-5
#: Fed to a string input for a missing value: a category no fitted encoder knows.
MISSING_STRING = "\x00mlengine:missing"
#: The unknown category of the probe set.
UNKNOWN_STRING = "mlengine:unknown-category"
#: Split thresholds are probed this many float32 steps either side.
EDGE_STEPS = 2
_ABSENT: Any = object()  # a field the instance does not have
_SINGLE_ROWS = 8  # probe rows also sent one per request
_ROW_CHUNK = 64  # probe rows also sent in the other instance form
_DTYPES: dict[str, Any] = {"tensor(float)": np.float32, "tensor(double)": np.float64}

Tolerance = Literal["labels", "probabilities", "values"]


@dataclass(frozen=True)
class CompileResult:
    """``path``: the written ``model.onnx``, ``None`` when not compiled; ``reason``: why
    not, or what the verification showed; ``rows_checked``: probe rows compared."""

    path: Path | None
    reason: str
    rows_checked: int = 0


@dataclass(frozen=True)
class ColumnSpec:
    """One DataFrame column: its kind and the request forms the compiled graph serves."""

    name: str
    kind: Literal["number", "string"]
    input: str = ""  # the graph input (skl2onnx makes names C identifiers)
    missing: bool = True  # missing in some instances of a request
    alone: tuple[str, ...] = ("absent", "null")  # missing in every instance of a request
    categories: tuple[str, ...] | None = None  # when set, only these strings are served


@dataclass(frozen=True)
class OutputSpec:
    """Which ONNX output gives the predictions, and how: ``column`` of a [N, k] output,
    labels mapped to ``classes`` (JSON values) or numbers as floats."""

    output: int
    column: int | None = None
    classes: tuple[Any, ...] | None = None
    as_float: bool = False


@dataclass(frozen=True)
class CompiledSpec:
    """The contract of a compiled file, stored in its metadata (see the module docstring)."""

    framework: str  # the version's framework (what load_predictor was asked for)
    serves: str  # the original predictor's framework, reported by the compiled one
    source: str  # model file name in the model directory
    sha256: str
    layout: Literal["columns", "matrix", "booster"]
    predict: OutputSpec
    tolerance: Tolerance
    probabilities: OutputSpec | None = None
    columns: tuple[ColumnSpec, ...] = ()
    width: int = 0
    names: tuple[str, ...] | None = None  # booster feature names (objects)
    missing: bool = True  # matrix: null values served
    probe: list[Any] | None = None  # the original's probe_instances()
    verified: str = ""

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> CompiledSpec:
        raw = json.loads(text)

        def output(value: dict[str, Any] | None) -> OutputSpec | None:
            return (
                None
                if value is None
                else OutputSpec(**{**value, "classes": _tuple(value["classes"])})
            )

        def column(value: dict[str, Any]) -> ColumnSpec:
            return ColumnSpec(
                **{
                    **value,
                    "alone": tuple(value["alone"]),
                    "categories": _tuple(value["categories"]),
                }
            )

        predict, probabilities = output(raw.pop("predict")), output(raw.pop("probabilities"))
        assert predict is not None
        columns, names = tuple(map(column, raw.pop("columns"))), _tuple(raw.pop("names"))
        return cls(
            **raw, predict=predict, probabilities=probabilities, columns=columns, names=names
        )


def _tuple(values: list[Any] | None) -> tuple[Any, ...] | None:
    return None if values is None else tuple(values)


class _NotCompiled(Exception):
    """Why a model is not compiled; becomes ``CompileResult(None, reason, rows_checked)``."""

    def __init__(self, reason: str, rows_checked: int = 0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.rows_checked = rows_checked


# --- the compiled predictor ----------------------------------------------------------------


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


# --- compiling -----------------------------------------------------------------------------


def compile_model(
    model_dir: Path,
    out_dir: Path,
    *,
    framework: str,
    probe_rows: list[Any] | None = None,
    rows: int = PROBE_ROWS,
    seed: int = 0,
) -> CompileResult:
    """Convert the model in ``model_dir`` to ``out_dir/model.onnx`` when verified equal.

    ``framework`` is the version's (as for ``load_predictor``); ``probe_rows`` are instances
    to probe first (default: ``input_example.json``); ``rows`` the size of the probe set,
    ``seed`` its random seed. Never raises for a model that does not compile: the result's
    ``path`` is then ``None`` and ``reason`` says why. Raises ``OSError`` when ``out_dir``
    cannot be written.
    """
    if rows < 1:
        raise ValueError(f"rows must be at least 1, got {rows}")
    try:
        model, spec, checked = _compile(Path(model_dir), framework, probe_rows, rows, seed)
    except _NotCompiled as exc:
        return CompileResult(None, exc.reason, exc.rows_checked)
    except Exception as exc:  # a model shaped as nothing here foresaw: still not an error
        return CompileResult(None, f"not compiled: {_first_line(exc)}")
    return CompileResult(_write(Path(out_dir), model, spec), spec.verified, checked)


def _compile(
    model_dir: Path, framework: str, probe_rows: list[Any] | None, rows: int, seed: int
) -> tuple[Any, CompiledSpec, int]:
    try:
        chosen = resolve_framework(framework, None) or detect_framework(model_dir)
        if chosen not in _COMPILABLE:
            raise _NotCompiled(f"not compiled: only {', '.join(_COMPILABLE)} models compile")
        source = model_file(model_dir, chosen)
        original = load_predictor(model_dir, framework=chosen)
        examples = list(probe_rows or read_input_example(model_dir) or [])
        target = _target(original, examples)
        probe = original.probe_instances()
    except MlEngineError as exc:
        raise _NotCompiled(f"not compiled: {exc.message}") from exc
    except ImportError as exc:
        raise _NotCompiled(f"not compiled: {exc} (pip install skl2onnx onnxmltools)") from exc
    spec = CompiledSpec(
        framework=chosen,
        serves=original.framework,
        source=source.name,
        sha256=_sha256(source),
        layout=target.layout,
        predict=target.predict,
        tolerance=target.tolerance,
        probabilities=target.probabilities,
        width=len(target.facts),
        names=target.names if target.layout == "booster" else None,
        probe=probe,
    )
    prober = _Prober(original, target, examples, rows, seed)
    failures, checked = [], 0
    for numbers, convert in target.candidates:
        try:
            model = convert()
            session = _session(model.SerializeToString(), 1, "the converted model")
        except Exception as exc:  # converters raise anything; an unconverted model is no error
            failures.append(f"{numbers} inputs: conversion failed: {_first_line(exc)}")
            continue
        try:
            verified, checked = prober.verify(session, spec, numbers)
        except _NotCompiled as exc:
            failures.append(f"{numbers} inputs: {exc.reason}")
            checked = max(checked, exc.rows_checked)
            continue
        return model, verified, checked
    raise _NotCompiled("not compiled: " + "; ".join(failures), checked)


def _write(out_dir: Path, model: Any, spec: CompiledSpec) -> Path:
    entry = model.metadata_props.add()
    entry.key, entry.value = SPEC_KEY, spec.to_json()
    out_dir.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=out_dir, prefix=".model-", suffix=".onnx")
    try:
        with os.fdopen(handle, "wb") as stream:
            stream.write(model.SerializeToString())
        os.replace(temporary, out_dir / COMPILED_FILE)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    return out_dir / COMPILED_FILE


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    text = f"{type(exc).__name__}: {lines[0] if lines else ''}"
    return text if len(text) <= 300 else text[:300] + "…"


# --- what to convert, and what is known about its inputs -----------------------------------


@dataclass
class _Facts:
    """What the fitted model tells about one input column: kind, values worth probing."""

    kind: Literal["number", "string"] = "number"
    categories: list[Any] = field(default_factory=list)
    seen: list[str] = field(default_factory=list)  # strings in the caller's examples
    center: float | None = None
    spread: float | None = None
    specials: list[float] = field(default_factory=list)
    edges: list[float] = field(default_factory=list)  # split thresholds on this input

    def learn(self, estimator: Any, k: int) -> None:
        """Statistics of column ``k`` from ``estimator`` (a pipeline: each of its steps)."""
        for step in _chain(estimator):
            categories = getattr(step, "categories_", None)
            if isinstance(categories, list) and k < len(categories):
                for value in json_ready(list(categories[k])):
                    if isinstance(value, str):
                        self.kind = "string"
                    if value is not None and value == value:  # NaN is a category, not a value
                        self.categories.append(value)
            fill = _item(getattr(step, "statistics_", None), k)
            if isinstance(fill, str):
                self.kind = "string"
            elif isinstance(fill, float):
                self.specials.append(fill)
            low = _item(getattr(step, "data_min_", None), k)
            high = _item(getattr(step, "data_max_", None), k)
            if isinstance(low, float) and isinstance(high, float):
                self.specials += [low, high]
                self._center((low + high) / 2, (high - low) / 2)
            for mean in ("mean_", "center_"):
                center = _item(getattr(step, mean, None), k)
                if isinstance(center, float):
                    scale = _item(getattr(step, "scale_", None), k)
                    self._center(center, scale if isinstance(scale, float) else None)
            if isinstance(fill, float):
                self._center(fill, None)
            edges = getattr(step, "bin_edges_", None)
            if edges is not None and k < len(edges):
                self.specials += [float(e) for e in edges[k]]

    def observe(self, value: Any) -> None:
        if isinstance(value, str):
            self.seen.append(value)
        elif _plain_number(value):
            self.specials.append(float(value))

    def _center(self, center: float, spread: float | None) -> None:
        if self.center is None:
            self.center = center
        if self.spread is None and spread:
            self.spread = abs(spread)


def _item(values: Any, k: int) -> Any:
    """Entry ``k`` of a fitted statistic as a str or finite float; ``None`` otherwise."""
    if values is None or k >= len(values):
        return None
    value = json_ready(values[k])
    if isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return float(value)
    return None


@dataclass
class _Target:
    """A model to convert: input layout and facts, output mapping, conversions to try."""

    layout: Literal["columns", "matrix", "booster"]
    facts: list[_Facts]
    names: tuple[str, ...] | None
    predict: OutputSpec
    tolerance: Tolerance
    probabilities: OutputSpec | None
    candidates: list[tuple[str, Callable[[], Any]]]
    squeeze: bool = False  # predictions are scalars where the original's are


def _target(original: Predictor, examples: list[Any]) -> _Target:
    kind = type(original).__name__
    if kind == "SklearnPredictor":
        return _sklearn_target(original, examples)
    if kind in ("XgboostPredictor", "LightgbmPredictor"):
        return _booster_target(original, examples)
    raise _NotCompiled(f"not compiled: {kind} models have no ONNX conversion")


def _sklearn_target(original: Any, examples: list[Any]) -> _Target:
    model = original.model
    unsupported = _unsupported_steps(model)
    if unsupported:
        more = f" and {len(unsupported) - 4} more" if len(unsupported) > 4 else ""
        raise _NotCompiled(
            "not compiled: no ONNX conversion for step "
            + ", ".join(unsupported[:4])
            + more
            + " (skl2onnx converts scikit-learn's own estimators, and FunctionTransformer "
            "only without func)"
        )
    names: tuple[str, ...] | None = original.feature_names
    width = len(names) if names else original.n_features
    if not width:
        raise _NotCompiled(
            "not compiled: the model records neither feature_names_in_ nor n_features_in_"
        )
    facts = [_Facts() for _ in range(width)]
    groups = list(_column_groups(model, names, width))
    for transformer, columns in groups:
        for k, j in enumerate(columns):
            facts[j].learn(transformer, k)
    if not groups:  # the first step sees the inputs as they come
        first = next(_chain(model))
        for j in range(width):
            facts[j].learn(first, j)
        for j, edges in _sklearn_splits(model).items():
            facts[j].edges += edges
    _observe(facts, examples, names)
    final = _final(model)
    base = importlib.import_module("sklearn.base")
    tolerance: Tolerance
    if base.is_classifier(final) and np.ndim(np.asarray(getattr(model, "classes_", []))) == 1:
        classes = tuple(json_ready(list(model.classes_)))
        probabilities = OutputSpec(1) if callable(getattr(model, "predict_proba", None)) else None
        predict, tolerance = OutputSpec(0, classes=classes), "labels"
    else:
        probabilities, predict, tolerance = None, OutputSpec(0), "values"
    layout: Literal["columns", "matrix"] = "columns" if names else "matrix"
    return _Target(
        layout,
        facts,
        names,
        predict,
        tolerance,
        probabilities,
        [(n, _sklearn_converter(model, layout, facts, names, n)) for n in ("float", "double")],
        squeeze=tolerance == "values",
    )


def _sklearn_converter(
    model: Any,
    layout: str,
    facts: list[_Facts],
    names: tuple[str, ...] | None,
    numbers: str,
) -> Callable[[], Any]:
    def convert() -> Any:
        skl2onnx = importlib.import_module("skl2onnx")
        types = importlib.import_module("skl2onnx.common.data_types")
        number = types.FloatTensorType if numbers == "float" else types.DoubleTensorType
        if layout == "columns" and names:
            initial = [
                (
                    name,
                    types.StringTensorType([None, 1]) if f.kind == "string" else number([None, 1]),
                )
                for name, f in zip(names, facts, strict=True)
            ]
        else:
            initial = [("input", number([None, len(facts)]))]
        final = _final(model)
        classifier = importlib.import_module("sklearn.base").is_classifier(final)
        return skl2onnx.convert_sklearn(
            model,
            initial_types=initial,
            options={id(final): {"zipmap": False}} if classifier else None,
            custom_conversion_functions=_histgb_converters(),
        )

    return convert


def _histgb_converters() -> dict[type, Callable[..., None]]:
    """skl2onnx's HistGradientBoosting converters, with their node flags made ints.

    skl2onnx 1.20 passes ``False`` among HistGradientBoosting's integer node flags, which
    protobuf 7 refuses ("Expected an int, got a boolean"); :class:`_IntFlags` hands the same
    node to skl2onnx's container with 0/1 instead. Passed per conversion, no global change.
    """
    ensemble = importlib.import_module("sklearn.ensemble")
    forest = importlib.import_module("skl2onnx.operator_converters.random_forest")

    def classifier(scope: Any, operator: Any, container: Any) -> None:
        forest.convert_sklearn_random_forest_classifier(scope, operator, _IntFlags(container))

    def regressor(scope: Any, operator: Any, container: Any) -> None:
        forest.convert_sklearn_random_forest_regressor_converter(
            scope, operator, _IntFlags(container)
        )

    return {
        ensemble.HistGradientBoostingClassifier: classifier,
        ensemble.HistGradientBoostingRegressor: regressor,
    }


class _IntFlags:
    """A skl2onnx container whose ``add_node`` turns bools in list attributes into ints."""

    def __init__(self, container: Any) -> None:
        self._container = container

    def __getattr__(self, name: str) -> Any:
        return getattr(self._container, name)

    def add_node(self, *args: Any, **attrs: Any) -> Any:
        for key, value in attrs.items():
            if isinstance(value, list):
                attrs[key] = [int(v) if isinstance(v, bool) else v for v in value]
        return self._container.add_node(*args, **attrs)


def _booster_target(original: Any, examples: list[Any]) -> _Target:
    booster, width = original.booster, int(original.n_features)
    names = tuple(original.feature_names) if original.feature_names else None
    facts = [_Facts() for _ in range(width)]
    xgboost = type(original).__name__ == "XgboostPredictor"
    if xgboost:
        objective = json.loads(booster.save_config())["learner"]["objective"]["name"]
        splits = _xgboost_splits(booster)
        outputs = {"binary:logistic": 2, "multi:softprob": 1, "multi:softmax": 0}
    else:
        dump = booster.dump_model()
        objective = str(dump.get("objective", "")).split(" ")[0]
        splits = _lightgbm_splits(dump, facts)
        outputs = {"binary": 2, "multiclass": 1, "multiclassova": 1}
    for j, edges in splits.items():
        if 0 <= j < width:
            facts[j].edges += edges
    _observe(facts, examples, names)
    mappings: dict[int | None, tuple[OutputSpec, Tolerance]] = {
        2: (OutputSpec(1, column=1), "probabilities"),  # P(class 1) of [N, 2] probabilities
        1: (OutputSpec(1), "probabilities"),
        0: (OutputSpec(0, as_float=True), "labels"),  # the class index, as a float
        None: (OutputSpec(0, column=0), "values"),  # regression, ranking, counts
    }
    predict, tolerance = mappings[outputs.get(objective)]

    def convert() -> Any:
        onnxmltools = importlib.import_module("onnxmltools")
        types = importlib.import_module("onnxmltools.convert.common.data_types")
        initial = [("input", types.FloatTensorType([None, width]))]
        if not xgboost:
            return onnxmltools.convert_lightgbm(booster, initial_types=initial, zipmap=False)
        nameless = booster.copy()  # onnxmltools reads only f0, f1, … from the tree dump
        nameless.feature_names, nameless.feature_types = None, None
        return onnxmltools.convert_xgboost(nameless, initial_types=initial)

    return _Target("booster", facts, names, predict, tolerance, None, [("float", convert)])


def _observe(facts: list[_Facts], examples: list[Any], names: Sequence[str] | None) -> None:
    """Learn kinds and values from the caller's example instances; centre what is left."""
    position = {name: j for j, name in enumerate(names or ())}
    for example in examples:
        pairs = (
            ((position.get(k), v) for k, v in example.items())
            if isinstance(example, Mapping)
            else enumerate(example)
            if isinstance(example, list)
            else ()
        )
        for j, value in pairs:
            if j is not None and 0 <= j < len(facts):
                facts[j].observe(value)
    for f in facts:
        if f.seen and f.center is None and not f.categories:
            f.kind = "string"
        if f.edges and f.center is None:
            f._center(float(np.median(f.edges)), float(np.std(f.edges)) or 1.0)


def _chain(estimator: Any) -> Iterator[Any]:
    """``estimator``'s steps in order (a pipeline's, depth-first), or itself."""
    steps = getattr(estimator, "steps", None)
    if not steps:
        yield estimator
        return
    for _, step in steps:
        if step is not None and step != "passthrough":
            yield from _chain(step)


def _final(model: Any) -> Any:
    while getattr(model, "steps", None):
        model = model.steps[-1][1]
    return model


def _leaves(estimator: Any, path: str) -> Iterator[tuple[str, Any]]:
    """(path, estimator) for every step that is not a Pipeline/ColumnTransformer/FeatureUnion."""
    children: list[tuple[str, Any]] = []
    if getattr(estimator, "steps", None):
        children = [(n, s) for n, s in estimator.steps]
    elif hasattr(estimator, "transformers_"):
        children = [(n, t) for n, t, _ in estimator.transformers_]
    elif hasattr(estimator, "transformer_list"):
        children = list(estimator.transformer_list)
    if not children:
        yield path or type(estimator).__name__, estimator
    for name, child in children:
        if child is not None and not isinstance(child, str):
            yield from _leaves(child, f"{path}/{name}" if path else name)


def _unsupported_steps(model: Any) -> list[str]:
    """The steps skl2onnx has no converter for, named by their path in the pipeline."""
    try:  # skl2onnx's registry of classes (its public list holds converter aliases)
        known = importlib.import_module("skl2onnx._supported_operators").sklearn_operator_name_map
    except (ImportError, AttributeError):  # another skl2onnx: conversion errors will tell
        return []
    found = []
    for path, step in _leaves(model, ""):
        func = getattr(step, "func", None)
        if type(step).__name__ == "FunctionTransformer" and func is not None:
            name = getattr(func, "__qualname__", None) or repr(func)
            found.append(f"{path!r} (FunctionTransformer of {name})")
        elif type(step) not in known:
            found.append(f"{path!r} ({type(step).__module__}.{type(step).__qualname__})")
    return found


def _column_groups(
    model: Any, names: Sequence[str] | None, width: int
) -> Iterator[tuple[Any, list[int]]]:
    """(transformer, input column indices) of the ColumnTransformers among ``model``'s steps."""
    for step in _chain(model):
        for _, transformer, columns in getattr(step, "transformers_", ()):
            if isinstance(transformer, str):  # "drop", "passthrough"
                continue
            if isinstance(columns, slice):
                yield transformer, list(range(width))[columns]
                continue
            items = [columns] if isinstance(columns, str | int) else list(np.ravel(columns))
            if items and all(isinstance(c, bool | np.bool_) for c in items):
                yield transformer, [j for j, keep in enumerate(items) if keep]
                continue
            index = {name: j for j, name in enumerate(names or ())}
            found = [index.get(c) if isinstance(c, str) else int(c) for c in items]
            yield transformer, [j for j in found if j is not None and 0 <= j < width]


def _sklearn_splits(model: Any) -> dict[int, list[float]]:
    """Split thresholds per input of a tree model fed the inputs directly."""
    splits: dict[int, list[float]] = {}
    trees = [model.tree_] if hasattr(model, "tree_") else []
    for estimator in np.ravel(np.asarray(getattr(model, "estimators_", []), dtype=object)):
        if hasattr(estimator, "tree_"):
            trees.append(estimator.tree_)
    for tree in trees:
        for j, threshold in zip(tree.feature, tree.threshold, strict=True):
            if j >= 0:
                splits.setdefault(int(j), []).append(float(threshold))
    for predictors in getattr(model, "_predictors", None) or ():
        for predictor in predictors:
            nodes = predictor.nodes
            for node in nodes[(nodes["is_leaf"] == 0) & (nodes["is_categorical"] == 0)]:
                splits.setdefault(int(node["feature_idx"]), []).append(float(node["num_threshold"]))
    return splits


def _xgboost_splits(booster: Any) -> dict[int, list[float]]:
    try:
        learner = json.loads(booster.save_raw(raw_format="json"))["learner"]
        gradient = learner["gradient_booster"]
        trees = (gradient.get("model") or gradient["gbtree"]["model"])["trees"]
    except (KeyError, TypeError, ValueError):  # another booster kind: no split probes
        return {}
    splits: dict[int, list[float]] = {}
    for tree in trees:
        for j, threshold, left in zip(
            tree["split_indices"], tree["split_conditions"], tree["left_children"], strict=True
        ):
            if left != -1:
                splits.setdefault(int(j), []).append(float(threshold))
    return splits


def _lightgbm_splits(dump: Mapping[str, Any], facts: list[_Facts]) -> dict[int, list[float]]:
    splits: dict[int, list[float]] = {}
    stack = [tree["tree_structure"] for tree in dump.get("tree_info", [])]
    while stack:
        node = stack.pop()
        if "split_feature" not in node:
            continue
        j, threshold = int(node["split_feature"]), node["threshold"]
        if node.get("decision_type") == "==" and j < len(facts):  # categorical: codes
            facts[j].categories += [float(code) for code in str(threshold).split("||")]
        else:
            splits.setdefault(j, []).append(float(threshold))
        stack += [node["left_child"], node["right_child"]]
    return splits


# --- verification --------------------------------------------------------------------------


def _no_fallback() -> Predictor:
    raise AssertionError("verification never passes requests to the original")


class _Prober:
    """Runs the original and a compiled candidate on the same requests (module docstring).

    The original's answers are kept, so a second candidate costs only its own runs.
    """

    def __init__(
        self, original: Predictor, target: _Target, examples: list[Any], rows: int, seed: int
    ) -> None:
        self.original, self.target, self.seed = original, target, seed
        self.examples = examples[:rows]
        self.synthetic = max(rows - len(self.examples), 1)
        self._answers: dict[str, list[Any] | str] = {}
        self.base = [_typical(f) for f in target.facts]
        answer = self._expected([self._render(self.base, "main")], False)
        if isinstance(answer, str):
            raise _NotCompiled(
                f"not compiled: the original model rejects a typical instance "
                f"{_text(self._render(self.base, 'main'))}: {answer}"
            )
        scalar = not isinstance(answer[0], list)
        self.predict = (
            replace(target.predict, column=0) if target.squeeze and scalar else target.predict
        )

    def verify(self, session: Any, spec: CompiledSpec, numbers: str) -> tuple[CompiledSpec, int]:
        """The spec with its served forms and summary, and the probe rows compared;
        :class:`_NotCompiled` naming the first difference."""
        spec = replace(spec, predict=self.predict)
        if spec.layout == "columns":
            inputs = [node.name for node in session.get_inputs()]  # in the columns' order
            names, kinds = self.target.names or (), [f.kind for f in self.target.facts]
            if len(inputs) != len(names):
                raise _NotCompiled(f"the graph has {len(inputs)} inputs for {len(names)} columns")
            spec = replace(spec, columns=tuple(map(ColumnSpec, names, kinds, inputs)))
        delegated: list[str] = []
        spec = self._forms(CompiledPredictor(session, spec, Path(), _no_fallback), spec, delegated)
        compiled = CompiledPredictor(session, spec, Path(), _no_fallback)
        records = self._records(spec)
        comparison, checked, skipped = _Comparison(), 0, 0
        for name, instances, required in self._requests(spec, records):
            for probabilities in (False, True) if spec.probabilities else (False,):
                expected = self._expected(instances, probabilities)
                if isinstance(expected, str):
                    raise _NotCompiled(
                        f"the original model rejects the {name}s: {expected}", checked
                    )
                actual = _answer(compiled, instances, probabilities)
                if actual is None and not required:
                    skipped = len(instances)
                    break
                tolerance = "probabilities" if probabilities else spec.tolerance
                index = (
                    0
                    if actual is None
                    else comparison.first_difference(expected, actual, tolerance)
                )
                if index is not None:
                    what = "probabilities" if probabilities else "prediction"
                    got = "no answer" if actual is None else repr(actual[index])
                    raise _NotCompiled(
                        f"{name} {index} {_text(instances[index])} differs: original {what} "
                        f"{expected[index]!r}, compiled {got}",
                        checked + (index if name == "probe row" else 0),
                    )
            if name in ("probe row", "example row") and not skipped:
                checked += len(instances)
        summary = self._summary(spec, numbers, comparison, checked, delegated, skipped)
        return replace(spec, verified=summary), checked

    def _requests(
        self, spec: CompiledSpec, records: list[list[Any]]
    ) -> list[tuple[str, list[Any], bool]]:
        """(name, instances, whether the compiled model must answer): the probe rows in one
        request, some in the other instance form, some alone, then the caller's examples."""
        requests = [("probe row", [self._render(r, "main") for r in records], True)]
        if spec.layout == "columns" or (spec.layout == "booster" and spec.names):
            other = "rows" if spec.layout == "columns" else "objects"
            chunk = [self._render(r, other) for r in records[:_ROW_CHUNK]]
            requests.append((f"probe row (as {other})", chunk, True))
        whole = [r for r in records if not any(v is _ABSENT or v is None for v in r)]
        for record in whole[:_SINGLE_ROWS]:
            requests.append(("single-row request", [self._render(record, "main")], True))
        if self.examples:
            requests.append(("example row", self.examples, False))
        return requests

    def _summary(
        self,
        spec: CompiledSpec,
        numbers: str,
        comparison: _Comparison,
        checked: int,
        delegated: list[str],
        skipped: int,
    ) -> str:
        details = {
            "labels": "labels identical",
            "probabilities": f"max |Δp| {comparison.max_abs:.1g}",
            "values": f"max relative Δ {comparison.max_rel:.1g}",
        }[spec.tolerance]
        if spec.probabilities:
            details += f", max |Δp| {comparison.max_abs:.1g}"
        room = int(0.75 * (self.synthetic - 1))
        edges = sum(min(3 * len(f.edges), room) for f in self.target.facts)
        text = f"verified equal on {checked} rows: {details} ({numbers} inputs"
        text += f", {edges} split-threshold probes)" if edges else ")"
        if delegated:
            more = f" and {len(delegated) - 6} more" if len(delegated) > 6 else ""
            text += "; served by the original model: " + ", ".join(delegated[:6]) + more
        if skipped:
            text += f"; the {skipped} example rows are served by the original model"
        return text

    def _forms(
        self, compiled: CompiledPredictor, spec: CompiledSpec, delegated: list[str]
    ) -> CompiledSpec:
        """``spec`` with the request forms the original takes and the graph reproduces."""
        if spec.layout == "booster":
            return spec
        base, render = self.base, self._render
        if spec.layout == "matrix":
            rows = [base] + [_with(base, j, None) for j in range(min(len(base), 64))]
            missing = self._agrees(compiled, [render(r, "main") for r in rows])
            delegated += [] if missing else ["null values"]
            return replace(spec, missing=missing)
        width = range(len(spec.columns))
        every_missing = [base] + [_with(base, j, v) for j in width for v in (_ABSENT, None)]
        all_missing = self._agrees(compiled, [render(r, "main") for r in every_missing])
        strings = [j for j in width if spec.columns[j].kind == "string"]
        every_unknown = [base] + [_with(base, j, UNKNOWN_STRING) for j in strings]
        all_unknown = self._agrees(compiled, [render(r, "main") for r in every_unknown])
        columns = []
        for j, column in enumerate(spec.columns):
            missing = all_missing or self._agrees(
                compiled,
                [render(r, "main") for r in (base, _with(base, j, _ABSENT), _with(base, j, None))],
            )
            alone = tuple(
                form
                for form, value in (("absent", _ABSENT), ("null", None))
                if self._agrees(compiled, [render(_with(base, j, value), "main")])
            )
            categories = None
            if column.kind == "string" and not (
                all_unknown
                or self._agrees(
                    compiled, [render(base, "main"), render(_with(base, j, UNKNOWN_STRING), "main")]
                )
            ):
                known = self.target.facts[j].categories
                if not known:
                    raise _NotCompiled(
                        f"column {column.name!r} refuses unknown values and no fitted encoder "
                        "lists the values it takes"
                    )
                categories = tuple(str(c) for c in known)
                delegated.append(f"unknown {column.name!r}")
            if not missing:
                delegated.append(f"missing {column.name!r}")
            elif len(alone) < 2:
                delegated.append(f"{column.name!r} missing from every instance")
            columns.append(replace(column, missing=missing, alone=alone, categories=categories))
        return replace(spec, columns=tuple(columns))

    def _agrees(self, compiled: CompiledPredictor, instances: list[Any]) -> bool:
        """Whether the original takes ``instances`` and the compiled model answers the same."""
        spec = compiled.spec
        for probabilities in (False, True) if spec.probabilities else (False,):
            expected = self._expected(instances, probabilities)
            if isinstance(expected, str):
                return False
            actual = _answer(compiled, instances, probabilities)
            if actual is None:
                return False
            tolerance = "probabilities" if probabilities else spec.tolerance
            if _Comparison().first_difference(expected, actual, tolerance) is not None:
                return False
        return True

    def _expected(self, instances: list[Any], probabilities: bool) -> list[Any] | str:
        """The original's predictions, or its error message."""
        key = json.dumps([instances, probabilities], default=repr)
        if key not in self._answers:
            try:
                kwargs = {"probabilities": True} if probabilities else {}
                self._answers[key] = self.original.predict(instances, **kwargs)
            except Exception as exc:  # a rejection is an answer: the original's own error
                self._answers[key] = _first_line(exc)
        return self._answers[key]

    def _records(self, spec: CompiledSpec) -> list[list[Any]]:
        """``self.synthetic`` probe records (one value per input), the typical one first."""
        rng = np.random.default_rng(self.seed)
        facts, room = self.target.facts, int(0.75 * (self.synthetic - 1))
        edges = [_edge_values(f.edges, rng)[:room] for f in facts]
        served: list[tuple[bool, bool]] = [
            (c.missing, c.categories is None) for c in spec.columns
        ] or [(spec.missing, True)] * len(facts)
        records = [self.base]
        for r in range(self.synthetic - 1):
            records.append(
                [
                    edges[j][r] if r < len(edges[j]) else _sample(f, rng, *served[j])
                    for j, f in enumerate(facts)
                ]
            )
        return records

    def _render(self, record: list[Any], form: str) -> Any:
        """A record as an instance: ``main`` is the layout's usual form, else objects/rows."""
        names = self.target.names
        if form == "objects" or (form == "main" and self.target.layout == "columns"):
            assert names is not None
            return {n: v for n, v in zip(names, record, strict=True) if v is not _ABSENT}
        return [None if v is _ABSENT else v for v in record]


def _answer(compiled: CompiledPredictor, instances: list[Any], probabilities: bool) -> Any:
    """The compiled model's own answer, ``None`` when it has none (or refuses the request)."""
    try:
        return compiled.compute(instances, probabilities=probabilities)
    except MlEngineError:
        return None


def _typical(facts: _Facts) -> Any:
    if facts.kind == "string":
        pool = facts.categories or facts.seen
        return str(pool[0]) if pool else UNKNOWN_STRING
    if facts.categories:
        return facts.categories[0]
    return facts.center if facts.center is not None else 0.0


def _sample(facts: _Facts, rng: np.random.Generator, missing: bool, unknown: bool) -> Any:
    """One probe value of an input: missing, a category, a statistic, or near the centre."""
    u = float(rng.random())
    if missing and u < 0.1:
        return _ABSENT if rng.random() < 0.5 else None
    if facts.kind == "string":
        pool = facts.categories if not unknown else facts.categories + facts.seen
        if not pool or (unknown and u < 0.2):
            return UNKNOWN_STRING
        return str(pool[int(rng.integers(len(pool)))])
    if facts.categories and u < 0.5:
        return facts.categories[int(rng.integers(len(facts.categories)))]
    specials = [*facts.specials, 0.0]
    if u < 0.3:
        return specials[int(rng.integers(len(specials)))]
    center = facts.center if facts.center is not None else 0.0
    value = center + 2.0 * (facts.spread or 1.0) * float(rng.standard_normal())
    return round(value) if u < 0.5 else value


def _edge_values(edges: list[float], rng: np.random.Generator) -> list[float]:
    """Each threshold, and ``EDGE_STEPS`` float32 steps below and above it, shuffled."""
    values = []
    for t in edges:
        step = float(np.spacing(np.float32(abs(t))))
        values += [t, t - EDGE_STEPS * step, t + EDGE_STEPS * step]
    order = rng.permutation(len(values))
    return [values[i] for i in order]


def _with(record: list[Any], j: int, value: Any) -> list[Any]:
    changed = list(record)
    changed[j] = value
    return changed


def _text(instance: Any) -> str:
    text = json.dumps(instance, default=repr)
    return text if len(text) <= 200 else text[:200] + "…"


class _Comparison:
    """Compares predictions: labels exactly, probabilities absolutely, values relatively.

    Types must match (``1`` is not ``1.0``); a relative difference is taken of the larger of
    ``|expected|`` and the root mean square of the request's expected numbers.
    """

    def __init__(self) -> None:
        self.max_abs = 0.0
        self.max_rel = 0.0

    def first_difference(
        self, expected: list[Any], actual: list[Any], tolerance: Tolerance
    ) -> int | None:
        if len(expected) != len(actual):
            return min(len(expected), len(actual))
        scale = _rms(expected)
        for index, (e, a) in enumerate(zip(expected, actual, strict=True)):
            if self._differs(e, a, tolerance, scale):
                return index
        return None

    def _differs(self, e: Any, a: Any, tolerance: Tolerance, scale: float) -> bool:
        if type(e) is not type(a):
            return True
        if isinstance(e, list):
            return len(e) != len(a) or any(
                self._differs(x, y, tolerance, scale) for x, y in zip(e, a, strict=True)
            )
        if not isinstance(e, float):
            return bool(e != a)
        if math.isnan(e) or math.isnan(a):
            return not (math.isnan(e) and math.isnan(a))
        delta = abs(float(e) - float(a))
        if tolerance == "labels":
            return delta != 0.0
        if tolerance == "probabilities":
            self.max_abs = max(self.max_abs, delta)
            return delta > PROBABILITY_TOLERANCE
        relative = delta / max(abs(e), scale) if delta else 0.0
        self.max_rel = max(self.max_rel, relative)
        return relative > RELATIVE_TOLERANCE


def _rms(predictions: list[Any]) -> float:
    numbers = [
        v
        for v in np.ravel(np.asarray(predictions, dtype=object))
        if type(v) is float and math.isfinite(v)
    ]
    return float(np.sqrt(np.mean(np.square(numbers)))) if numbers else 0.0
