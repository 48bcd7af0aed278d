"""Serve a custom prediction routine (spec §3.7): the version's own Python class.

The version sets ``predictionClass`` (``"module.Class"``, the module may be dotted) and ships
the code in ``packageUris``. Loading makes the packages importable (see
:mod:`mlengine.serving.user_code`: plain directories go on ``sys.path``, wheels and sdists are
pip-installed into a private temporary directory), imports the module and calls
``Class.from_path(model_dir)`` with the model directory (the local copy of
``deploymentUri``, as a ``str``); what it returns is the routine.

How instances reach the routine: unchanged. ``routine.predict(instances, **kwargs)`` gets
the request's ``instances`` list exactly as decoded from JSON (objects, rows, strings, …)
and the request's other top-level keys as keyword arguments.

Outputs: the routine returns a list (a tuple or a numpy array will do) with one entry per
instance; each entry is made JSON-ready (numpy types → Python, ``bytes`` → ``{"b64": …}``).
An exception from the routine becomes :class:`InvalidArgument` ("there was a problem
processing the user code", spec §3.5), except mlengine errors, which pass through.

Probe: ``input_example.json``; else the instances of the routine's own
``probe_instances()``, when it defines one; else none.

The routine runs inside the server with the server's rights — which is why
``allow_pickle=False`` refuses it — and its ``predict`` may be called from several threads
at once.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mlengine.domain.errors import FailedPrecondition, Internal, InvalidArgument, MlEngineError
from mlengine.serving import user_code
from mlengine.serving.instances import check_instances, read_input_example
from mlengine.serving.outputs import json_ready


def load(
    model_dir: Path, prediction_class: str, package_paths: Sequence[Path] = ()
) -> CustomRoutine:
    """Import ``prediction_class`` from ``package_paths`` and build it from ``model_dir``.

    Raises :class:`InvalidArgument` (field ``predictionClass``) for a malformed class path,
    :class:`FailedPrecondition` when the class cannot be imported or ``from_path`` fails.
    """
    module_name, _, class_name = prediction_class.rpartition(".")
    if not module_name or not class_name.isidentifier():
        raise InvalidArgument(
            f"predictionClass {prediction_class!r} must be module.Class (e.g. "
            "predictor.MyPredictor)",
            field="predictionClass",
        )
    user_code.make_importable(package_paths)
    with user_code.IMPORT_LOCK:
        user_code.forget_modules(module_name.split(".")[0])
        cls = _import_class(module_name, class_name, prediction_class)
    from_path = getattr(cls, "from_path", None)
    if not callable(from_path):
        raise FailedPrecondition(
            f"{prediction_class} has no from_path(model_dir) classmethod; a custom prediction "
            "routine is built with it",
            field="predictionClass",
        )
    try:
        routine = from_path(str(model_dir))
    except Exception as exc:  # the user's code may raise anything
        raise FailedPrecondition(
            f"{prediction_class}.from_path({str(model_dir)!r}) failed: {type(exc).__name__}: {exc}",
            field="predictionClass",
        ) from exc
    if not callable(getattr(routine, "predict", None)):
        raise FailedPrecondition(
            f"{prediction_class}.from_path returned a {type(routine).__name__} without a "
            "predict(instances, **kwargs) method",
            field="predictionClass",
        )
    return CustomRoutine(routine, model_dir, prediction_class)


def _import_class(module_name: str, class_name: str, prediction_class: str) -> Any:
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # ImportError, or anything the module raises at import
        raise FailedPrecondition(
            f"predictionClass {prediction_class}: module {module_name!r} cannot be imported "
            f"({type(exc).__name__}: {exc}); ship it in the version's packageUris",
            field="predictionClass",
        ) from exc
    cls = getattr(module, class_name, None)
    if cls is None:
        raise FailedPrecondition(
            f"predictionClass {prediction_class}: module {module_name!r} has no {class_name!r}",
            field="predictionClass",
        )
    return cls


class CustomRoutine:
    """A user's routine behind the Predictor contract (see the module docstring)."""

    framework = "CUSTOM"

    def __init__(self, routine: Any, model_dir: Path, prediction_class: str) -> None:
        self.routine = routine
        self.model_dir = model_dir
        self.prediction_class = prediction_class

    def predict(self, instances: list[Any], **kwargs: Any) -> list[Any]:
        check_instances(instances)
        try:
            result = self.routine.predict(instances, **kwargs)
        except MlEngineError:
            raise
        except Exception as exc:  # the user's code may raise anything
            raise InvalidArgument(
                "Prediction failed: there was a problem processing the user code: "
                f"{type(exc).__name__}: {exc}",
                field="instances",
            ) from exc
        if isinstance(result, np.ndarray | tuple):
            result = list(result)
        if not isinstance(result, list) or len(result) != len(instances):
            got = f"{len(result)} entries" if isinstance(result, list) else type(result).__name__
            raise Internal(
                f"{self.prediction_class}.predict must return a list with one prediction per "
                f"instance ({len(instances)}); it returned {got}"
            )
        return [json_ready(prediction) for prediction in result]

    def probe_instances(self) -> list[Any] | None:
        example = read_input_example(self.model_dir)
        if example is not None:
            return example
        probe = getattr(self.routine, "probe_instances", None)
        if not callable(probe):
            return None
        instances = probe()
        return instances if isinstance(instances, list) and instances else None
