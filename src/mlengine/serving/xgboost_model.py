"""Serve an XGBoost ``Booster`` saved with ``save_model`` (``model.bst``, ``model.json``,
``model.ubj``). A pickled Booster (``model.joblib``/``model.pkl``) lands here too, through
the pickle loader.

How instances become the model's input — one ``xgboost.DMatrix``:

* **rows**: lists of ``num_features()`` numbers, as spec §3.6 (``numpy.array(instances)``);
  ``null`` is NaN, XGBoost's "missing"; numbers sent as strings are parsed.
* **objects**: keyed by the booster's ``feature_names`` (recorded when it was trained on a
  DataFrame or with ``feature_names=``); the values are taken in that order, an absent field
  or ``null`` is missing, an unknown field is refused. A booster without feature names
  takes rows only. Categorical features take their category codes (numbers).

Outputs: ``Booster.predict`` — per instance a number (``binary:logistic`` probability,
regression value) or a list (``multi:softprob`` class probabilities). Request keys other than
``signature_name`` are passed to ``Booster.predict`` as keyword arguments (e.g.
``"output_margin": true``).

Probe: ``input_example.json``, else one row of ``num_features()`` zeros.
Threads: the booster's ``nthread`` parameter.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlengine.domain.errors import InvalidArgument
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import check_instances, feature_matrix, read_input_example
from mlengine.serving.outputs import batch_rows
from mlengine.serving.predictor import first_line, load_failure


def load(path: Path, *, threads: int = 1) -> XgboostPredictor:
    """Load a Booster file; :class:`FailedPrecondition` when XGBoost is absent or refuses it."""
    xgboost = import_framework("xgboost", needed_for=f"{path.name} (XGBOOST)")
    try:
        booster = xgboost.Booster(model_file=str(path))
    except Exception as exc:  # XGBoostError, or OSError for an unreadable file
        raise load_failure(
            path,
            "an XGBoost model",
            exc,
            "it may be corrupt or saved by a newer XGBoost than the server's "
            f"({xgboost.__version__})",
        ) from exc
    return XgboostPredictor(booster, path.parent, threads=threads)


class XgboostPredictor:
    """A Booster serving JSON instances (see the module docstring). Thread-safe."""

    framework = "XGBOOST"

    def __init__(self, booster: Any, model_dir: Path, *, threads: int = 1) -> None:
        self._xgboost = import_framework("xgboost", needed_for="an XGBoost Booster")
        booster.set_param({"nthread": threads})
        self.booster = booster
        self.model_dir = model_dir
        self.threads = threads
        self.feature_names: tuple[str, ...] | None = (
            tuple(booster.feature_names) if booster.feature_names else None
        )
        self.feature_types: list[str] | None = booster.feature_types
        self.n_features = int(booster.num_features())

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        check_instances(instances)
        kwargs.pop("signature_name", None)
        matrix = feature_matrix(instances, names=self.feature_names, width=self.n_features)
        types = self.feature_types
        try:
            data = self._xgboost.DMatrix(
                matrix,
                feature_names=list(self.feature_names) if self.feature_names else None,
                feature_types=types,
                enable_categorical=bool(types and "c" in types),
                nthread=self.threads,
            )
            output = self.booster.predict(data, **kwargs)
        except (ValueError, TypeError) as exc:  # XGBoostError is a ValueError
            raise InvalidArgument(
                f"the model rejected the instances: {first_line(exc)}",
                field="instances",
            ) from exc
        return batch_rows(output, len(instances))

    def probe_instances(self) -> list[Any] | None:
        example = read_input_example(self.model_dir)
        if example is not None:
            return example
        return [[0.0] * self.n_features] if self.n_features else None
