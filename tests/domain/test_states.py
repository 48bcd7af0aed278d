"""Job.State and its transition table."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mlengine.domain.errors import FailedPrecondition
from mlengine.domain.states import (
    ACTIVE_STATES,
    INITIAL_STATE,
    TERMINAL_STATES,
    TRANSITIONS,
    JobState,
    can_transition,
    check_transition,
    is_terminal,
)

S = JobState


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.QUEUED, S.PREPARING),
        (S.PREPARING, S.RUNNING),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.FAILED),
        (S.QUEUED, S.CANCELLED),
        (S.QUEUED, S.CANCELLING),
        (S.PREPARING, S.CANCELLING),
        (S.RUNNING, S.CANCELLING),
        (S.CANCELLING, S.CANCELLED),
        (S.CANCELLING, S.FAILED),
        (S.PREPARING, S.FAILED),
        (S.QUEUED, S.FAILED),
    ],
)
def test_lifecycle_moves_are_allowed(old: JobState, new: JobState) -> None:
    check_transition(old, new)
    assert can_transition(old, new)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (S.QUEUED, S.RUNNING),
        (S.QUEUED, S.SUCCEEDED),
        (S.RUNNING, S.CANCELLED),
        (S.PREPARING, S.CANCELLED),
        (S.CANCELLING, S.RUNNING),
        (S.RUNNING, S.QUEUED),
        (S.RUNNING, S.RUNNING),
        (S.STATE_UNSPECIFIED, S.QUEUED),
    ],
)
def test_other_moves_are_refused_naming_both_states(old: JobState, new: JobState) -> None:
    with pytest.raises(FailedPrecondition) as raised:
        check_transition(old, new, subject="job 'census_1'")
    message = raised.value.message
    assert old.value in message and new.value in message
    assert "job 'census_1'" in message


def test_terminal_message_says_terminal() -> None:
    with pytest.raises(FailedPrecondition, match="terminal"):
        check_transition(S.SUCCEEDED, S.CANCELLING)


def test_enum_values_and_groups() -> None:
    assert [s.value for s in JobState] == [
        "STATE_UNSPECIFIED",
        "QUEUED",
        "PREPARING",
        "RUNNING",
        "SUCCEEDED",
        "FAILED",
        "CANCELLING",
        "CANCELLED",
    ]
    assert {S.SUCCEEDED, S.FAILED, S.CANCELLED} == TERMINAL_STATES
    assert ACTIVE_STATES | TERMINAL_STATES | {S.STATE_UNSPECIFIED} == set(JobState)
    assert INITIAL_STATE is S.QUEUED
    assert set(TRANSITIONS) == set(JobState)


@given(st.sampled_from(sorted(TERMINAL_STATES)), st.sampled_from(list(JobState)))
def test_nothing_leaves_a_terminal_state(old: JobState, new: JobState) -> None:
    assert old.is_terminal() and is_terminal(old)
    with pytest.raises(FailedPrecondition):
        check_transition(old, new)


@given(st.sampled_from(list(JobState)), st.sampled_from(list(JobState)))
def test_check_agrees_with_the_table(old: JobState, new: JobState) -> None:
    try:
        check_transition(old, new)
        allowed = True
    except FailedPrecondition:
        allowed = False
    assert allowed == (new in TRANSITIONS[old])
    assert not can_transition(old, old)


@given(st.lists(st.sampled_from(list(JobState)), max_size=30))
def test_random_walks_from_queued_stay_in_the_table(moves: list[JobState]) -> None:
    state = INITIAL_STATE
    for proposed in moves:
        if can_transition(state, proposed):
            assert not state.is_terminal()
            state = proposed
    assert state is not S.STATE_UNSPECIFIED


def test_every_active_state_can_reach_every_kind_of_end() -> None:
    def reachable(start: JobState) -> set[JobState]:
        seen, frontier = {start}, [start]
        while frontier:
            for nxt in TRANSITIONS[frontier.pop()]:
                if nxt not in seen:
                    seen.add(nxt)
                    frontier.append(nxt)
        return seen

    assert reachable(S.QUEUED) >= TERMINAL_STATES
    for state in ACTIVE_STATES:
        assert reachable(state) & TERMINAL_STATES
        assert state.is_active()
