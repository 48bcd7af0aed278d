"""The jobs.list filter grammar: semantics by example, errors, push-down, and properties."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mlengine.domain.errors import InvalidArgument
from mlengine.domain.job_filter import HELP, JobQuery, parse_job_filter
from mlengine.domain.resources import Job, JobState, parse_job

JAN = datetime(2024, 1, 1, tzinfo=UTC)


def job(**fields: object) -> Job:
    return Job.model_validate({"jobId": "census_1", **fields})


CENSUS = parse_job(
    {
        "jobId": "census_1",
        "labels": {"team": "vision", "owner": "alice"},
        "state": "FAILED",
        "createTime": "2024-02-01T12:00:00Z",
        "errorMessage": "The replica master 0 exited with a non-zero status of 1.",
        "trainingInput": {
            "scaleTier": "BASIC",
            "args": ["--epochs", "3"],
            "workerCount": "4",
            "scheduling": {"maxRunningTime": "7200s"},
        },
        "trainingOutput": {"isHyperparameterTuningJob": True, "consumedMLUnits": 1.5},
    }
)


def matches(text: str, target: Job = CENSUS) -> bool:
    predicate = parse_job_filter(text).predicate
    assert predicate is not None
    return predicate(target)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("jobId:census*", True),
        ("jobId:cen*", True),
        ("jobId:Census*", False),  # case-sensitive
        ("jobId:census", False),  # ':' without '*' is exact
        ("jobId:census_1", True),
        ("jobId=census_1", True),
        ("jobId=census*", False),  # '=' has no wildcard
        ("jobId!=census_1", False),
        ("job_id:census*", True),  # snake_case field names
        ("JOBID:census*", True),
        ("state=FAILED", True),
        ("state:failed", True),
        ("state=RUNNING", False),
        ("state!=SUCCEEDED", True),
        ("state:FAIL*", True),
        ("state:*", True),
        ("labels.team=vision", True),
        ("labels.team=Vision", False),
        ("labels.team!=vision", False),
        ("labels.team:vis*", True),
        ("labels.team:*", True),
        ("labels.nope:*", False),
        ("labels.nope!=x", True),  # an absent label differs from every value
        ("labels:owner", True),
        ("labels:nope", False),
        ("labels:*", True),
        ('createTime>"2024-01-01T00:00:00Z"', True),
        ("createTime>2024-01-01T00:00:00Z", True),
        ("createTime>=2024-02-01T12:00:00Z", True),
        ("createTime>2024-02-01T12:00:00Z", False),
        ("createTime<2024-03-01", True),
        ("createTime<=2024-01-31", False),
        ("createTime=2024-02-01T13:00:00+01:00", True),
        ("startTime<2030-01-01", False),  # unset never compares
        ("startTime!=2030-01-01", True),
        ("startTime:*", False),
        ("endTime:*", False),
        ('errorMessage:"The replica master*"', True),
        ("errorMessage:*", True),
        ("trainingInput.scaleTier=BASIC", True),
        ("trainingInput.scaleTier=basic", True),
        ("trainingInput.args:--epochs", True),
        ("trainingInput.args:--ep*", True),
        ("trainingInput.args:3", True),
        ("trainingInput.args:4", False),
        ("trainingInput.workerCount>=4", True),
        ("trainingInput.workerCount<4", False),
        ("trainingInput.scheduling.maxRunningTime>3600s", True),
        ("trainingOutput.isHyperparameterTuningJob=true", True),
        ("trainingOutput.consumedMLUnits>1", True),
        ("trainingInput.region:*", False),
        ("jobId:census* AND state:FAILED", True),
        ("jobId:census* state:FAILED", True),  # juxtaposition is AND
        ("jobId:rnn* AND state:FAILED", False),
        ("jobId:rnn* OR state:FAILED", True),
        ("NOT state:FAILED", False),
        ("-state:FAILED", False),
        ("NOT (jobId:rnn* OR state:RUNNING)", True),
        ("(jobId:rnn* OR state:FAILED) AND labels.team=vision", True),
        ("(jobId:rnn* OR state:FAILED) AND NOT labels.team=vision", False),
        ("  state = FAILED  ", True),  # spaces around the operator
        ("(((state=FAILED)))", True),
        ("NOT NOT state=FAILED", True),
    ],
)
def test_terms_and_connectives(text: str, expected: bool) -> None:
    assert matches(text) is expected


def test_quoted_values_keep_spaces_and_escapes() -> None:
    target = job(labels={"k": "v"}, errorMessage='said "no" (twice)')
    assert matches(r'errorMessage="said \"no\" (twice)"', target)
    assert matches("errorMessage='said \"no\" (twice)'", target)
    assert matches('errorMessage:"said*"', target)


def test_unset_state_reads_as_state_unspecified() -> None:
    bare = job()
    assert matches("state=STATE_UNSPECIFIED", bare)
    assert not matches("state:*", bare)
    assert matches("state!=QUEUED", bare)


@pytest.mark.parametrize("text", [None, "", "   ", "\n\t"])
def test_an_empty_filter_selects_everything(text: str | None) -> None:
    assert parse_job_filter(text) == JobQuery()


# --- errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "quoted"),
    [
        ("state=FAILD", "'FAILD' is not a state; expected one of STATE_UNSPECIFIED"),
        ("foo=1", "unknown field 'foo'"),
        ("jobID:x AND stat=FAILED", "position 13"),
        ("trainingInput.scaleTeir=BASIC", "did you mean 'scaleTier'"),
        ("state=FAILED and jobId:x", "write the keyword AND in capitals"),
        ("state=FAILED AND jobId:x OR jobId:y", "AND and OR need parentheses"),
        ("state=FAILED jobId:x OR jobId:y", "AND and OR need parentheses"),
        ("(state=FAILED", "missing ')'"),
        ("state=FAILED)", "unbalanced ')'"),
        ("()", "expected a term"),
        ("NOT", "expected a term"),
        ("state=FAILED AND", "expected a term"),
        ("jobId:", "missing value after 'jobId:'"),
        ("jobId", "expected an operator"),
        ('"census"', "expected a field name"),
        ("jobId='census", "unterminated string"),
        ("createTime>yesterday", "'createTime' is a time"),
        ("createTime>2024-13-45", "'createTime' is a time"),
        ("state>FAILED", "'state' is an enum: > applies to times"),
        ("jobId<x", "'jobId' is a string"),
        ("labels=x", "labels.KEY=VALUE"),
        ("labels.a.b=x", "a label key cannot contain '.'"),
        ("trainingInput=x", "is an object: name one of its fields"),
        ("jobId.x=1", "'jobId' has no fields"),
        ("trainingInput.args=x", "is a list"),
        ("trainingInput.hyperparameters.params:x", "list of objects"),
        ("etag=abc", "cannot be filtered on"),
        ("trainingInput.workerCount>four", "is a number"),
        ("trainingOutput.isHyperparameterTuningJob=yes", "true or false"),
        ("trainingInput.scheduling.maxRunningTime>2h", "is a duration"),
        ("(" * 80 + "state=FAILED" + ")" * 80, "nested more than"),
        ("-" * 80 + "state=FAILED", "nested more than"),
        ("- state=FAILED", "expected a field name"),
    ],
)
def test_errors_quote_the_problem_and_list_the_grammar(text: str, quoted: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_job_filter(text)
    error = caught.value
    assert error.field == "filter"
    assert quoted in error.message
    assert "position" in error.message and HELP in error.message
    assert "jobId, state, createTime" in error.message


def test_very_long_filters_are_refused() -> None:
    with pytest.raises(InvalidArgument, match="longer than"):
        parse_job_filter("state=FAILED " * 1000)


# --- push-down --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "states", "prefix"),
    [
        ("state=FAILED", {JobState.FAILED}, None),
        ("state:running", {JobState.RUNNING}, None),
        ("jobId:census*", None, "census"),
        ("jobId:census_1", None, "census_1"),
        ("jobId=census_1", None, "census_1"),
        ("jobId:*", None, None),
        ("jobId!=census_1", None, None),
        ("jobId:rnn* AND state:FAILED", {JobState.FAILED}, "rnn"),
        ("jobId:rnn* state:FAILED labels.team=x", {JobState.FAILED}, "rnn"),
        ("jobId:r* AND jobId:rnn*", None, "rnn"),
        ("(state=QUEUED OR state=RUNNING) AND jobId:c*", {JobState.QUEUED, JobState.RUNNING}, "c"),
        ("state=QUEUED AND state=RUNNING", set(), None),  # nothing can match
        ("state:*", set(JobState) - {JobState.STATE_UNSPECIFIED}, None),
        ("NOT state=FAILED", set(JobState) - {JobState.FAILED}, None),
        ("state=FAILED OR jobId:x*", None, None),  # an OR across fields: nothing to push
        ("NOT jobId:x*", None, None),
        ("labels.team=x", None, None),
    ],
)
def test_push_down(text: str, states: set[JobState] | None, prefix: str | None) -> None:
    parsed = parse_job_filter(text)
    assert parsed.states == (None if states is None else frozenset(states))
    assert parsed.job_id_prefix == prefix
    assert parsed.predicate is not None


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("labels.team=x", {"team": "x"}),
        ("labels.team:x", {"team": "x"}),
        ('labels.team="" AND labels.env=prod state=FAILED', {"team": "", "env": "prod"}),
        ("labels.team:x*", None),
        ("labels.team:*", None),
        ("labels.team!=x", None),
        ("labels:team", None),
        ("NOT labels.team=x", None),
        ("labels.team=x OR labels.team=y", None),
        ("labels.team=x AND labels.team=y", {"team": "x"}),  # the predicate rejects all
    ],
)
def test_label_push_down(text: str, labels: dict[str, str] | None) -> None:
    assert parse_job_filter(text).labels == labels


# --- properties -------------------------------------------------------------------------

TERMS = [
    "state=FAILED",
    "state:RUNNING",
    "state!=SUCCEEDED",
    "state:*",
    "state:QUEUE*",
    "state=STATE_UNSPECIFIED",
    "jobId:census*",
    "jobId:cen*",
    "jobId:c*",
    "jobId=rnn_1",
    "jobId:rnn_1",
    "job_id:Census*",
    "labels.team=x",
    "labels.team:y",
    'labels.env=""',
    "labels.team!=y",
    "labels.env:*",
    "labels:team",
    'createTime>"2024-01-01T00:00:00Z"',
    "createTime<=2024-06-01",
    "startTime:*",
    "trainingInput.scaleTier=BASIC",
]
terms = st.sampled_from(TERMS)


def _combine(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    pairs = st.tuples(inner, inner)
    return st.one_of(
        pairs.map(lambda ab: f"({ab[0]}) AND ({ab[1]})"),
        pairs.map(lambda ab: f"({ab[0]}) OR ({ab[1]})"),
        pairs.map(lambda ab: f"({ab[0]}) ({ab[1]})"),
        inner.map(lambda a: f"NOT ({a})"),
        inner.map(lambda a: f"-({a})"),
    )


expressions = st.recursive(terms, _combine, max_leaves=6)
conjunctions = st.lists(expressions, min_size=1, max_size=4).map(
    lambda parts: " AND ".join(f"({part})" for part in parts)
)

jobs = st.builds(
    Job,
    job_id=st.sampled_from(["census_1", "census_22", "Census_x", "cen", "rnn_1", "rnn_10"]),
    state=st.sampled_from([None, *JobState]),
    labels=st.none()
    | st.dictionaries(st.sampled_from(["team", "env"]), st.sampled_from(["x", "y", ""])),
    create_time=st.none()
    | st.integers(0, 400).map(lambda days: datetime(2023, 10, 1, tzinfo=UTC) + timedelta(days)),
    start_time=st.none() | st.just(JAN),
)


def _selected_by_query(parsed: JobQuery, target: Job) -> bool:
    """What a store returns: push-downs in "SQL" (unset state stored as STATE_UNSPECIFIED)."""
    state = target.state or JobState.STATE_UNSPECIFIED
    if parsed.states is not None and state not in parsed.states:
        return False
    if parsed.job_id_prefix is not None and not str(target.job_id).startswith(parsed.job_id_prefix):
        return False
    return parsed.predicate is None or parsed.predicate(target)


@settings(max_examples=300)
@given(st.text(max_size=60))
def test_arbitrary_text_parses_or_raises_invalid_argument(text: str) -> None:
    try:
        parse_job_filter(text)
    except InvalidArgument as error:
        assert error.field == "filter"


_TOKENS = [
    *TERMS,
    "AND",
    "OR",
    "NOT",
    "and",
    "(",
    ")",
    "-",
    '"',
    "'",
    "*",
    ":",
    "=",
    "!=",
    ">=",
    "<",
    "state",
    "labels.",
    "jobId",
    "\\",
    "x",
]


@settings(max_examples=300)
@given(st.lists(st.sampled_from(_TOKENS), max_size=12), st.sampled_from([" ", ""]))
def test_token_soup_parses_or_raises_invalid_argument(tokens: list[str], glue: str) -> None:
    try:
        parsed = parse_job_filter(glue.join(tokens))
    except InvalidArgument as error:
        assert error.field == "filter"
    else:
        if parsed.predicate is not None:
            parsed.predicate(CENSUS)


@settings(max_examples=200)
@given(expressions, expressions, jobs)
def test_and_means_both_or_means_either_not_means_neither(a: str, b: str, target: Job) -> None:
    left, right = matches(a, target), matches(b, target)
    assert matches(f"({a}) AND ({b})", target) is (left and right)
    assert matches(f"({a}) ({b})", target) is (left and right)
    assert matches(f"({a}) OR ({b})", target) is (left or right)
    assert matches(f"NOT ({a})", target) is (not left)


@settings(max_examples=300)
@given(conjunctions, st.lists(jobs, min_size=1, max_size=12))
def test_push_down_never_changes_the_selection(text: str, targets: list[Job]) -> None:
    parsed = parse_job_filter(text)
    assert parsed.predicate is not None
    by_predicate = [t for t in targets if parsed.predicate(t)]
    by_query = [t for t in targets if _selected_by_query(parsed, t)]
    assert by_query == by_predicate
