"""Semantic rules of a HyperparameterSpec and its ParameterSpecs (spec §1.6-1.7).

Rules, each reported against the lowerCamelCase path of the field at fault:

* ``params`` is non-empty and ``parameterName`` values are unique.
* ``parameterName`` is usable as a flag ``--<name>=<value>``: non-empty, printable, no
  whitespace or ``=``, and not starting with ``-``.
* ``type`` is set and not PARAMETER_TYPE_UNSPECIFIED.
* DOUBLE / INTEGER: ``minValue`` and ``maxValue`` finite with ``minValue < maxValue``
  (equal bounds are rejected: a one-point range is not a search, and the tuner maps the
  range onto (0, 1)); INTEGER bounds are whole numbers; no categorical/discrete values.
* UNIT_LOG_SCALE / UNIT_REVERSE_LOG_SCALE: the whole range is > 0.
* CATEGORICAL: non-empty, unique ``categoricalValues``; no min/max/discrete values and no
  scale other than NONE.
* DISCRETE: 1-1000 finite, strictly increasing ``discreteValues``; min/max are ignored.
* GRID_SEARCH: no DOUBLE parameters.
* ``maxTrials``, ``maxParallelTrials`` >= 0 (0 means unset, i.e. 1), ``maxParallelTrials`` <=
  ``maxTrials``, ``maxFailedTrials`` >= 0, ``resumePreviousJobId`` a valid job id.

Defaults applied by :func:`hyperparameter_defaults`: goal MAXIMIZE (also for
GOAL_TYPE_UNSPECIFIED), maxTrials 1, maxParallelTrials 1, hyperparameterMetricTag
``training/hptuning/metric``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from mlengine.domain.names import validate_resource_id
from mlengine.domain.problems import Problems
from mlengine.domain.resources_jobs import (
    Algorithm,
    GoalType,
    HyperparameterSpec,
    ParameterSpec,
    ParameterType,
    ScaleType,
)

DEFAULT_HYPERPARAMETER_METRIC_TAG = "training/hptuning/metric"
DEFAULT_MAX_TRIALS = 1
DEFAULT_MAX_PARALLEL_TRIALS = 1
MAX_DISCRETE_VALUES = 1000

_FLAG_NAME = re.compile(r"[^\s=-][^\s=]*")
_LOG_SCALES = (ScaleType.UNIT_LOG_SCALE, ScaleType.UNIT_REVERSE_LOG_SCALE)
_TYPES = "DOUBLE, INTEGER, CATEGORICAL or DISCRETE"


def check_hyperparameter_spec(spec: HyperparameterSpec, path: str, problems: Problems) -> None:
    """Add every problem of ``spec`` (found at ``path``) to ``problems``."""
    params = spec.params or []
    if not params:
        problems.add(
            f"{path}.params",
            f"'{path}.params' needs at least one parameter to tune, e.g. "
            '{"parameterName": "learning_rate", "type": "DOUBLE", "minValue": 0.0001, '
            '"maxValue": 0.1, "scaleType": "UNIT_LOG_SCALE"}.',
        )
    first_index: dict[str, int] = {}
    for index, param in enumerate(params):
        param_path = f"{path}.params[{index}]"
        check_parameter(param, param_path, spec.algorithm, problems)
        name = param.parameter_name
        if name and name in first_index:
            problems.add(
                f"{param_path}.parameterName",
                f"Duplicate parameterName {name!r} at '{param_path}.parameterName' (also "
                f"'{path}.params[{first_index[name]}]'); each parameter may appear only once.",
            )
        elif name:
            first_index[name] = index
    _check_budget(spec, path, problems)
    if spec.resume_previous_job_id:
        job_id = spec.resume_previous_job_id
        problems.capture(
            lambda: validate_resource_id(job_id, field=f"{path}.resumePreviousJobId", kind="job")
        )


def _check_budget(spec: HyperparameterSpec, path: str, problems: Problems) -> None:
    for name, value in (
        ("maxTrials", spec.max_trials),
        ("maxParallelTrials", spec.max_parallel_trials),
        ("maxFailedTrials", spec.max_failed_trials),
    ):
        if value is not None and value < 0:
            problems.add(f"{path}.{name}", f"'{path}.{name}' must be 0 or more (got {value}).")
    trials = spec.max_trials or DEFAULT_MAX_TRIALS
    parallel = spec.max_parallel_trials or DEFAULT_MAX_PARALLEL_TRIALS
    if trials > 0 and parallel > trials:
        problems.add(
            f"{path}.maxParallelTrials",
            f"'{path}.maxParallelTrials' ({parallel}) cannot exceed maxTrials ({trials}); "
            "lower maxParallelTrials or raise maxTrials.",
        )


def check_parameter(
    param: ParameterSpec, path: str, algorithm: Algorithm | None, problems: Problems
) -> None:
    """Add every problem of one ParameterSpec (found at ``path``) to ``problems``."""
    _check_parameter_name(param.parameter_name, f"{path}.parameterName", problems)
    kind = param.type
    if kind is None or kind is ParameterType.PARAMETER_TYPE_UNSPECIFIED:
        problems.add(f"{path}.type", f"'{path}.type' is required: one of {_TYPES}.")
        return
    if kind in (ParameterType.DOUBLE, ParameterType.INTEGER):
        _check_range(param, kind, path, problems)
    elif kind is ParameterType.CATEGORICAL:
        _check_categorical(param, path, problems)
    else:
        _check_discrete(param, path, problems)
    if algorithm is Algorithm.GRID_SEARCH and kind is ParameterType.DOUBLE:
        problems.add(
            f"{path}.type",
            f"GRID_SEARCH cannot search the DOUBLE parameter at '{path}': use type DISCRETE "
            "with discreteValues (e.g. [0.001, 0.01, 0.1]) or INTEGER, or choose another "
            "algorithm.",
        )


def _check_parameter_name(name: str | None, path: str, problems: Problems) -> None:
    if not name:
        problems.add(path, f"'{path}' is required: the flag name the trainer receives.")
    elif not (_FLAG_NAME.fullmatch(name) and name.isprintable()):
        fixed = re.sub(r"[\s=]+", "_", name).lstrip("-") or "param"
        problems.add(
            path,
            f"Invalid parameterName {name!r} at '{path}': the trainer receives it as the flag "
            "--<parameterName>=<value>, so it must not contain spaces or '=' nor start with "
            f"'-'. Try {fixed!r}.",
        )


def _check_range(param: ParameterSpec, kind: ParameterType, path: str, problems: Problems) -> None:
    low = _bound(param.min_value, kind, f"{path}.minValue", problems)
    high = _bound(param.max_value, kind, f"{path}.maxValue", problems)
    if low is not None and high is not None and not low < high:
        problems.add(
            f"{path}.maxValue",
            f"'{path}.maxValue' ({high:g}) must be greater than minValue ({low:g}); to fix a "
            "value instead of tuning it, pass it in trainingInput.args.",
        )
    if low is not None and low <= 0 and param.scale_type in _LOG_SCALES:
        problems.add(
            f"{path}.minValue",
            f"{param.scale_type} needs a range above 0, but '{path}.minValue' is {low:g}; "
            "raise minValue (e.g. 1e-05) or use UNIT_LINEAR_SCALE.",
        )
    _forbid(param.categorical_values, f"{path}.categoricalValues", "CATEGORICAL", problems)
    _forbid(param.discrete_values, f"{path}.discreteValues", "DISCRETE", problems)


def _bound(value: float | None, kind: ParameterType, path: str, problems: Problems) -> float | None:
    """``value`` if it is a usable bound for ``kind``, else None after adding a problem."""
    if value is None:
        problems.add(path, f"'{path}' is required for {kind} parameters.")
    elif not math.isfinite(value):
        problems.add(path, f"'{path}' must be a finite number (got {value}).")
    elif kind is ParameterType.INTEGER and not value.is_integer():
        problems.add(
            path, f"'{path}' must be a whole number for INTEGER parameters (got {value:g})."
        )
    else:
        return value
    return None


def _forbid(value: object, path: str, kind: str, problems: Problems) -> None:
    if value is not None:
        problems.add(path, f"'{path}' is only used by {kind} parameters; remove it.")


def _check_categorical(param: ParameterSpec, path: str, problems: Problems) -> None:
    values = param.categorical_values or []
    if not values:
        problems.add(
            f"{path}.categoricalValues",
            f"'{path}.categoricalValues' needs at least one value for CATEGORICAL parameters, "
            'e.g. ["adam", "sgd"].',
        )
    for index, value in enumerate(values):
        if value in values[:index]:
            problems.add(
                f"{path}.categoricalValues[{index}]",
                f"Duplicate value {value!r} at '{path}.categoricalValues[{index}]'; "
                "each category may appear only once.",
            )
    for name, bound in (("minValue", param.min_value), ("maxValue", param.max_value)):
        if bound is not None:
            problems.add(
                f"{path}.{name}",
                f"'{path}.{name}' cannot be set for CATEGORICAL parameters; remove it.",
            )
    if param.scale_type not in (None, ScaleType.NONE):
        problems.add(
            f"{path}.scaleType",
            f"'{path}.scaleType' cannot be set for CATEGORICAL parameters; remove it.",
        )
    _forbid(param.discrete_values, f"{path}.discreteValues", "DISCRETE", problems)


def _check_discrete(param: ParameterSpec, path: str, problems: Problems) -> None:
    values = param.discrete_values or []
    field = f"{path}.discreteValues"
    if not values:
        problems.add(
            field, f"'{field}' needs at least one value for DISCRETE parameters, e.g. [1, 2, 4]."
        )
    elif len(values) > MAX_DISCRETE_VALUES:
        problems.add(
            field, f"'{field}' has {len(values)} values; at most {MAX_DISCRETE_VALUES} allowed."
        )
    _check_increasing(values, field, problems)
    if param.scale_type in _LOG_SCALES and any(v <= 0 for v in values):
        problems.add(
            field,
            f"{param.scale_type} needs every value of '{field}' to be above 0; remove the "
            "values <= 0 or use UNIT_LINEAR_SCALE.",
        )
    _forbid(param.categorical_values, f"{path}.categoricalValues", "CATEGORICAL", problems)


def _check_increasing(values: Sequence[float], field: str, problems: Problems) -> None:
    for index, value in enumerate(values):
        if not math.isfinite(value):
            problems.add(f"{field}[{index}]", f"'{field}[{index}]' must be a finite number.")
        elif index and math.isfinite(values[index - 1]) and value <= values[index - 1]:
            problems.add(
                f"{field}[{index}]",
                f"'{field}' must be strictly increasing, but {value:g} follows "
                f"{values[index - 1]:g}; sort the values and remove duplicates.",
            )


def hyperparameter_defaults(spec: HyperparameterSpec) -> HyperparameterSpec:
    """``spec`` with the documented defaults filled in (see the module docstring)."""
    update: dict[str, object] = {}
    if spec.goal in (None, GoalType.GOAL_TYPE_UNSPECIFIED):
        update["goal"] = GoalType.MAXIMIZE
    if not spec.max_trials:
        update["max_trials"] = DEFAULT_MAX_TRIALS
    if not spec.max_parallel_trials:
        update["max_parallel_trials"] = DEFAULT_MAX_PARALLEL_TRIALS
    if not spec.hyperparameter_metric_tag:
        update["hyperparameter_metric_tag"] = DEFAULT_HYPERPARAMETER_METRIC_TAG
    return spec.model_copy(update=update)
