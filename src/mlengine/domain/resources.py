"""The v1 API resources: one import point for the models and their parsers.

The models live in ``resources_jobs`` (Job and everything nested in it), built on the base
class and error translation of ``resources_common`` and the scalar wire types of
``resources_wire``.  Import from here::

    from mlengine.domain.resources import Job, TrainingInput, parse_job

Wire rules (see ``docs/resources.md``): camelCase JSON names (snake_case accepted on input),
unknown fields rejected, int64 written as strings but accepted as numbers, timestamps as
RFC 3339 ``...Z``, durations as ``"7200s"``, unset fields omitted.
"""

from mlengine.domain.resources_common import ApiModel, parse_resource
from mlengine.domain.resources_jobs import (
    AcceleratorConfig,
    AcceleratorType,
    Algorithm,
    BuiltInAlgorithmOutput,
    DataFormat,
    DiskConfig,
    EncryptionConfig,
    GoalType,
    HyperparameterMetric,
    HyperparameterOutput,
    HyperparameterSpec,
    Job,
    ParameterSpec,
    ParameterType,
    PredictionInput,
    PredictionOutput,
    ReplicaConfig,
    ScaleTier,
    ScaleType,
    Scheduling,
    TrainingInput,
    TrainingOutput,
    parse_hyperparameter_spec,
    parse_job,
    parse_training_input,
)
from mlengine.domain.resources_wire import (
    Base64Bytes,
    Bool,
    Double,
    Duration,
    Int32,
    Int64,
    Timestamp,
    WireFormat,
)
from mlengine.domain.states import JobState

__all__ = [
    "AcceleratorConfig",
    "AcceleratorType",
    "Algorithm",
    "ApiModel",
    "Base64Bytes",
    "Bool",
    "BuiltInAlgorithmOutput",
    "DataFormat",
    "DiskConfig",
    "Double",
    "Duration",
    "EncryptionConfig",
    "GoalType",
    "HyperparameterMetric",
    "HyperparameterOutput",
    "HyperparameterSpec",
    "Int32",
    "Int64",
    "Job",
    "JobState",
    "ParameterSpec",
    "ParameterType",
    "PredictionInput",
    "PredictionOutput",
    "ReplicaConfig",
    "ScaleTier",
    "ScaleType",
    "Scheduling",
    "Timestamp",
    "TrainingInput",
    "TrainingOutput",
    "WireFormat",
    "parse_hyperparameter_spec",
    "parse_job",
    "parse_resource",
    "parse_training_input",
]
