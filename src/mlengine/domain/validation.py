"""Semantic validation of a Job: the rules beyond types (spec §1.3-1.7, §7.2, §7.4).

:func:`validate_job` checks a parsed :class:`Job` and returns a copy with defaults applied.
It collects **every** problem and raises one :class:`InvalidArgument` (see
:mod:`mlengine.domain.problems`): ``field`` is the first problem's lowerCamelCase path and the
message lists them all, so a user fixes a config file in one round.

Output-only fields (``state``, ``createTime``, ...) are neither checked nor changed; a service
creating a job clears them first with :meth:`Job.without_output_only`.

Proto3 reads a zero or empty value as "unset": ``workerCount: 0`` or ``masterType: ""`` is
treated as not given.

Decisions where Google's service is stricter than a local engine should be:

* ``region`` is optional and defaults to ``"local"``.
* ``packageUris`` may be empty (the CLI uploads a local package); services that need a
  package require it themselves.
* ``scheduling.maxWaitTime`` needs only to be positive (Google's 1800 s minimum is not
  enforced); ``maxRunningTime`` likewise.
* ``pythonVersion`` may be any ``3.x``; only the documented combinations with Google's
  runtimes are rejected (2.7 needs runtime <= 1.15, 3.5 needs 1.4-1.14, 3.7 needs >= 1.15).
* Machine type names are not checked here; the replica planner owns that list.
"""

from __future__ import annotations

import re

from mlengine.domain.names import ModelName, VersionName, validate_labels, validate_resource_id
from mlengine.domain.problems import Problems
from mlengine.domain.resources_jobs import (
    AcceleratorConfig,
    AcceleratorType,
    DataFormat,
    DiskConfig,
    Job,
    PredictionInput,
    ReplicaConfig,
    ScaleTier,
    Scheduling,
    TrainingInput,
)
from mlengine.domain.validation_hyperparameters import (
    check_hyperparameter_spec,
    hyperparameter_defaults,
)

DEFAULT_REGION = "local"
DEFAULT_SCALE_TIER = ScaleTier.BASIC
DEFAULT_OUTPUT_DATA_FORMAT = DataFormat.JSON
DEFAULT_MAX_WORKER_COUNT = 10
DEFAULT_BATCH_SIZE = 64
MAX_PACKAGE_URIS = 100
MIN_PRIORITY, MAX_PRIORITY = 0, 1000
BOOT_DISK_TYPES = ("pd-ssd", "pd-standard")

_PYTHON_MODULE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*")
_MAJOR_MINOR = re.compile(r"([0-9]+)\.([0-9]+)")
#: pythonVersion -> (oldest, newest or None, in words) Google runtimeVersion it works with.
_PYTHON_RUNTIMES = {
    (2, 7): ((0, 0), (1, 15), "1.15 or older"),
    (3, 5): ((1, 4), (1, 14), "1.4 to 1.14"),
    (3, 7): ((1, 15), None, "1.15 or newer"),
}


def validate_job(job: Job) -> Job:
    """Check ``job`` and return it with defaults applied; raise one InvalidArgument listing
    every problem.

    Rules: ``jobId`` present and a valid id; ``labels`` follow the GCP label rules; exactly
    one of ``trainingInput`` / ``predictionInput``, each checked as below.
    """
    problems = Problems()
    if not job.job_id:
        problems.add(
            "jobId", "Field 'jobId' is required: name the job, e.g. \"census_20170307_1\"."
        )
    else:
        job_id = job.job_id
        problems.capture(lambda: validate_resource_id(job_id, field="jobId", kind="job"))
    if job.labels:
        labels = job.labels
        problems.capture(lambda: validate_labels(labels))
    if job.training_input is None and job.prediction_input is None:
        problems.add(
            "trainingInput",
            "A job needs 'trainingInput' (to train) or 'predictionInput' (to run batch "
            "prediction); neither is set.",
        )
    elif job.training_input is not None and job.prediction_input is not None:
        problems.add(
            "predictionInput",
            "A job takes exactly one of 'trainingInput' and 'predictionInput'; remove one.",
        )
    if job.training_input is not None:
        check_training_input(job.training_input, "trainingInput", problems)
    if job.prediction_input is not None:
        check_prediction_input(job.prediction_input, "predictionInput", problems)
    problems.raise_if_any()
    return _job_defaults(job)


def validate_training_input(
    training_input: TrainingInput, *, path: str = "trainingInput"
) -> TrainingInput:
    """Check one TrainingInput; return it with defaults applied.

    ``path`` (non-empty) is where the input sits in its request; reported fields start with it.
    """
    problems = Problems()
    check_training_input(training_input, path, problems)
    problems.raise_if_any()
    return training_input_defaults(training_input)


def validate_prediction_input(
    prediction_input: PredictionInput, *, path: str = "predictionInput"
) -> PredictionInput:
    """Check one PredictionInput; return it with defaults applied.

    ``path`` (non-empty) is where the input sits in its request; reported fields start with it.
    """
    problems = Problems()
    check_prediction_input(prediction_input, path, problems)
    problems.raise_if_any()
    return prediction_input_defaults(prediction_input)


def check_training_input(ti: TrainingInput, path: str, problems: Problems) -> None:
    """Add every problem of ``ti`` (found at ``path``) to ``problems``."""
    _check_program(ti, path, problems)
    _check_cluster(ti, path, problems)
    for name, config in _replica_configs(ti):
        _check_replica_config(config, f"{path}.{name}", problems)
        if ti.args and (config.container_command or config.container_args):
            problems.add(
                f"{path}.{name}",
                f"'{path}.{name}' sets containerCommand/containerArgs, which cannot be combined "
                f"with '{path}.args'; put the arguments in one place.",
            )
    _check_versions(ti, path, problems)
    if ti.scheduling is not None:
        _check_scheduling(ti.scheduling, f"{path}.scheduling", problems)
    if ti.hyperparameters is not None:
        check_hyperparameter_spec(ti.hyperparameters, f"{path}.hyperparameters", problems)


def _check_program(ti: TrainingInput, path: str, problems: Problems) -> None:
    image = ti.master_config.image_uri if ti.master_config else None
    module = ti.python_module
    if not image and not module:
        problems.add(
            f"{path}.pythonModule",
            f"'{path}.pythonModule' is required: the module to run, e.g. \"trainer.task\" "
            "(or set masterConfig.imageUri to run a custom container).",
        )
    elif module and not _PYTHON_MODULE.fullmatch(module):
        dotted = module.removesuffix(".py").replace("/", ".").replace("-", "_").strip(".")
        problems.add(
            f"{path}.pythonModule",
            f"Invalid pythonModule {module!r} at '{path}.pythonModule': give a dotted module "
            f"name as for `python -m`, e.g. {dotted or 'trainer.task'!r}.",
        )
    if image and ti.runtime_version:
        problems.add(
            f"{path}.runtimeVersion",
            f"Set either '{path}.masterConfig.imageUri' (a custom container) or "
            f"'{path}.runtimeVersion', not both; remove runtimeVersion to run the container.",
        )
    check_package_uris(ti.package_uris or [], f"{path}.packageUris", problems)


def check_package_uris(uris: list[str], field: str, problems: Problems) -> None:
    """Add a problem for more than 100 entries or an empty one (``field`` is the list)."""
    if len(uris) > MAX_PACKAGE_URIS:
        problems.add(
            field, f"'{field}' has {len(uris)} entries; at most {MAX_PACKAGE_URIS} allowed."
        )
    for index, uri in enumerate(uris):
        if not uri.strip():
            problems.add(
                f"{field}[{index}]",
                f"'{field}[{index}]' is empty; give a package path or remove it.",
            )


def _check_cluster(ti: TrainingInput, path: str, problems: Problems) -> None:
    tier = ti.scale_tier or DEFAULT_SCALE_TIER
    custom = tier is ScaleTier.CUSTOM
    if custom and not ti.master_type:
        problems.add(
            f"{path}.masterType",
            f"scaleTier CUSTOM requires '{path}.masterType', e.g. \"n1-standard-4\"; set it or "
            "choose a predefined scaleTier such as BASIC.",
        )
    if not custom and ti.master_type:
        problems.add(f"{path}.masterType", _custom_only(path, "masterType", tier))
    groups = (
        ("worker", "worker", ti.worker_count, ti.worker_type),
        (
            "parameter server",
            "parameterServer",
            ti.parameter_server_count,
            ti.parameter_server_type,
        ),
        ("evaluator", "evaluator", ti.evaluator_count, ti.evaluator_type),
    )
    for kind, prefix, count, type_ in groups:
        if count is not None and count < 0:
            problems.add(
                f"{path}.{prefix}Count", f"'{path}.{prefix}Count' must be 0 or more (got {count})."
            )
        elif not custom and count:
            problems.add(f"{path}.{prefix}Count", _custom_only(path, f"{prefix}Count", tier))
        elif custom and count and not type_:
            problems.add(
                f"{path}.{prefix}Type",
                f"'{path}.{prefix}Count' is {count} but '{path}.{prefix}Type' is not set; give "
                f"the {kind} machine type (e.g. the same as masterType) or set the count to 0.",
            )
        if not custom and type_:
            problems.add(f"{path}.{prefix}Type", _custom_only(path, f"{prefix}Type", tier))


def _custom_only(path: str, name: str, tier: ScaleTier) -> str:
    return (
        f"'{path}.{name}' can only be set when scaleTier is CUSTOM (it is {tier}); set "
        f"scaleTier to CUSTOM or remove {name}."
    )


def _replica_configs(ti: TrainingInput) -> list[tuple[str, ReplicaConfig]]:
    named = (
        ("masterConfig", ti.master_config),
        ("workerConfig", ti.worker_config),
        ("parameterServerConfig", ti.parameter_server_config),
        ("evaluatorConfig", ti.evaluator_config),
    )
    return [(name, config) for name, config in named if config is not None]


def _check_replica_config(config: ReplicaConfig, path: str, problems: Problems) -> None:
    if config.accelerator_config is not None:
        check_accelerator(config.accelerator_config, f"{path}.acceleratorConfig", problems)
    if config.disk_config is not None:
        _check_disk(config.disk_config, f"{path}.diskConfig", problems)


def check_accelerator(accelerator: AcceleratorConfig, field: str, problems: Problems) -> None:
    """Add a problem when count and type of an accelerator config do not go together."""
    count, kind = accelerator.count or 0, accelerator.type
    has_type = kind not in (None, AcceleratorType.ACCELERATOR_TYPE_UNSPECIFIED)
    if count < 0:
        problems.add(f"{field}.count", f"'{field}.count' must be 0 or more (got {count}).")
    elif count > 0 and not has_type:
        problems.add(
            f"{field}.type",
            f"'{field}.count' is {count} but '{field}.type' is not set; name the "
            'accelerator, e.g. "NVIDIA_TESLA_T4".',
        )
    elif count == 0 and has_type:
        problems.add(
            f"{field}.count",
            f"'{field}.type' is {kind} but '{field}.count' is 0; set count to 1 or more, or "
            "remove acceleratorConfig.",
        )


def _check_disk(disk: DiskConfig, field: str, problems: Problems) -> None:
    if disk.boot_disk_size_gb is not None and disk.boot_disk_size_gb < 0:
        problems.add(
            f"{field}.bootDiskSizeGb",
            f"'{field}.bootDiskSizeGb' must be 0 (default 100) or more.",
        )
    if disk.boot_disk_type and disk.boot_disk_type not in BOOT_DISK_TYPES:
        problems.add(
            f"{field}.bootDiskType",
            f"Invalid bootDiskType {disk.boot_disk_type!r} at '{field}.bootDiskType'; "
            f"use one of {', '.join(BOOT_DISK_TYPES)}.",
        )


def _check_versions(ti: TrainingInput, path: str, problems: Problems) -> None:
    check_python_version(ti.python_version, ti.runtime_version, f"{path}.pythonVersion", problems)


def check_python_version(
    python_version: str | None, runtime_version: str | None, field: str, problems: Problems
) -> None:
    """Add a problem when ``python_version`` (at ``field``) is malformed or does not work with
    ``runtime_version`` (the documented combinations of Google's runtimes)."""
    if not python_version:
        return
    python = _major_minor(python_version)
    if python is None or python[0] not in (2, 3) or (python[0] == 2 and python != (2, 7)):
        problems.add(
            field,
            f"Unsupported pythonVersion {python_version!r} at '{field}'; use a 3.x version "
            'such as "3.11" (or "2.7" with runtimeVersion 1.15 or older).',
        )
        return
    runtime = _major_minor(runtime_version or "")
    if runtime is None or python not in _PYTHON_RUNTIMES:
        return
    oldest, newest, in_words = _PYTHON_RUNTIMES[python]
    if runtime < oldest or (newest is not None and runtime > newest):
        problems.add(
            field,
            f"pythonVersion {python_version} at '{field}' does not work with runtimeVersion "
            f"{runtime_version} (it needs runtime {in_words}); change one of them.",
        )


def _major_minor(text: str) -> tuple[int, int] | None:
    match = _MAJOR_MINOR.fullmatch(text.strip())
    return (int(match[1]), int(match[2])) if match else None


def _check_scheduling(scheduling: Scheduling, path: str, problems: Problems) -> None:
    for name, value in (
        ("maxRunningTime", scheduling.max_running_time),
        ("maxWaitTime", scheduling.max_wait_time),
    ):
        if value is not None and value.total_seconds() <= 0:
            problems.add(
                f"{path}.{name}",
                f"'{path}.{name}' must be a positive duration, e.g. \"7200s\".",
            )
    priority = scheduling.priority
    if priority is not None and not MIN_PRIORITY <= priority <= MAX_PRIORITY:
        problems.add(
            f"{path}.priority",
            f"'{path}.priority' must be between {MIN_PRIORITY} and {MAX_PRIORITY} (got "
            f"{priority}).",
        )


def check_prediction_input(pi: PredictionInput, path: str, problems: Problems) -> None:
    """Add every problem of a batch-prediction input (found at ``path``) to ``problems``."""
    _check_formats(pi, path, problems)
    paths = pi.input_paths or []
    if not paths:
        problems.add(
            f"{path}.inputPaths",
            f"'{path}.inputPaths' needs at least one input file or pattern, e.g. "
            '"data/instances-*.json".',
        )
    for index, value in enumerate(paths):
        if not value.strip():
            problems.add(f"{path}.inputPaths[{index}]", f"'{path}.inputPaths[{index}]' is empty.")
    if not pi.output_path:
        problems.add(
            f"{path}.outputPath", f"'{path}.outputPath' is required: the directory for results."
        )
    _check_model_source(pi, path, problems)
    for name, count in (("maxWorkerCount", pi.max_worker_count), ("batchSize", pi.batch_size)):
        if count is not None and count < 0:
            problems.add(f"{path}.{name}", f"'{path}.{name}' must be 0 or more (got {count}).")


def _check_formats(pi: PredictionInput, path: str, problems: Problems) -> None:
    field = f"{path}.dataFormat"
    if pi.data_format in (None, DataFormat.DATA_FORMAT_UNSPECIFIED):
        problems.add(
            field, f"'{field}' is required: one of JSON, TEXT, TF_RECORD or TF_RECORD_GZIP."
        )
    elif pi.data_format is DataFormat.CSV:
        problems.add(field, f"CSV is an output format only; set '{field}' to JSON or TEXT.")
    field = f"{path}.outputDataFormat"
    if pi.output_data_format in (DataFormat.TF_RECORD, DataFormat.TF_RECORD_GZIP):
        problems.add(
            field, f"{pi.output_data_format} is an input format only; set '{field}' to JSON or CSV."
        )


def _check_model_source(pi: PredictionInput, path: str, problems: Problems) -> None:
    sources = (("modelName", pi.model_name), ("versionName", pi.version_name), ("uri", pi.uri))
    given = [name for name, value in sources if value]
    if len(given) != 1:
        problems.add(
            f"{path}.{given[1] if given else 'modelName'}",
            f"Give exactly one of '{path}.modelName' (projects/P/models/M), "
            f"'{path}.versionName' (projects/P/models/M/versions/V) or '{path}.uri' (a "
            f"SavedModel directory); got {', '.join(given) or 'none'}.",
        )
    model_name, version_name = pi.model_name, pi.version_name
    if model_name:
        problems.capture(lambda: ModelName.parse(model_name, field=f"{path}.modelName"))
    if version_name:
        problems.capture(lambda: VersionName.parse(version_name, field=f"{path}.versionName"))


def training_input_defaults(ti: TrainingInput) -> TrainingInput:
    """``ti`` with scaleTier BASIC, region "local" and hyperparameter defaults filled in."""
    update: dict[str, object] = {}
    if ti.scale_tier is None:
        update["scale_tier"] = DEFAULT_SCALE_TIER
    if not ti.region:
        update["region"] = DEFAULT_REGION
    if ti.hyperparameters is not None:
        update["hyperparameters"] = hyperparameter_defaults(ti.hyperparameters)
    return ti.model_copy(update=update)


def prediction_input_defaults(pi: PredictionInput) -> PredictionInput:
    """``pi`` with region "local", outputDataFormat JSON, 10 workers and batches of 64."""
    update: dict[str, object] = {}
    if not pi.region:
        update["region"] = DEFAULT_REGION
    if pi.output_data_format in (None, DataFormat.DATA_FORMAT_UNSPECIFIED):
        update["output_data_format"] = DEFAULT_OUTPUT_DATA_FORMAT
    if not pi.max_worker_count:
        update["max_worker_count"] = DEFAULT_MAX_WORKER_COUNT
    if not pi.batch_size:
        update["batch_size"] = DEFAULT_BATCH_SIZE
    return pi.model_copy(update=update)


def _job_defaults(job: Job) -> Job:
    update: dict[str, object] = {}
    if job.training_input is not None:
        update["training_input"] = training_input_defaults(job.training_input)
    if job.prediction_input is not None:
        update["prediction_input"] = prediction_input_defaults(job.prediction_input)
    return job.model_copy(update=update)
