"""Resource ids, resource names and labels."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.names import (
    RESOURCE_ID_PATTERN,
    JobName,
    ModelName,
    OperationName,
    ProjectName,
    VersionName,
    suggest_resource_id,
    validate_labels,
    validate_project_id,
    validate_resource_id,
)

from .strategies import operation_ids, project_ids, resource_ids

# --- ids -------------------------------------------------------------------------------


@pytest.mark.parametrize("value", ["a", "census_1", "A" * 128, "Job_2017_03_07", "x1"])
def test_valid_ids_are_returned(value: str) -> None:
    assert validate_resource_id(value, field="jobId", kind="job") == value


def test_hyphenated_id_is_rejected_with_rule_and_fix() -> None:
    with pytest.raises(InvalidArgument) as raised:
        validate_resource_id("census-job-1", field="jobId", kind="job")
    assert raised.value.field == "jobId"
    message = raised.value.message
    assert "'census-job-1'" in message
    assert "letters, digits and underscores" in message
    assert "start with a letter" in message
    assert "128" in message
    assert "Try 'census_job_1'" in message


@pytest.mark.parametrize(
    ("value", "fix"),
    [("1st_job", "job_1st_job"), ("_x", "x"), ("my job", "my_job"), ("a" * 129, "a" * 128)],
)
def test_invalid_ids_get_a_valid_suggestion(value: str, fix: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(f"Try {fix!r}")):
        validate_resource_id(value, field="name", kind="job")


@pytest.mark.parametrize("value", ["", None, 5])
def test_missing_id_says_what_is_needed(value: object) -> None:
    with pytest.raises(InvalidArgument, match="needs a model id") as raised:
        validate_resource_id(value, field="name", kind="model")
    assert raised.value.field == "name"


def test_trailing_newline_is_not_a_valid_id() -> None:
    with pytest.raises(InvalidArgument):
        validate_resource_id("job\n", field="jobId", kind="job")


@given(resource_ids)
def test_ids_matching_the_pattern_are_accepted(value: str) -> None:
    assert validate_resource_id(value, field="jobId", kind="job") == value


@given(st.text(max_size=140))
def test_acceptance_agrees_with_the_pattern(value: str) -> None:
    expected = RESOURCE_ID_PATTERN.fullmatch(value) is not None
    try:
        validate_resource_id(value, field="jobId", kind="job")
        accepted = True
    except InvalidArgument:
        accepted = False
    assert accepted == expected


@given(st.text(min_size=1, max_size=140))
def test_suggestions_are_always_valid_ids(value: str) -> None:
    suggestion = suggest_resource_id(value)
    assert suggestion is None or RESOURCE_ID_PATTERN.fullmatch(suggestion)


def test_project_ids_are_lenient_but_lower_case() -> None:
    assert validate_project_id("local") == "local"
    assert validate_project_id("my_lab.dev-1") == "my_lab.dev-1"
    with pytest.raises(InvalidArgument, match="Try 'myproject'") as raised:
        validate_project_id("MyProject", field="--project")
    assert raised.value.field == "--project"


# --- names -----------------------------------------------------------------------------


def test_job_name_parse_and_format() -> None:
    name = JobName.parse("projects/demo/jobs/census_1")
    assert name == JobName("demo", "census_1")
    assert str(name) == "projects/demo/jobs/census_1"
    assert name.parent == ProjectName("demo")


def test_version_name_parse_and_parent() -> None:
    name = VersionName.parse("projects/demo/models/census/versions/v1")
    assert (name.project, name.model, name.version) == ("demo", "census", "v1")
    assert name.parent == ModelName("demo", "census")
    assert ModelName("demo", "census").version("v1") == name


def test_operation_names_allow_server_minted_ids() -> None:
    name = OperationName.parse("projects/demo/operations/create_census_v1-1511476437034")
    assert name.operation == "create_census_v1-1511476437034"
    assert name.parent == ProjectName("demo")


@pytest.mark.parametrize(
    "text",
    [
        "projects/demo/models/census",
        "projects/demo/jobs/",
        "projects//jobs/x",
        "demo/jobs/x",
        "projects/demo/jobs/x/extra",
        "projects/demo/job/x",
    ],
)
def test_malformed_job_names_show_the_expected_form(text: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape("projects/{project}/jobs/{job}")) as raised:
        JobName.parse(text, field="name")
    assert raised.value.field == "name"


def test_bad_id_inside_a_name_is_reported_against_the_field() -> None:
    with pytest.raises(InvalidArgument, match="Invalid model id 'my-model'") as raised:
        ModelName.parse("projects/demo/models/my-model", field="modelName")
    assert raised.value.field == "modelName"


def test_constructing_a_bad_name_fails() -> None:
    with pytest.raises(InvalidArgument):
        JobName("demo", "bad-id")
    with pytest.raises(InvalidArgument):
        ProjectName("Bad Project")


@given(project_ids, resource_ids, resource_ids, operation_ids)
def test_names_round_trip(project: str, model: str, version: str, operation: str) -> None:
    for name in (
        ProjectName(project),
        JobName(project, model),
        ModelName(project, model),
        VersionName(project, model, version),
        OperationName(project, operation),
    ):
        assert type(name).parse(str(name)) == name


@given(
    st.text(max_size=60)
    | st.builds(
        "/".join, st.lists(st.sampled_from(["projects", "jobs", "p1", "j", ""]), max_size=5)
    )
)
def test_parse_accepts_only_what_it_can_format(text: str) -> None:
    try:
        name = JobName.parse(text)
    except InvalidArgument:
        return
    assert str(name) == text


# --- labels ----------------------------------------------------------------------------


def test_valid_labels_pass() -> None:
    validate_labels({"team": "ml", "env": "", "cost-center_1": "a-b_c"})


@pytest.mark.parametrize(
    ("labels", "field", "fragment"),
    [
        ({"Team": "ml"}, 'labels["Team"]', "try 'team'"),
        ({"1st": "x"}, 'labels["1st"]', "starting with a letter"),
        ({"team": "ML"}, 'labels["team"]', "try 'ml'"),
        ({"team": "x" * 64}, 'labels["team"]', "at most 63"),
        ({"": "x"}, 'labels[""]', "Invalid label key"),
    ],
)
def test_invalid_labels_name_the_key(labels: dict[str, str], field: str, fragment: str) -> None:
    with pytest.raises(InvalidArgument, match=re.escape(fragment)) as raised:
        validate_labels(labels)
    assert raised.value.field == field


def test_too_many_labels() -> None:
    with pytest.raises(InvalidArgument, match="at most 64") as raised:
        validate_labels({f"k{i}": "v" for i in range(65)})
    assert raised.value.field == "labels"
