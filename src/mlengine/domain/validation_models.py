"""Semantic validation of Models and Versions, and their update masks (spec §1.10-1.11, §2.2,
§7.1, §7.4).

:func:`validate_model` and :func:`validate_version` check a parsed create request and return
it with defaults applied; like :func:`mlengine.domain.validation.validate_job` they collect
**every** problem and raise one :class:`InvalidArgument` whose ``field`` is the first
problem's lowerCamelCase path.  :func:`model_update_mask` / :func:`version_update_mask` read
the ``updateMask`` of models.patch / versions.patch, and :func:`patched_model` /
:func:`patched_version` apply a patch body to the current resource and check the result.

Decisions where Google's service differs from what a local engine should do:

* ``regions`` defaults to ``["local"]`` (Google: ``us-central1``); at most one is allowed.
* ``requestLoggingConfig`` in a create request is dropped, as Google documents ("has no
  effect"); it is set through versions.patch.
* ``machineType`` names are not checked; ``manualScaling.nodes`` may be patched whatever the
  machine type (Google allows it only on N1 machines).
* ``name`` may be the bare id (as in the API) or this resource's full name
  (``projects/p/models/m``); :func:`resource_id` reduces it to the id.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.names import ModelName, VersionName, validate_labels, validate_resource_id
from mlengine.domain.problems import Problems
from mlengine.domain.resources_models import (
    AutoScaling,
    ContainerSpec,
    ExplanationConfig,
    Framework,
    ManualScaling,
    Model,
    RequestLoggingConfig,
    Version,
)
from mlengine.domain.validation import (
    DEFAULT_REGION,
    check_accelerator,
    check_package_uris,
    check_python_version,
)

MAX_DESCRIPTION_LENGTH = 8192
MAX_METRIC_TARGET = 100
MAX_PORT = 65535
#: Environment variables the serving platform reserves for itself.
RESERVED_ENV_PREFIX = "AIP_"
#: updateMask path (lowerCamelCase) -> what it changes, for models.patch.
MODEL_MASK_FIELDS: Mapping[str, str] = {
    "description": "the description",
    "labels": "the labels",
    "defaultVersion.name": "the default version (body: {'defaultVersion': {'name': 'v1'}})",
}
#: updateMask path (lowerCamelCase) -> what it changes, for versions.patch.
VERSION_MASK_FIELDS: Mapping[str, str] = {
    "description": "the description",
    "labels": "the labels",
    "requestLoggingConfig": "request logging",
    "autoScaling.minNodes": "the autoscaling minimum",
    "manualScaling.nodes": "the number of manually scaled nodes",
}

_C_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_PREDICTION_CLASS = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+")
_TABLE_PART = re.compile(r"[A-Za-z0-9_-]+")
_SNAKE = re.compile(r"_([a-z0-9])")


# --- names -------------------------------------------------------------------------------


def resource_id(
    name: object, *, parent: ModelName | None = None, project: str = "", field: str = "name"
) -> str:
    """The bare id in a request's ``name`` (at ``field``): a model id (``parent`` None, in
    ``project``) or a version id of model ``parent``.  A full resource name is accepted when
    it names this project (and model); anything else raises InvalidArgument naming ``field``.
    """
    kind = "model" if parent is None else "version"
    if not name:
        example = "census" if parent is None else "v1"
        raise InvalidArgument(
            f"Field '{field}' is required: name the {kind}, e.g. {example!r}.", field=field
        )
    if isinstance(name, str) and "/" in name:
        return _id_from_full_name(name, parent, project, field)
    return validate_resource_id(name, field=field, kind=kind)


def _id_from_full_name(name: str, parent: ModelName | None, project: str, field: str) -> str:
    if parent is None:
        model = ModelName.parse(name, field=field)
        if model.project != project:
            raise InvalidArgument(
                f"'{field}' {name!r} belongs to project {model.project!r}, not {project!r}; "
                "give the bare model id.",
                field=field,
            )
        return model.model
    version = VersionName.parse(name, field=field)
    if version.parent != parent:
        raise InvalidArgument(
            f"'{field}' {name!r} is not a version of {str(parent)!r}; give the bare version id.",
            field=field,
        )
    return version.version


# --- models --------------------------------------------------------------------------------


def validate_model(model: Model) -> Model:
    """Check a models.create body (``name`` already reduced to the id) and return it with
    ``regions`` defaulted to ``["local"]``."""
    problems = Problems()
    if model.name is not None:
        name = model.name
        problems.capture(lambda: validate_resource_id(name, field="name", kind="model"))
    else:
        problems.add("name", "Field 'name' is required: name the model, e.g. 'census'.")
    regions = model.regions or []
    if len(regions) > 1:
        problems.add(
            "regions",
            f"'regions' lists {len(regions)} regions; a model has at most one, e.g. "
            f"[{regions[0]!r}].",
        )
    for index, region in enumerate(regions):
        if not region.strip():
            problems.add(f"regions[{index}]", f"'regions[{index}]' is empty; name a region.")
    _check_common(model.description, model.labels, problems)
    problems.raise_if_any()
    return model.model_copy(update={"regions": regions or [DEFAULT_REGION]})


def _check_common(
    description: str | None, labels: dict[str, str] | None, problems: Problems
) -> None:
    if description is not None and len(description) > MAX_DESCRIPTION_LENGTH:
        problems.add(
            "description",
            f"'description' is {len(description)} characters long; at most "
            f"{MAX_DESCRIPTION_LENGTH} are allowed.",
        )
    if labels:
        problems.capture(lambda: validate_labels(labels))


# --- versions ------------------------------------------------------------------------------


def validate_version(version: Version) -> Version:
    """Check a versions.create body (``name`` already reduced to the id); return it without
    ``requestLoggingConfig`` (settable only by versions.patch)."""
    problems = Problems()
    if version.name is not None:
        name = version.name
        problems.capture(lambda: validate_resource_id(name, field="name", kind="version"))
    else:
        problems.add("name", "Field 'name' is required: name the version, e.g. 'v1'.")
    _check_common(version.description, version.labels, problems)
    _check_source(version, problems)
    _check_serving(version, problems)
    check_package_uris(version.package_uris or [], "packageUris", problems)
    check_python_version(version.python_version, version.runtime_version, "pythonVersion", problems)
    if version.accelerator_config is not None:
        check_accelerator(version.accelerator_config, "acceleratorConfig", problems)
    if version.explanation_config is not None:
        _check_explanation(version.explanation_config, problems)
    problems.raise_if_any()
    return version.model_copy(update={"request_logging_config": None})


def _framework_set(version: Version) -> bool:
    return version.framework not in (None, Framework.FRAMEWORK_UNSPECIFIED)


def _check_source(version: Version, problems: Problems) -> None:
    """deploymentUri unless container; a container excludes the built-in runtime's fields."""
    if version.container is None:
        if not version.deployment_uri:
            problems.add(
                "deploymentUri",
                "'deploymentUri' is required: the folder holding the model's files, e.g. "
                "'/srv/models/census/1' on the server or 'gs://bucket/census/1'.",
            )
        elif "\x00" in version.deployment_uri:
            problems.add("deploymentUri", "'deploymentUri' must not contain NUL characters.")
        if version.routes is not None:
            problems.add(
                "routes", "'routes' applies to a custom 'container' only; remove it or set one."
            )
        return
    forbidden = (
        ("runtimeVersion", bool(version.runtime_version)),
        ("packageUris", bool(version.package_uris)),
        ("framework", _framework_set(version)),
        ("pythonVersion", bool(version.python_version)),
        ("predictionClass", bool(version.prediction_class)),
    )
    for name, given in forbidden:
        if given:
            problems.add(
                name,
                f"'{name}' cannot be combined with 'container': a custom container brings its "
                f"own runtime. Remove {name} (or the container).",
            )
    if not version.machine_type:
        problems.add(
            "machineType",
            "'machineType' is required with a custom 'container', e.g. 'n1-standard-4'.",
        )
    _check_container(version.container, problems)


def _check_container(container: ContainerSpec, problems: Problems) -> None:
    if not container.image:
        problems.add("container.image", "'container.image' is required: the image to serve.")
    for index, variable in enumerate(container.env or []):
        field = f"container.env[{index}].name"
        name = variable.name or ""
        if not _C_IDENTIFIER.fullmatch(name):
            problems.add(
                field,
                f"Invalid environment variable name {name!r} at '{field}': use a C "
                "identifier (letters, digits, '_'; not starting with a digit).",
            )
        elif name.startswith(RESERVED_ENV_PREFIX):
            problems.add(
                field,
                f"'{field}' is {name!r}; names starting with {RESERVED_ENV_PREFIX} are "
                "reserved for the serving platform.",
            )
    for index, port in enumerate(container.ports or []):
        number = port.container_port
        if number is None or not 0 < number <= MAX_PORT:
            field = f"container.ports[{index}].containerPort"
            problems.add(field, f"'{field}' must be a port number from 1 to {MAX_PORT}.")


def _check_serving(version: Version, problems: Problems) -> None:
    """Custom prediction routines, service accounts and scaling."""
    if version.prediction_class:
        if not _PREDICTION_CLASS.fullmatch(version.prediction_class):
            problems.add(
                "predictionClass",
                f"Invalid predictionClass {version.prediction_class!r}: give module.Class, e.g. "
                "'predictor.MyPredictor'.",
            )
        if _framework_set(version):
            problems.add(
                "framework",
                "'framework' must be left unset with 'predictionClass': a custom prediction "
                "routine loads the model itself.",
            )
    if version.service_account and not (version.container or version.prediction_class):
        problems.add(
            "serviceAccount",
            "'serviceAccount' can only be set with a custom 'container' or a 'predictionClass'.",
        )
    _check_scaling(version.auto_scaling, version.manual_scaling, problems)


def _check_scaling(
    auto: AutoScaling | None, manual: ManualScaling | None, problems: Problems
) -> None:
    if auto is not None and manual is not None:
        problems.add(
            "manualScaling",
            "Set either 'autoScaling' or 'manualScaling', not both; remove one of them.",
        )
    if manual is not None and manual.nodes is not None and manual.nodes < 0:
        problems.add("manualScaling.nodes", "'manualScaling.nodes' must be 0 or more.")
    if auto is None:
        return
    low, high = auto.min_nodes, auto.max_nodes
    for name, value in (("minNodes", low), ("maxNodes", high)):
        if value is not None and value < 0:
            problems.add(f"autoScaling.{name}", f"'autoScaling.{name}' must be 0 or more.")
    if low and high and high < low:
        problems.add(
            "autoScaling.maxNodes",
            f"'autoScaling.maxNodes' ({high}) is below 'autoScaling.minNodes' ({low}).",
        )
    for index, metric in enumerate(auto.metrics or []):
        target = metric.target
        if target is not None and not 0 < target <= MAX_METRIC_TARGET:
            field = f"autoScaling.metrics[{index}].target"
            problems.add(field, f"'{field}' is a percentage from 1 to {MAX_METRIC_TARGET}.")


def _check_explanation(config: ExplanationConfig, problems: Problems) -> None:
    methods = {
        "integratedGradientsAttribution": (
            config.integrated_gradients_attribution,
            "numIntegralSteps",
        ),
        "sampledShapleyAttribution": (config.sampled_shapley_attribution, "numPaths"),
        "xraiAttribution": (config.xrai_attribution, "numIntegralSteps"),
    }
    given = [name for name, (value, _) in methods.items() if value is not None]
    if len(given) > 1:
        problems.add(
            f"explanationConfig.{given[1]}",
            f"'explanationConfig' takes one attribution method; got {', '.join(given)}.",
        )
    for name, (value, count_name) in methods.items():
        count = None if value is None else getattr(value, _snake(count_name))
        if count is not None and count <= 0:
            field = f"explanationConfig.{name}.{count_name}"
            problems.add(field, f"'{field}' must be positive, e.g. 50.")


def _check_request_logging(config: RequestLoggingConfig, problems: Problems) -> None:
    field = "requestLoggingConfig"
    table = config.bigquery_table_name or ""
    parts = table.split(".")
    if len(parts) != 3 or not all(_TABLE_PART.fullmatch(part) for part in parts):
        problems.add(
            f"{field}.bigqueryTableName",
            f"'{field}.bigqueryTableName' must be 'project.dataset.table' (got {table!r}).",
        )
    share = config.sampling_percentage
    if share is not None and not 0.0 <= share <= 1.0:
        problems.add(
            f"{field}.samplingPercentage",
            f"'{field}.samplingPercentage' is a fraction from 0 to 1, e.g. 0.1 (got {share}).",
        )


# --- update masks and patches -----------------------------------------------------------


def model_update_mask(text: str | None) -> frozenset[str]:
    """The fields models.patch may change, from ``updateMask`` (lowerCamelCase or snake_case)."""
    return _update_mask(text, MODEL_MASK_FIELDS, "models.patch")


def version_update_mask(text: str | None) -> frozenset[str]:
    """The fields versions.patch may change, from ``updateMask`` (required, non-empty)."""
    return _update_mask(text, VERSION_MASK_FIELDS, "versions.patch")


def _update_mask(text: str | None, allowed: Mapping[str, str], method: str) -> frozenset[str]:
    choices = ", ".join(allowed)
    paths = [path.strip() for path in (text or "").split(",") if path.strip()]
    if not paths:
        raise InvalidArgument(
            f"updateMask is required: name the fields to change, e.g. "
            f"updateMask={next(iter(allowed))}; {method} can change {choices}.",
            field="updateMask",
        )
    fields = {_camel(path) for path in paths}
    unknown = sorted(path for path in paths if _camel(path) not in allowed)
    if unknown:
        raise InvalidArgument(
            f"updateMask names {', '.join(map(repr, unknown))}, which {method} cannot change; "
            f"it can change {choices}.",
            field="updateMask",
        )
    return frozenset(fields)


def _camel(path: str) -> str:
    return ".".join(_SNAKE.sub(lambda m: m.group(1).upper(), part) for part in path.split("."))


def _snake(name: str) -> str:
    return re.sub(r"([A-Z])", lambda m: "_" + m.group(1).lower(), name)


def patched_model(current: Model, patch: Model, fields: frozenset[str]) -> Model:
    """``current`` with the masked fields taken from ``patch`` (``defaultVersion.name`` is the
    caller's: it needs the version); raise InvalidArgument for a bad description or labels."""
    update: dict[str, object] = {}
    if "description" in fields:
        update["description"] = patch.description
    if "labels" in fields:
        update["labels"] = patch.labels or None
    problems = Problems()
    _check_common(patch.description, patch.labels, problems)
    problems.raise_if_any()
    return current.model_copy(update=update)


def patched_version(current: Version, patch: Version, fields: frozenset[str]) -> Version:
    """``current`` with the masked fields taken from ``patch``; raise InvalidArgument naming
    the field when the result breaks a rule (both scaling kinds, a bad logging table, ...)."""
    update: dict[str, object] = {}
    if "description" in fields:
        update["description"] = patch.description
    if "labels" in fields:
        update["labels"] = patch.labels or None
    if "requestLoggingConfig" in fields:
        update["request_logging_config"] = patch.request_logging_config
    if "autoScaling.minNodes" in fields:
        minimum = patch.auto_scaling.min_nodes if patch.auto_scaling else None
        base = current.auto_scaling or AutoScaling()
        update["auto_scaling"] = base.model_copy(update={"min_nodes": minimum})
    if "manualScaling.nodes" in fields:
        nodes = patch.manual_scaling.nodes if patch.manual_scaling else None
        base_manual = current.manual_scaling or ManualScaling()
        update["manual_scaling"] = base_manual.model_copy(update={"nodes": nodes})
    result = current.model_copy(update=update)
    problems = Problems()
    _check_common(result.description, result.labels, problems)
    _check_scaling(result.auto_scaling, result.manual_scaling, problems)
    if result.request_logging_config is not None:
        _check_request_logging(result.request_logging_config, problems)
    problems.raise_if_any()
    return result
