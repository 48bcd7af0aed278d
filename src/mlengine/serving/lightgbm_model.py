"""Serve a LightGBM ``Booster`` saved with ``save_model`` (``model.txt``). A pickled Booster
(``model.joblib``/``model.pkl``) lands here too, through the pickle loader.

How instances become the model's input — one float64 matrix for ``Booster.predict``:

* **rows**: lists of ``num_feature()`` numbers; ``null`` is NaN, LightGBM's "missing";
  numbers sent as strings are parsed.
* **objects**: keyed by the booster's ``feature_name()`` (the training DataFrame's columns,
  or ``Column_0``, ``Column_1``, … when it was trained on an array); values are taken in
  that order, an absent field or ``null`` is missing, an unknown field is refused.
  Categorical features take their category codes (numbers).

Outputs: ``Booster.predict`` — per instance a number (``binary`` probability, regression
value) or a list (``multiclass`` probabilities). Request keys other than ``signature_name``
are passed to ``Booster.predict`` as keyword arguments (e.g. ``"raw_score": true``).

Probe: ``input_example.json``, else one row of ``num_feature()`` zeros.
Threads: ``num_threads`` on every ``predict`` (LightGBM ignores it when loading a file).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mlengine.domain.errors import InvalidArgument
from mlengine.serving.dependencies import import_framework
from mlengine.serving.instances import check_instances, feature_matrix, read_input_example
from mlengine.serving.outputs import batch_rows
from mlengine.serving.predictor import first_line, load_failure


def load(path: Path, *, threads: int = 1) -> LightgbmPredictor:
    """Load a Booster file; :class:`FailedPrecondition` when LightGBM is absent or refuses it."""
    lightgbm = import_framework("lightgbm", needed_for=f"{path.name} (LIGHTGBM)")
    try:
        booster = lightgbm.Booster(model_file=str(path))
    except Exception as exc:  # LightGBMError, or OSError for an unreadable file
        raise load_failure(path, "a LightGBM model", exc) from exc
    return LightgbmPredictor(booster, path.parent, threads=threads)


class LightgbmPredictor:
    """A Booster serving JSON instances (see the module docstring). Thread-safe."""

    framework = "LIGHTGBM"

    def __init__(self, booster: Any, model_dir: Path, *, threads: int = 1) -> None:
        lightgbm = import_framework("lightgbm", needed_for="a LightGBM Booster")
        # LightGBMError is a bare Exception: the errors bad instances cause, listed.
        self._rejections: tuple[type[Exception], ...] = (
            ValueError,
            TypeError,
            lightgbm.basic.LightGBMError,
        )
        self.booster = booster
        self.model_dir = model_dir
        self.threads = threads
        self.feature_names = tuple(str(name) for name in booster.feature_name())
        self.n_features = int(booster.num_feature())

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        check_instances(instances)
        kwargs.pop("signature_name", None)
        kwargs.setdefault("num_threads", self.threads)
        matrix = feature_matrix(instances, names=self.feature_names, width=self.n_features)
        try:
            output = self.booster.predict(matrix, **kwargs)
        except self._rejections as exc:
            raise InvalidArgument(
                f"the model rejected the instances: {first_line(exc)}", field="instances"
            ) from exc
        return batch_rows(output, len(instances))

    def probe_instances(self) -> list[Any] | None:
        example = read_input_example(self.model_dir)
        if example is not None:
            return example
        return [[0.0] * self.n_features] if self.n_features else None
