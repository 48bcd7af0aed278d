"""Serve a pickled model: scikit-learn estimators and pipelines (``model.joblib``, ``model.pkl``).

``model.joblib`` is read with ``joblib.load``, ``model.pkl`` with ``pickle.load``. **Both run
code chosen by whoever wrote the file** (see ``docs/prediction-frameworks.md``). The object
must have ``predict``; a pickled XGBoost or LightGBM ``Booster`` is served by that
framework's predictor instead, and estimators with the scikit-learn API from those libraries
(``XGBClassifier``, ``LGBMRegressor``) are served here, reporting their framework.

How instances become the model's input:

* **rows** (lists): ``numpy.array(instances)``, as spec §3.6 — a 2-D array for lists of
  numbers, a 1-D array for scalars (e.g. strings for a text pipeline). When the model was
  fitted on a DataFrame (it has ``feature_names_in_``) rows instead become a DataFrame with
  those columns, one value per feature in fit order, so steps that pick columns by name
  work.
* **objects**: a ``pandas.DataFrame``, one row per instance. With ``feature_names_in_`` the
  columns are those names in fit order: an absent field or ``null`` is missing (NaN), a
  field the model does not know is refused. Without it the columns are the instances' keys.
  Needed for pipelines with a ``ColumnTransformer`` on named columns (the census sample).

Outputs: ``predict`` by default — per instance a label, a number or a list (multi-output).
A request key ``"probabilities": true`` calls ``predict_proba`` instead: per instance the
list of class probabilities in the order of the model's ``classes_``. Other top-level keys
are passed to the method as keyword arguments (spec §3.6); ``signature_name`` is dropped.

Probe (before READY): ``input_example.json``, else one instance from the model's metadata —
an object over ``feature_names_in_`` (each categorical column gets the first category a
fitted encoder of a ``ColumnTransformer`` knows, every other column ``0.0``), else a row of
``n_features_in_`` zeros, else none.

Threads: every ``n_jobs`` parameter of the model (a pipeline's too) is set to ``threads``;
OpenMP and BLAS follow the server's ``OMP_NUM_THREADS``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.errors import FailedPrecondition, InvalidArgument, MlEngineError
from mlengine.serving.dependencies import import_framework, install_hint
from mlengine.serving.instances import (
    check_fields,
    check_instances,
    instance_form,
    read_input_example,
)
from mlengine.serving.outputs import batch_rows, json_ready
from mlengine.serving.predictor import Predictor


def load_pickle(path: Path, *, threads: int = 1) -> Predictor:
    """Unpickle ``path`` and wrap it; :class:`FailedPrecondition` when that fails."""
    try:
        if path.suffix == ".joblib":
            joblib = import_framework("joblib", needed_for=f"{path.name} (SCIKIT_LEARN)")
            model = joblib.load(path)
        else:
            with path.open("rb") as handle:
                model = pickle.load(handle)
    except MlEngineError:
        raise
    except ModuleNotFoundError as exc:
        module = exc.name or "?"
        raise FailedPrecondition(
            f"{path} refers to the Python module {module!r}, which the server cannot import; "
            f"install it ({install_hint(module)}) or, for your own code, add its package to "
            "the version's packageUris",
            field="deploymentUri",
        ) from exc
    except Exception as exc:  # unpickling can raise anything the pickled classes raise
        raise FailedPrecondition(
            f"{path} cannot be unpickled ({type(exc).__name__}: {exc}); it may be corrupt or "
            "written by a library version the server does not have",
            field="deploymentUri",
        ) from exc
    return wrap(model, path, threads=threads)


def wrap(model: Any, path: Path, *, threads: int = 1) -> Predictor:
    """The predictor for an unpickled ``model`` (a Booster goes to its framework's)."""
    kind = type(model)
    if kind.__name__ == "Booster" and kind.__module__.startswith("xgboost"):
        from mlengine.serving.xgboost_model import XgboostPredictor

        return XgboostPredictor(model, path.parent, threads=threads)
    if kind.__name__ == "Booster" and kind.__module__.startswith("lightgbm"):
        from mlengine.serving.lightgbm_model import LightgbmPredictor

        return LightgbmPredictor(model, path.parent, threads=threads)
    if not callable(getattr(model, "predict", None)):
        raise FailedPrecondition(
            f"{path} holds a {kind.__module__}.{kind.__qualname__}, which has no predict "
            "method; save the fitted estimator or pipeline itself",
            field="deploymentUri",
        )
    _limit_jobs(model, threads)
    return SklearnPredictor(model, path.parent, framework=_framework_of(kind.__module__))


def _framework_of(module: str) -> str:
    for prefix, framework in (("xgboost", "XGBOOST"), ("lightgbm", "LIGHTGBM")):
        if module.startswith(prefix):
            return framework
    return "SCIKIT_LEARN"


def _limit_jobs(model: Any, threads: int) -> None:
    """Set every ``n_jobs`` parameter to ``threads`` (unset means "all cores" for some)."""
    try:
        params = model.get_params(deep=True)
        jobs = {k: threads for k in params if k == "n_jobs" or k.endswith("__n_jobs")}
        if jobs:
            model.set_params(**jobs)
    except Exception:  # not a scikit-learn estimator: its threads stay as saved
        pass


class SklearnPredictor:
    """An estimator with the scikit-learn API, serving JSON instances (module docstring)."""

    def __init__(self, model: Any, model_dir: Path, *, framework: str = "SCIKIT_LEARN") -> None:
        self.framework = framework
        self.model = model
        self.model_dir = model_dir
        names = getattr(model, "feature_names_in_", None)
        self.feature_names = tuple(str(n) for n in names) if names is not None else None
        count = getattr(model, "n_features_in_", None)
        self.n_features = int(count) if isinstance(count, (int, np.integer)) else None

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        """Per instance: ``predict``, or with ``probabilities=True`` its class probabilities."""
        check_instances(instances)
        kwargs.pop("signature_name", None)
        method = self._method(kwargs.pop("probabilities", False))
        data = self._inputs(instances)
        try:
            output = method(data, **kwargs)
        except MlEngineError:
            raise
        except (ValueError, TypeError, KeyError, IndexError) as exc:
            raise InvalidArgument(
                f"the model rejected the instances: {type(exc).__name__}: {exc}",
                field="instances",
            ) from exc
        return batch_rows(output, len(instances))

    def probe_instances(self) -> list[Any] | None:
        example = read_input_example(self.model_dir)
        if example is not None:
            return example
        if self.feature_names:
            known = dict(_encoder_categories(self.model))
            return [{name: known.get(name, 0.0) for name in self.feature_names}]
        if self.n_features:
            return [[0.0] * self.n_features]
        return None

    def _method(self, probabilities: object) -> Any:
        if not isinstance(probabilities, bool):
            raise InvalidArgument(
                f"probabilities must be true or false, got {probabilities!r}",
                field="probabilities",
            )
        if not probabilities:
            return self.model.predict
        method = getattr(self.model, "predict_proba", None)
        if not callable(method):
            raise InvalidArgument(
                f"the model ({type(self.model).__name__}) has no predict_proba, so it cannot "
                "return probabilities; leave probabilities unset",
                field="probabilities",
            )
        return method

    def _inputs(self, instances: list[Any]) -> Any:
        """A DataFrame (objects, or rows of a model fitted on one) or ``numpy.array``."""
        names = self.feature_names
        if instance_form(instances) == "objects":
            frame = self._pandas().DataFrame(instances)
            if names is None:
                return frame
            check_fields(instances, names)
            return frame.reindex(columns=list(names))
        if names is not None:
            _check_widths(instances, names)
            return self._pandas().DataFrame(instances, columns=list(names))
        try:
            array = np.asarray(instances)
        except ValueError:  # ragged rows
            array = None
        width = self.n_features
        if array is None or (array.ndim == 2 and width is not None and array.shape[1] != width):
            if width is None and isinstance(instances[0], list):
                width = len(instances[0])
            if width is not None:
                _check_widths(instances, [f"feature {i}" for i in range(width)])
        if array is None:
            raise InvalidArgument("instances must be rows of one shape", field="instances")
        return array

    def _pandas(self) -> Any:
        return import_framework("pandas", needed_for=f"{self.framework} models from objects")


def _check_widths(instances: Sequence[Any], names: Sequence[str]) -> None:
    for index, row in enumerate(instances):
        if not isinstance(row, list) or len(row) != len(names):
            raise InvalidArgument(
                f"instance {index} must be a list of {len(names)} values, one per feature "
                f"({', '.join(names[:8])}{', …' if len(names) > 8 else ''}), or an object "
                "keyed by feature name",
                field=f"instances[{index}]",
            )


def _encoder_categories(model: Any) -> Iterator[tuple[str, Any]]:
    """(column, first known category) for columns a fitted encoder of a ColumnTransformer takes."""
    for estimator in _estimators(model):
        for _, transformer, columns in getattr(estimator, "transformers_", ()):
            if not isinstance(columns, (list, tuple, np.ndarray)):
                continue
            names = [c for c in columns if isinstance(c, str)]
            encoder = next((e for e in _estimators(transformer) if hasattr(e, "categories_")), None)
            if encoder is None or len(names) != len(encoder.categories_):
                continue
            for name, categories in zip(names, encoder.categories_, strict=True):
                if len(categories):
                    yield name, json_ready(categories[0])


def _estimators(model: Any) -> Iterator[Any]:
    """``model`` and, for a Pipeline, its steps (depth-first)."""
    yield model
    for _, step in getattr(model, "steps", ()):
        yield from _estimators(step)
