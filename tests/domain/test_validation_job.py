"""Semantic rules of a Job and its TrainingInput."""

from __future__ import annotations

from datetime import timedelta

import pytest

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.resources import Job, ScaleTier, TrainingInput
from mlengine.domain.validation import validate_training_input

from .validation_helpers import only_problem, training_body, validated

# --- the job itself -------------------------------------------------------------------


def test_minimal_training_job_gets_defaults() -> None:
    job = validated(training_body())
    assert job.training_input is not None
    assert job.training_input.scale_tier is ScaleTier.BASIC
    assert job.training_input.region == "local"
    assert job.to_api()["trainingInput"] == {
        "scaleTier": "BASIC",
        "pythonModule": "trainer.task",
        "region": "local",
    }


def test_explicit_values_are_kept() -> None:
    job = validated(training_body(region="us-central1", scaleTier="STANDARD_1"))
    assert job.training_input is not None
    assert job.training_input.region == "us-central1"
    assert job.training_input.scale_tier is ScaleTier.STANDARD_1


def test_job_id_is_required() -> None:
    body = training_body()
    del body["jobId"]
    only_problem(body, "jobId", "'jobId' is required")


def test_job_id_must_be_valid() -> None:
    body = training_body()
    body["jobId"] = "census-1"
    only_problem(body, "jobId", "'census-1'", "Try 'census_1'")


def test_labels_are_checked() -> None:
    body = training_body()
    body["labels"] = {"owner": "Alice"}
    only_problem(body, 'labels["owner"]', "'Alice'", "try 'alice'")


def test_a_job_needs_an_input() -> None:
    only_problem({"jobId": "j"}, "trainingInput", "'trainingInput'", "'predictionInput'")


def test_a_job_takes_only_one_input() -> None:
    body = training_body()
    body["predictionInput"] = {
        "dataFormat": "JSON",
        "inputPaths": ["in.json"],
        "outputPath": "out",
        "uri": "model_dir",
    }
    only_problem(body, "predictionInput", "exactly one of")


def test_all_problems_are_listed_with_the_first_in_field() -> None:
    body = training_body(workerCount=-1, scheduling={"priority": 5000})
    body["jobId"] = ""
    with pytest.raises(InvalidArgument) as raised:
        validated(body)
    assert raised.value.field == "jobId"
    assert "2 more problems:" in raised.value.message
    assert "trainingInput.workerCount" in raised.value.message
    assert "trainingInput.scheduling.priority" in raised.value.message


def test_output_only_fields_are_left_alone() -> None:
    body = training_body()
    body["state"] = "RUNNING"
    assert validated(body).to_api()["state"] == "RUNNING"


# --- program ---------------------------------------------------------------------------


def test_python_module_required_without_container() -> None:
    body = training_body()
    del body["trainingInput"]["pythonModule"]
    only_problem(body, "trainingInput.pythonModule", "is required", "trainer.task", "imageUri")


def test_container_job_needs_no_module() -> None:
    body = training_body(masterConfig={"imageUri": "gcr.io/p/trainer:1"})
    del body["trainingInput"]["pythonModule"]
    validated(body)


def test_python_module_must_be_a_dotted_name() -> None:
    only_problem(
        training_body(pythonModule="trainer/task.py"),
        "trainingInput.pythonModule",
        "'trainer.task'",
    )


def test_image_and_runtime_are_exclusive() -> None:
    only_problem(
        training_body(masterConfig={"imageUri": "img"}, runtimeVersion="1.15"),
        "trainingInput.runtimeVersion",
        "not both",
    )


def test_package_uris_limit_and_empty_entries() -> None:
    only_problem(
        training_body(packageUris=[f"p{i}.tar.gz" for i in range(101)]),
        "trainingInput.packageUris",
        "at most 100",
    )
    only_problem(training_body(packageUris=["a.tar.gz", " "]), "trainingInput.packageUris[1]")
    validated(training_body(packageUris=[]))


def test_container_args_cannot_be_combined_with_args() -> None:
    only_problem(
        training_body(args=["--x"], masterConfig={"imageUri": "img", "containerArgs": ["--y"]}),
        "trainingInput.masterConfig",
        "cannot be combined",
    )


# --- cluster ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("masterType", "n1-standard-4"),
        ("workerType", "n1-standard-4"),
        ("workerCount", 2),
        ("parameterServerType", "n1-standard-4"),
        ("parameterServerCount", 1),
        ("evaluatorType", "n1-standard-4"),
        ("evaluatorCount", 1),
    ],
)
def test_cluster_fields_need_custom_tier(field: str, value: object) -> None:
    only_problem(
        training_body(scaleTier="STANDARD_1", **{field: value}),
        f"trainingInput.{field}",
        "only be set when scaleTier is CUSTOM",
        "STANDARD_1",
    )


def test_zero_counts_count_as_unset_on_other_tiers() -> None:
    validated(training_body(workerCount=0, parameterServerCount="0"))


def test_custom_needs_master_type() -> None:
    only_problem(
        training_body(scaleTier="CUSTOM"), "trainingInput.masterType", "requires", "n1-standard-4"
    )


@pytest.mark.parametrize("prefix", ["worker", "parameterServer", "evaluator"])
def test_custom_counts_need_types(prefix: str) -> None:
    only_problem(
        training_body(scaleTier="CUSTOM", masterType="m", **{f"{prefix}Count": 3}),
        f"trainingInput.{prefix}Type",
        "is 3",
        "set the count to 0",
    )


def test_negative_counts_are_rejected() -> None:
    only_problem(
        training_body(scaleTier="CUSTOM", masterType="m", workerType="w", workerCount=-2),
        "trainingInput.workerCount",
        "0 or more",
    )


def test_full_custom_cluster_is_valid() -> None:
    validated(
        training_body(
            scaleTier="CUSTOM",
            masterType="n1-standard-8",
            workerType="n1-standard-8",
            workerCount="4",
            parameterServerType="n1-standard-4",
            parameterServerCount=2,
            evaluatorType="n1-standard-4",
            evaluatorCount=1,
            useChiefInTfConfig=True,
        )
    )


# --- replica configs ----------------------------------------------------------------------


def test_accelerator_count_needs_a_type() -> None:
    only_problem(
        training_body(masterConfig={"acceleratorConfig": {"count": "2"}}),
        "trainingInput.masterConfig.acceleratorConfig.type",
        "NVIDIA_TESLA_T4",
    )


def test_accelerator_type_needs_a_count() -> None:
    only_problem(
        training_body(workerConfig={"acceleratorConfig": {"type": "NVIDIA_TESLA_T4"}}),
        "trainingInput.workerConfig.acceleratorConfig.count",
        "'trainingInput.workerConfig.acceleratorConfig.count' is 0",
    )


def test_negative_accelerator_count() -> None:
    only_problem(
        training_body(masterConfig={"acceleratorConfig": {"count": -1, "type": "NVIDIA_TESLA_T4"}}),
        "trainingInput.masterConfig.acceleratorConfig.count",
        "0 or more",
    )


def test_valid_accelerator_and_disk() -> None:
    validated(
        training_body(
            masterConfig={
                "acceleratorConfig": {"count": 1, "type": "NVIDIA_TESLA_T4"},
                "diskConfig": {"bootDiskSizeGb": 200, "bootDiskType": "pd-standard"},
            }
        )
    )


def test_disk_rules() -> None:
    only_problem(
        training_body(masterConfig={"diskConfig": {"bootDiskType": "ssd"}}),
        "trainingInput.masterConfig.diskConfig.bootDiskType",
        "pd-ssd, pd-standard",
    )
    only_problem(
        training_body(masterConfig={"diskConfig": {"bootDiskSizeGb": -5}}),
        "trainingInput.masterConfig.diskConfig.bootDiskSizeGb",
    )


# --- versions --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("python", "runtime"),
    [("3.7", "1.15"), ("3.11", None), ("3.12", "2.11"), ("2.7", "1.15"), ("3.5", "1.14"),
     ("3.7", "nightly"), ("3.10", "1.2")],
)  # fmt: skip
def test_compatible_versions(python: str, runtime: str | None) -> None:
    validated(training_body(pythonVersion=python, runtimeVersion=runtime))


@pytest.mark.parametrize(
    ("python", "runtime", "needs"),
    [("2.7", "2.1", "1.15 or older"), ("3.5", "1.15", "1.4 to 1.14"),
     ("3.5", "1.2", "1.4 to 1.14"), ("3.7", "1.14", "1.15 or newer")],
)  # fmt: skip
def test_incompatible_versions(python: str, runtime: str, needs: str) -> None:
    only_problem(
        training_body(pythonVersion=python, runtimeVersion=runtime),
        "trainingInput.pythonVersion",
        needs,
    )


@pytest.mark.parametrize("python", ["2.6", "4.0", "three", "3"])
def test_unsupported_python_versions(python: str) -> None:
    only_problem(training_body(pythonVersion=python), "trainingInput.pythonVersion", "3.x")


# --- scheduling ------------------------------------------------------------------------


def test_scheduling_accepts_short_positive_waits() -> None:
    job = validated(training_body(scheduling={"maxWaitTime": "60s", "priority": 1000}))
    assert job.training_input is not None and job.training_input.scheduling is not None
    assert job.training_input.scheduling.max_wait_time == timedelta(seconds=60)


@pytest.mark.parametrize("name", ["maxWaitTime", "maxRunningTime"])
@pytest.mark.parametrize("value", ["0s", "-5s"])
def test_durations_must_be_positive(name: str, value: str) -> None:
    only_problem(
        training_body(scheduling={name: value}), f"trainingInput.scheduling.{name}", "positive"
    )


@pytest.mark.parametrize("priority", [-1, 1001])
def test_priority_range(priority: int) -> None:
    only_problem(
        training_body(scheduling={"priority": priority}),
        "trainingInput.scheduling.priority",
        "between 0 and 1000",
    )


# --- validate_training_input on its own ----------------------------------------------------


def test_validate_training_input_reports_paths_under_the_given_prefix() -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_training_input(TrainingInput(scale_tier=ScaleTier.CUSTOM), path="job.input")
    assert raised.value.field == "job.input.pythonModule"
    assert "job.input.masterType" in raised.value.message


def test_validate_training_input_applies_defaults() -> None:
    result = validate_training_input(TrainingInput(python_module="trainer.task"))
    assert result.scale_tier is ScaleTier.BASIC
    assert result.region == "local"
    assert Job(job_id="j", training_input=result)
