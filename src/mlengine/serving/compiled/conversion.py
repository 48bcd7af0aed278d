"""What to convert, and what is known about its inputs: skl2onnx and onnxmltools targets.

**Inputs.** A model fitted on a DataFrame (``feature_names_in_``) gets one ONNX input per
column: a string tensor for a column a fitted encoder or imputer knows as text, a float tensor
otherwise. Other scikit-learn models get one float matrix, Boosters one float32 matrix
(XGBoost itself compares in float32). Instances are mapped as the original loader maps them.

skl2onnx and onnxmltools are imported lazily, when a conversion runs.
"""

from __future__ import annotations

import importlib
import json
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from mlengine.serving.compiled.predictor import _plain_number
from mlengine.serving.compiled.spec import OutputSpec, Tolerance, _NotCompiled
from mlengine.serving.outputs import json_ready
from mlengine.serving.predictor import Predictor


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
