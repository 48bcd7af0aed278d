"""Train the census scikit-learn pipeline.

``python -m trainer.task --train-files … --eval-files … --job-dir …`` fits
:func:`trainer.pipeline.build` on the UCI files, reports ``accuracy`` on the eval files for
hyperparameter tuning and saves ``<job-dir>/model/model.joblib``.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from typing import Any

import joblib
import sklearn

from trainer import data, pipeline

LOG = logging.getLogger("census")
MODEL_FILE = "model.joblib"


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse the flags; unknown flags (e.g. another sample's hyperparameters) are ignored."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--train-files", nargs="+", required=True, help="UCI adult.data paths/URIs")
    p.add_argument("--eval-files", nargs="+", required=True, help="UCI adult.test paths/URIs")
    p.add_argument("--job-dir", help="output dir; default: the job dir of TF_CONFIG")
    p.add_argument("--max-iter", type=int, default=100, help="boosting iterations")
    p.add_argument("--learning-rate", type=float, default=0.1)
    p.add_argument("--max-leaf-nodes", type=int, default=31)
    p.add_argument("--seed", type=int, default=42)
    args, unknown = p.parse_known_args(argv)
    if unknown:
        LOG.warning("ignoring unknown arguments: %s", " ".join(unknown))
    return args


def _sdk() -> Any:
    """The mlengine trainer SDK, or ``hypertune`` plus a context with no job dir."""
    try:
        from mlengine import trainer as sdk

        return sdk
    except ImportError:
        import types

        import hypertune

        tuner = hypertune.HyperTune()  # one instance: each rewrites the file with its entries

        def report_metric(tag: str, value: float, step: int | None = None) -> None:
            tuner.report_hyperparameter_tuning_metric(
                hyperparameter_metric_tag=tag, metric_value=value, global_step=step
            )

        context = types.SimpleNamespace(job_dir=None, is_chief=True)
        return types.SimpleNamespace(context=lambda: context, report_metric=report_metric)


def save(model: Any, job_dir: str, metadata: dict[str, Any]) -> str:
    """Write ``<job_dir>/model/{model.joblib,metadata.json}``, complete or not at all.

    A local job dir gets a temporary sibling renamed into place; a URI job dir (``gs://``…)
    gets the finished folder uploaded with fsspec.
    """
    remote = "://" in job_dir
    target = job_dir.rstrip("/") + "/model"
    if not remote:
        os.makedirs(job_dir, exist_ok=True)
    staging = tempfile.mkdtemp(prefix=".model-", dir=None if remote else job_dir)
    try:
        joblib.dump(model, os.path.join(staging, MODEL_FILE))
        with open(os.path.join(staging, "metadata.json"), "w", encoding="utf-8") as out:
            json.dump(metadata, out, indent=2, sort_keys=True)
        os.chmod(staging, 0o755)  # mkdtemp's 0700 would hide the model from a server user
        if remote:
            import fsspec

            fs, path = fsspec.core.url_to_fs(target)
            fs.put(staging, path, recursive=True)
        else:
            if os.path.exists(target):
                shutil.rmtree(target)
            os.replace(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the process exit status."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    args = parse_args(argv)
    sdk = _sdk()
    ctx = sdk.context()
    job_dir = args.job_dir or ctx.job_dir
    if not job_dir:
        LOG.error("no --job-dir given and none in TF_CONFIG")
        return 2
    if not ctx.is_chief:
        print("scikit-learn trains on one replica; this non-chief replica exits.")
        return 0
    started = time.monotonic()
    features, labels = data.load(args.train_files)
    model = pipeline.build(args.max_iter, args.learning_rate, args.max_leaf_nodes, args.seed)
    model.fit(features, labels)
    eval_features, eval_labels = data.load(args.eval_files)
    accuracy = float((model.predict(eval_features) == eval_labels).mean())
    LOG.info(
        "trained on %d rows in %.1f s; accuracy on %d eval rows: %.4f",
        len(labels),
        time.monotonic() - started,
        len(eval_labels),
        accuracy,
    )
    sdk.report_metric("accuracy", accuracy, args.max_iter)
    metadata = {
        "flags": vars(args) | {"job_dir": job_dir},
        "accuracy": accuracy,
        "feature_columns": list(data.FEATURE_COLUMNS),
        "labels": list(data.LABELS),
        "scikit_learn_version": sklearn.__version__,
    }
    LOG.info("saved the model to %s", save(model, job_dir, metadata))
    return 0


if __name__ == "__main__":
    sys.exit(main())
