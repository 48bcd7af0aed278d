"""The Model and Version resources, everything nested in them, and OperationMetadata.

Exactly as in ml.v1.json: one model per discovery schema with exactly that schema's fields
(``API_SCHEMA`` names it; ``tests/domain/test_contract_ml_v1.py`` checks the correspondence).
Output-only fields are part of the models; services set them.  These models check types only:
semantic rules (names, one region, deploymentUri or container, scaling, update masks) live in
:mod:`mlengine.domain.validation_models`.

Names: on create, ``Model.name`` and ``Version.name`` are the bare ids given by the user
(``census``, ``v1``); the service stores and returns full resource names
(``projects/p/models/census``, ``projects/p/models/census/versions/v1``).
"""

from __future__ import annotations

from enum import StrEnum
from typing import ClassVar

from mlengine.domain.resources_common import ApiModel
from mlengine.domain.resources_jobs import AcceleratorConfig
from mlengine.domain.resources_wire import Base64Bytes, Bool, Double, Int32, Int64, Timestamp


class Framework(StrEnum):
    """``Version.framework``; UNSPECIFIED means "detect from the files in deploymentUri"."""

    FRAMEWORK_UNSPECIFIED = "FRAMEWORK_UNSPECIFIED"
    TENSORFLOW = "TENSORFLOW"
    SCIKIT_LEARN = "SCIKIT_LEARN"
    XGBOOST = "XGBOOST"


class VersionState(StrEnum):
    """``Version.state``.  Lifecycle::

        CREATING ──> READY ──> DELETING ──> (gone)
           │            │
           └──> FAILED ─┴──> DELETING

    UPDATING exists in the API; mlengine applies patches at once and never shows it.
    Updates and deletes are refused while a version is CREATING, DELETING or UPDATING.
    """

    UNKNOWN = "UNKNOWN"
    READY = "READY"
    CREATING = "CREATING"
    FAILED = "FAILED"
    DELETING = "DELETING"
    UPDATING = "UPDATING"

    def is_busy(self) -> bool:
        """True while an operation owns the version (no update or delete may start)."""
        return self in (VersionState.CREATING, VersionState.DELETING, VersionState.UPDATING)


class MetricName(StrEnum):
    """``MetricSpec.name``: what autoscaling watches."""

    METRIC_NAME_UNSPECIFIED = "METRIC_NAME_UNSPECIFIED"
    CPU_USAGE = "CPU_USAGE"
    GPU_DUTY_CYCLE = "GPU_DUTY_CYCLE"


class OperationType(StrEnum):
    """``OperationMetadata.operationType``."""

    OPERATION_TYPE_UNSPECIFIED = "OPERATION_TYPE_UNSPECIFIED"
    CREATE_VERSION = "CREATE_VERSION"
    DELETE_VERSION = "DELETE_VERSION"
    DELETE_MODEL = "DELETE_MODEL"
    UPDATE_MODEL = "UPDATE_MODEL"
    UPDATE_VERSION = "UPDATE_VERSION"
    UPDATE_CONFIG = "UPDATE_CONFIG"


class MetricSpec(ApiModel):
    """One autoscaling target: a metric and its target utilisation in percent."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__MetricSpec"

    name: MetricName | None = None
    target: Int32 | None = None


class AutoScaling(ApiModel):
    """Nodes scale with load between ``minNodes`` and ``maxNodes``."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__AutoScaling"

    max_nodes: Int32 | None = None
    metrics: list[MetricSpec] | None = None
    min_nodes: Int32 | None = None


class ManualScaling(ApiModel):
    """A fixed number of serving nodes."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__ManualScaling"

    nodes: Int32 | None = None


class RequestLoggingConfig(ApiModel):
    """Sampled request/response logging to a table ("project.dataset.table")."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__RequestLoggingConfig"

    bigquery_table_name: str | None = None
    sampling_percentage: Double | None = None


class IntegratedGradientsAttribution(ApiModel):
    """Integrated-gradients feature attribution."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__IntegratedGradientsAttribution"

    num_integral_steps: Int32 | None = None


class SampledShapleyAttribution(ApiModel):
    """Sampled-Shapley feature attribution."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__SampledShapleyAttribution"

    num_paths: Int32 | None = None


class XraiAttribution(ApiModel):
    """XRAI feature attribution (images)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__XraiAttribution"

    num_integral_steps: Int32 | None = None


class ExplanationConfig(ApiModel):
    """Which attribution method ``projects.explain`` uses (at most one)."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__ExplanationConfig"

    integrated_gradients_attribution: IntegratedGradientsAttribution | None = None
    sampled_shapley_attribution: SampledShapleyAttribution | None = None
    xrai_attribution: XraiAttribution | None = None


class EnvVar(ApiModel):
    """An environment variable of a custom serving container."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__EnvVar"

    name: str | None = None
    value: str | None = None


class ContainerPort(ApiModel):
    """A port a custom serving container listens on."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__ContainerPort"

    container_port: Int32 | None = None


class ContainerSpec(ApiModel):
    """A custom serving container."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__ContainerSpec"

    args: list[str] | None = None
    command: list[str] | None = None
    env: list[EnvVar] | None = None
    image: str | None = None
    ports: list[ContainerPort] | None = None


class RouteMap(ApiModel):
    """HTTP paths of a custom container's predict and health routes."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__RouteMap"

    health: str | None = None
    predict: str | None = None


class Version(ApiModel):
    """One deployable version of a model: where its files are and how to serve them."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__Version"
    #: Set by the service; ignored (cleared by :meth:`without_output_only`) on create.
    OUTPUT_ONLY_FIELDS: ClassVar[frozenset[str]] = frozenset(
        {
            "create_time",
            "error_message",
            "etag",
            "is_default",
            "last_migration_model_id",
            "last_migration_time",
            "last_use_time",
            "state",
        }
    )

    accelerator_config: AcceleratorConfig | None = None
    auto_scaling: AutoScaling | None = None
    container: ContainerSpec | None = None
    create_time: Timestamp | None = None
    deployment_uri: str | None = None
    description: str | None = None
    error_message: str | None = None
    etag: Base64Bytes | None = None
    explanation_config: ExplanationConfig | None = None
    framework: Framework | None = None
    is_default: Bool | None = None
    labels: dict[str, str] | None = None
    last_migration_model_id: str | None = None
    last_migration_time: Timestamp | None = None
    last_use_time: Timestamp | None = None
    machine_type: str | None = None
    manual_scaling: ManualScaling | None = None
    name: str | None = None
    package_uris: list[str] | None = None
    prediction_class: str | None = None
    python_version: str | None = None
    request_logging_config: RequestLoggingConfig | None = None
    routes: RouteMap | None = None
    runtime_version: str | None = None
    service_account: str | None = None
    state: VersionState | None = None

    def without_output_only(self) -> Version:
        """A copy with every output-only field unset, as a create request is taken."""
        return self.model_copy(update=dict.fromkeys(self.OUTPUT_ONLY_FIELDS))


class Model(ApiModel):
    """A named container of versions; predictions that name only the model use its default."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__Model"
    OUTPUT_ONLY_FIELDS: ClassVar[frozenset[str]] = frozenset({"default_version", "etag"})

    default_version: Version | None = None
    description: str | None = None
    etag: Base64Bytes | None = None
    labels: dict[str, str] | None = None
    name: str | None = None
    online_prediction_console_logging: Bool | None = None
    online_prediction_logging: Bool | None = None
    regions: list[str] | None = None

    def without_output_only(self) -> Model:
        """A copy with every output-only field unset, as a create request is taken."""
        return self.model_copy(update=dict.fromkeys(self.OUTPUT_ONLY_FIELDS))


class OperationMetadata(ApiModel):
    """The ``metadata`` of the long-running operations of models and versions."""

    API_SCHEMA: ClassVar[str] = "GoogleCloudMlV1__OperationMetadata"

    create_time: Timestamp | None = None
    end_time: Timestamp | None = None
    is_cancellation_requested: Bool | None = None
    labels: dict[str, str] | None = None
    model_name: str | None = None
    operation_type: OperationType | None = None
    project_number: Int64 | None = None
    start_time: Timestamp | None = None
    version: Version | None = None


def parse_model(body: object) -> Model:
    """Parse a Model JSON body; raise one InvalidArgument naming every field at fault."""
    return Model.from_api(body)


def parse_version(body: object) -> Version:
    """Parse a Version JSON body; raise one InvalidArgument naming every field at fault."""
    return Version.from_api(body)
