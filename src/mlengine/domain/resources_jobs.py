"""The Job resource and everything nested in it, exactly as in ml.v1.json.

One model per discovery schema, with exactly that schema's fields (``API_SCHEMA`` names it;
``tests/domain/test_contract_ml_v1.py`` checks the correspondence).  Output-only fields are
part of the models; services set them.  These models check types only: semantic rules
(required fields, ranges, cross-field constraints) live in :mod:`mlengine.domain.validation`.
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from pydantic import Field

from mlengine.domain.resources_common import ApiModel
from mlengine.domain.resources_wire import (
    Base64Bytes,
    Bool,
    Double,
    Duration,
    Int32,
    Int64,
    Timestamp,
)
from mlengine.domain.states import JobState


class ScaleTier(StrEnum):
    """``TrainingInput.scaleTier``: the shape of the training cluster."""

    BASIC = "BASIC"
    STANDARD_1 = "STANDARD_1"
    PREMIUM_1 = "PREMIUM_1"
    BASIC_GPU = "BASIC_GPU"
    BASIC_TPU = "BASIC_TPU"
    CUSTOM = "CUSTOM"


class AcceleratorType(StrEnum):
    """``AcceleratorConfig.type``."""

    ACCELERATOR_TYPE_UNSPECIFIED = "ACCELERATOR_TYPE_UNSPECIFIED"
    NVIDIA_TESLA_K80 = "NVIDIA_TESLA_K80"
    NVIDIA_TESLA_P100 = "NVIDIA_TESLA_P100"
    NVIDIA_TESLA_V100 = "NVIDIA_TESLA_V100"
    NVIDIA_TESLA_P4 = "NVIDIA_TESLA_P4"
    NVIDIA_TESLA_T4 = "NVIDIA_TESLA_T4"
    NVIDIA_TESLA_A100 = "NVIDIA_TESLA_A100"
    TPU_V2 = "TPU_V2"
    TPU_V3 = "TPU_V3"
    TPU_V2_POD = "TPU_V2_POD"
    TPU_V3_POD = "TPU_V3_POD"
    TPU_V4_POD = "TPU_V4_POD"


class GoalType(StrEnum):
    """``HyperparameterSpec.goal``; UNSPECIFIED is treated as MAXIMIZE."""

    GOAL_TYPE_UNSPECIFIED = "GOAL_TYPE_UNSPECIFIED"
    MAXIMIZE = "MAXIMIZE"
    MINIMIZE = "MINIMIZE"


class Algorithm(StrEnum):
    """``HyperparameterSpec.algorithm``; UNSPECIFIED means the default (Bayesian) search."""

    ALGORITHM_UNSPECIFIED = "ALGORITHM_UNSPECIFIED"
    GRID_SEARCH = "GRID_SEARCH"
    RANDOM_SEARCH = "RANDOM_SEARCH"


class ParameterType(StrEnum):
    """``ParameterSpec.type``; UNSPECIFIED is an error."""

    PARAMETER_TYPE_UNSPECIFIED = "PARAMETER_TYPE_UNSPECIFIED"
    DOUBLE = "DOUBLE"
    INTEGER = "INTEGER"
    CATEGORICAL = "CATEGORICAL"
    DISCRETE = "DISCRETE"


class ScaleType(StrEnum):
    """``ParameterSpec.scaleType``: how the tuner maps a numeric range onto (0, 1)."""

    NONE = "NONE"
    UNIT_LINEAR_SCALE = "UNIT_LINEAR_SCALE"
    UNIT_LOG_SCALE = "UNIT_LOG_SCALE"
    UNIT_REVERSE_LOG_SCALE = "UNIT_REVERSE_LOG_SCALE"


class DataFormat(StrEnum):
    """``PredictionInput.dataFormat`` / ``outputDataFormat``."""

    DATA_FORMAT_UNSPECIFIED = "DATA_FORMAT_UNSPECIFIED"
    JSON = "JSON"
    TEXT = "TEXT"
    TF_RECORD = "TF_RECORD"
    TF_RECORD_GZIP = "TF_RECORD_GZIP"
    CSV = "CSV"


class AcceleratorConfig(ApiModel):
    """GPUs or TPUs attached to each replica of one kind."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__AcceleratorConfig"

    count: Int64 | None = None
    type: AcceleratorType | None = None


class DiskConfig(ApiModel):
    """Boot disk of each replica: size in GB (default 100) and ``pd-ssd``/``pd-standard``."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__DiskConfig"

    boot_disk_size_gb: Int32 | None = None
    boot_disk_type: str | None = None


class EncryptionConfig(ApiModel):
    """Customer-managed encryption key (accepted and stored; not used by a local engine)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__EncryptionConfig"

    kms_key_name: str | None = None


class ReplicaConfig(ApiModel):
    """Accelerators, container image and disk for one kind of replica (master, worker, ...)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__ReplicaConfig"

    accelerator_config: AcceleratorConfig | None = None
    image_uri: str | None = None
    container_command: list[str] | None = None
    container_args: list[str] | None = None
    tpu_tf_version: str | None = None
    disk_config: DiskConfig | None = None


class Scheduling(ApiModel):
    """Time limits and priority of a training job."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__Scheduling"

    max_running_time: Duration | None = None
    max_wait_time: Duration | None = None
    priority: Int32 | None = None


class ParameterSpec(ApiModel):
    """One tuned hyperparameter; handed to the trainer as ``--<parameterName>=<value>``."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__ParameterSpec"

    parameter_name: str | None = None
    type: ParameterType | None = None
    min_value: Double | None = None
    max_value: Double | None = None
    categorical_values: list[str] | None = None
    discrete_values: list[Double] | None = None
    scale_type: ScaleType | None = None


class HyperparameterSpec(ApiModel):
    """The search space and budget of a hyperparameter-tuning job."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__HyperparameterSpec"

    goal: GoalType | None = None
    params: list[ParameterSpec] | None = None
    max_trials: Int32 | None = None
    max_parallel_trials: Int32 | None = None
    max_failed_trials: Int32 | None = None
    hyperparameter_metric_tag: str | None = None
    resume_previous_job_id: str | None = None
    enable_trial_early_stopping: Bool | None = None
    algorithm: Algorithm | None = None


class TrainingInput(ApiModel):
    """What to train and on what cluster; ``hyperparameters`` makes it a tuning job."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__TrainingInput"

    scale_tier: ScaleTier | None = None
    master_type: str | None = None
    master_config: ReplicaConfig | None = None
    worker_type: str | None = None
    worker_config: ReplicaConfig | None = None
    worker_count: Int64 | None = None
    parameter_server_type: str | None = None
    parameter_server_config: ReplicaConfig | None = None
    parameter_server_count: Int64 | None = None
    evaluator_type: str | None = None
    evaluator_config: ReplicaConfig | None = None
    evaluator_count: Int64 | None = None
    package_uris: list[str] | None = None
    python_module: str | None = None
    args: list[str] | None = None
    hyperparameters: HyperparameterSpec | None = None
    region: str | None = None
    job_dir: str | None = None
    runtime_version: str | None = None
    python_version: str | None = None
    scheduling: Scheduling | None = None
    use_chief_in_tf_config: Bool | None = None
    enable_web_access: Bool | None = None
    service_account: str | None = None
    network: str | None = None
    encryption_config: EncryptionConfig | None = None


class HyperparameterMetric(ApiModel):
    """One objective value reported by a trial, at a training step."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1_HyperparameterOutput_HyperparameterMetric"

    training_step: Int64 | None = None
    objective_value: Double | None = None


class BuiltInAlgorithmOutput(ApiModel):
    """Where a built-in algorithm job left its model, and with which runtime."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__BuiltInAlgorithmOutput"

    framework: str | None = None
    runtime_version: str | None = None
    python_version: str | None = None
    model_path: str | None = None


class HyperparameterOutput(ApiModel):
    """One trial of a tuning job (output only)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__HyperparameterOutput"

    trial_id: str | None = None
    hyperparameters: dict[str, str] | None = None
    final_metric: HyperparameterMetric | None = None
    all_metrics: list[HyperparameterMetric] | None = None
    is_trial_stopped_early: Bool | None = None
    state: JobState | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    built_in_algorithm_output: BuiltInAlgorithmOutput | None = None
    web_access_uris: dict[str, str] | None = None


class TrainingOutput(ApiModel):
    """The current result of a training job (output only)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__TrainingOutput"

    completed_trial_count: Int64 | None = None
    trials: list[HyperparameterOutput] | None = None
    # The API spells this "ML", which the camelCase generator would write as "Ml".
    consumed_ml_units: Double | None = Field(default=None, alias="consumedMLUnits")
    is_hyperparameter_tuning_job: Bool | None = None
    hyperparameter_metric_tag: str | None = None
    is_built_in_algorithm_job: Bool | None = None
    built_in_algorithm_output: BuiltInAlgorithmOutput | None = None
    web_access_uris: dict[str, str] | None = None


class PredictionInput(ApiModel):
    """A batch-prediction job: input files, output directory and the model to use."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__PredictionInput"

    data_format: DataFormat | None = None
    output_data_format: DataFormat | None = None
    input_paths: list[str] | None = None
    output_path: str | None = None
    model_name: str | None = None
    version_name: str | None = None
    uri: str | None = None
    region: str | None = None
    runtime_version: str | None = None
    max_worker_count: Int64 | None = None
    batch_size: Int64 | None = None
    signature_name: str | None = None


class PredictionOutput(ApiModel):
    """The current result of a batch-prediction job (output only)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__PredictionOutput"

    output_path: str | None = None
    prediction_count: Int64 | None = None
    error_count: Int64 | None = None
    node_hours: Double | None = None


class Job(ApiModel):
    """A training or batch-prediction job.  ``job_id`` is the bare id; jobs have no ``name``."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__Job"
    #: Set by the service; ignored (cleared by :meth:`without_output_only`) on create.
    OUTPUT_ONLY_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "create_time",
            "start_time",
            "end_time",
            "state",
            "error_message",
            "training_output",
            "prediction_output",
            "job_position",
        }
    )

    job_id: str | None = None
    labels: dict[str, str] | None = None
    training_input: TrainingInput | None = None
    prediction_input: PredictionInput | None = None
    create_time: Timestamp | None = None
    start_time: Timestamp | None = None
    end_time: Timestamp | None = None
    state: JobState | None = None
    error_message: str | None = None
    training_output: TrainingOutput | None = None
    prediction_output: PredictionOutput | None = None
    etag: Base64Bytes | None = None
    job_position: Int64 | None = None

    def without_output_only(self) -> Job:
        """A copy with every output-only field unset, as a create request is taken."""
        return self.model_copy(update=dict.fromkeys(self.OUTPUT_ONLY_FIELDS))


def parse_job(body: object) -> Job:
    """Parse a Job JSON body; raise one InvalidArgument naming every field at fault."""
    return Job.from_api(body)


def parse_training_input(body: object, *, path: str = "trainingInput") -> TrainingInput:
    """Parse a TrainingInput body; field paths in errors start with ``path``."""
    return TrainingInput.from_api(body, path=path)


def parse_hyperparameter_spec(
    body: object, *, path: str = "trainingInput.hyperparameters"
) -> HyperparameterSpec:
    """Parse a HyperparameterSpec body; field paths in errors start with ``path``."""
    return HyperparameterSpec.from_api(body, path=path)
