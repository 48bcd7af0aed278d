"""Hypothesis strategies for the domain: ids, names, resource models and JSON-ish noise."""

from __future__ import annotations

import types
from datetime import UTC, timedelta
from enum import Enum
from typing import Annotated, Any, Union, get_args, get_origin

from hypothesis import strategies as st
from pydantic import Strict

from mlengine.domain.resources import (
    Algorithm,
    ApiModel,
    GoalType,
    HyperparameterSpec,
    Job,
    ParameterSpec,
    ParameterType,
    ScaleTier,
    ScaleType,
    Scheduling,
    TrainingInput,
    WireFormat,
)

VALID_ID = r"\A[A-Za-z][A-Za-z0-9_]{0,127}\Z"
VALID_PROJECT = r"\A[a-z][a-z0-9._-]{0,62}\Z"

resource_ids = st.from_regex(VALID_ID)
project_ids = st.from_regex(VALID_PROJECT)
operation_ids = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._-]{0,40}\Z")

_WIRE_VALUES: dict[WireFormat, st.SearchStrategy[Any]] = {
    WireFormat.INT64: st.integers(-(2**63), 2**63 - 1),
    WireFormat.INT32: st.integers(-(2**31), 2**31 - 1),
    # NaN is excluded only because NaN != NaN would defeat equality checks.
    WireFormat.DOUBLE: st.floats(allow_nan=False),
    WireFormat.TIMESTAMP: st.datetimes(timezones=st.just(UTC)),
    WireFormat.DURATION: st.timedeltas(
        min_value=timedelta(days=-3_000_000), max_value=timedelta(days=3_000_000)
    ),
    WireFormat.BYTES: st.binary(max_size=24),
}


def wire_format(annotation: Any) -> WireFormat | None:
    """The WireFormat marker of a field annotation (``Int64 | None`` -> INT64), if any."""
    if get_origin(annotation) in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        return wire_format(members[0]) if len(members) == 1 else None
    if get_origin(annotation) is Annotated:
        return next((m for m in get_args(annotation)[1:] if isinstance(m, WireFormat)), None)
    return None


def python_type(annotation: Any) -> Any:
    """``annotation`` without ``| None`` and ``Annotated`` wrappers (``Int64 | None`` -> int)."""
    if get_origin(annotation) in (Union, types.UnionType):
        (member,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return python_type(member)
    if get_origin(annotation) is Annotated:
        return python_type(get_args(annotation)[0])
    return annotation


def values_for(annotation: Any) -> st.SearchStrategy[Any]:
    """Values of the Python type a model field is annotated with."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        (member,) = [arg for arg in get_args(annotation) if arg is not type(None)]
        return values_for(member)
    if origin is Annotated:
        base, *metadata = get_args(annotation)
        for item in metadata:
            if isinstance(item, WireFormat):
                return _WIRE_VALUES[item]
            if isinstance(item, Strict) and base is bool:
                return st.booleans()
        return values_for(base)
    if origin is list:
        return st.lists(values_for(get_args(annotation)[0]), max_size=3)
    if origin is dict:
        return st.dictionaries(st.text(max_size=8), st.text(max_size=8), max_size=3)
    if isinstance(annotation, type) and issubclass(annotation, Enum):
        return st.sampled_from(list(annotation))
    if isinstance(annotation, type) and issubclass(annotation, ApiModel):
        return models(annotation)
    if annotation is str:
        return st.text(max_size=12)
    raise AssertionError(f"no strategy for {annotation!r}")


def models(model: type[ApiModel]) -> st.SearchStrategy[Any]:
    """Type-valid instances of ``model`` with a random subset of fields set."""
    optional = {name: values_for(info.annotation) for name, info in model.model_fields.items()}
    return st.fixed_dictionaries({}, optional=optional).map(lambda kwargs: model(**kwargs))


jobs: st.SearchStrategy[Job] = models(Job)

_FIELD_NAMES = sorted(
    {
        name
        for model in ApiModel.__subclasses__()
        for field, info in model.model_fields.items()
        for name in (field, info.alias or field)
    }
)
_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | st.text(max_size=10)
    | st.sampled_from(["4", "7200s", "2017-03-07T17:13:34Z", "CUSTOM", "DOUBLE", "YWJj", "-1"])
)
#: Arbitrary JSON-ish documents whose keys are often real field names, to reach deep paths.
json_documents = st.recursive(
    _SCALARS,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(_FIELD_NAMES) | st.text(max_size=6), children, max_size=5)
    ),
    max_leaves=30,
)


# --- semantically valid jobs -------------------------------------------------------------

_flag_names = st.from_regex(r"\A[a-z][a-z0-9_-]{0,15}\Z")
_finite = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def parameter_specs(draw: st.DrawFn, name: str, *, grid: bool = False) -> ParameterSpec:
    """A ParameterSpec that satisfies every validation rule."""
    kinds = [ParameterType.INTEGER, ParameterType.CATEGORICAL, ParameterType.DISCRETE]
    kind = draw(st.sampled_from(kinds if grid else [*kinds, ParameterType.DOUBLE]))
    scale = draw(st.sampled_from([None, *ScaleType]))
    if kind is ParameterType.CATEGORICAL:
        categories = draw(
            st.lists(st.text(min_size=1, max_size=6), min_size=1, max_size=4, unique=True)
        )
        return ParameterSpec(parameter_name=name, type=kind, categorical_values=categories)
    positive = scale in (ScaleType.UNIT_LOG_SCALE, ScaleType.UNIT_REVERSE_LOG_SCALE)
    if kind is ParameterType.DISCRETE:
        drawn = draw(st.lists(_finite, min_size=1, max_size=6, unique=True))
        values = {abs(v) + 1 for v in drawn} if positive else set(drawn)
        return ParameterSpec(
            parameter_name=name, type=kind, discrete_values=sorted(values), scale_type=scale
        )
    low = draw(st.integers(1 if positive else -1000, 1000))
    high = low + draw(st.integers(1, 1000))
    if kind is ParameterType.DOUBLE:
        low_f = draw(st.floats(min_value=0.001, max_value=0.5)) if positive else float(low)
        return ParameterSpec(
            parameter_name=name, type=kind, min_value=low_f, max_value=float(high), scale_type=scale
        )
    return ParameterSpec(
        parameter_name=name, type=kind, min_value=low, max_value=high, scale_type=scale
    )


@st.composite
def hyperparameter_specs(draw: st.DrawFn) -> HyperparameterSpec:
    algorithm = draw(st.sampled_from([None, *Algorithm]))
    names = draw(st.lists(_flag_names, min_size=1, max_size=4, unique=True))
    grid = algorithm is Algorithm.GRID_SEARCH
    params = [draw(parameter_specs(name, grid=grid)) for name in names]
    max_trials = draw(st.integers(1, 50))
    return HyperparameterSpec(
        params=params,
        algorithm=algorithm,
        goal=draw(st.sampled_from([None, *GoalType])),
        max_trials=max_trials,
        max_parallel_trials=draw(st.integers(1, max_trials)),
        max_failed_trials=draw(st.none() | st.integers(0, 10)),
        hyperparameter_metric_tag=draw(st.none() | st.text(max_size=10)),
    )


@st.composite
def valid_training_jobs(draw: st.DrawFn) -> Job:
    """A training Job that :func:`validate_job` accepts."""
    tier = draw(st.sampled_from([None, *ScaleTier]))
    cluster: dict[str, Any] = {}
    if tier is ScaleTier.CUSTOM:
        workers = draw(st.integers(0, 8))
        cluster = {"master_type": "n1-standard-4", "worker_count": workers}
        if workers:
            cluster["worker_type"] = "n1-standard-4"
    training = TrainingInput(
        scale_tier=tier,
        python_module=draw(st.from_regex(r"\A[a-z_][a-z0-9_]{0,8}(\.[a-z_][a-z0-9_]{0,8})?\Z")),
        package_uris=draw(st.lists(st.from_regex(r"\A[a-z]{1,8}\.tar\.gz\Z"), max_size=3)),
        args=draw(st.lists(st.text(max_size=8), max_size=3)),
        region=draw(st.none() | st.sampled_from(["local", "us-central1"])),
        python_version=draw(st.none() | st.sampled_from(["3.7", "3.11"])),
        hyperparameters=draw(st.none() | hyperparameter_specs()),
        scheduling=Scheduling(
            max_running_time=timedelta(seconds=draw(st.integers(1, 10**6))),
            priority=draw(st.integers(0, 1000)),
        ),
        **cluster,
    )
    labels = draw(
        st.dictionaries(
            st.from_regex(r"\A[a-z][a-z0-9_-]{0,10}\Z"),
            st.from_regex(r"\A[a-z0-9_-]{0,10}\Z"),
            max_size=3,
        )
    )
    return Job(job_id=draw(resource_ids), labels=labels or None, training_input=training)
