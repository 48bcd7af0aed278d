"""Wrap the census pipeline as an MLflow model (sklearn flavor, which is also a pyfunc).

    <mlflow venv>/bin/python mlflow_save.py MODEL_JOBLIB BODY_JSON OUT_DIR

The signature is inferred from the benchmark's instances (as ``mlflow.sklearn.log_model``
with an input example would), so the scoring server enforces it on every request.
"""

from __future__ import annotations

import json
import shutil
import sys

import joblib
import mlflow.sklearn
import pandas as pd
from mlflow.models import infer_signature


def main(model_path: str, body_path: str, out: str) -> None:
    model = joblib.load(model_path)
    with open(body_path, encoding="utf-8") as handle:
        frame = pd.DataFrame(json.load(handle)["instances"])
    signature = infer_signature(frame, model.predict(frame))
    shutil.rmtree(out, ignore_errors=True)
    # The default (skops) refuses the pipeline's numpy/pandas functions and tree predictors;
    # cloudpickle is what the model already is (a joblib pickle) and what MLflow 2 used.
    mlflow.sklearn.save_model(model, out, signature=signature, serialization_format="cloudpickle")


if __name__ == "__main__":
    main(*sys.argv[1:4])
